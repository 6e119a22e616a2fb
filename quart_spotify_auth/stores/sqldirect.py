"""The SQLite store's own transactions straight on ``sqlite3`` (:class:`DirectSQLite`), and
what the store's statements run on (:class:`Executes`): SQLAlchemy's ``Connection``, or this."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable, Mapping
from typing import Any, Protocol, TypeVar, cast

from sqlalchemy import Engine
from sqlalchemy.dialects import sqlite as sqlite_dialect
from sqlalchemy.exc import MultipleResultsFound, NoResultFound

__all__ = ["DirectSQLite", "Executes"]


T = TypeVar("T")


class Executes(Protocol):
    """What the store's statements run on: a SQLAlchemy ``Connection``, or a driver's
    connection behind :class:`DirectSQLite`."""

    def execute(
        self, statement: Any, parameters: Mapping[str, Any] | list[Mapping[str, Any]] | None = None
    ) -> Any: ...


class _Rows:
    """A statement's rows, read at once, as SQLAlchemy's result gives them to the store."""

    __slots__ = ("_rows", "rowcount")

    def __init__(self, rows: list[Any], rowcount: int) -> None:
        self._rows, self.rowcount = rows, rowcount

    def first(self) -> Any:
        return self._rows[0] if self._rows else None

    def all(self) -> list[Any]:
        return self._rows

    def scalar(self) -> Any:
        return self._rows[0][0] if self._rows else None

    def scalar_one(self) -> Any:
        if len(self._rows) != 1:
            raise NoResultFound() if not self._rows else MultipleResultsFound()
        return self._rows[0][0]


class _Driver:
    """One ``sqlite3`` connection running the store's statements, compiled once."""

    __slots__ = ("_compiled", "_connection")

    def __init__(self, connection: sqlite3.Connection, compiled: Callable[[Any], Any]) -> None:
        self._connection, self._compiled = connection, compiled

    def execute(
        self, statement: Any, parameters: Mapping[str, Any] | list[Mapping[str, Any]] | None = None
    ) -> _Rows:
        sql, constants = self._compiled(statement)
        if isinstance(parameters, list):  # one statement for each (SQLAlchemy's executemany)
            many = self._connection.executemany(sql, [{**constants, **p} for p in parameters])
            return _Rows([], many.rowcount)
        values = {**constants, **parameters} if parameters else constants
        cursor = self._connection.execute(sql, values)
        rows = cursor.fetchall()  # before rowcount: a RETURNING statement counts as it is read
        return _Rows(rows, cursor.rowcount)


class DirectSQLite:
    """The store's own transactions on its SQLite file, straight on ``sqlite3``: one
    connection per store thread, from ``engine``'s pool (so set up by :func:`sqlite_setup`),
    and each statement compiled once. Through SQLAlchemy's engine the same transaction cost
    about 160 to 300 µs of CPU more (a claim 359 µs, a login's write 541 µs; straight on the
    driver 200 and 238, the thread hop included). Other SQL (the tables' creation, an app's
    own statements, an app's own engine) still goes through SQLAlchemy."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._dialect = sqlite_dialect.dialect(paramstyle="named")
        self._statements: dict[int, tuple[Any, str, dict[str, Any]]] = {}
        self._local = threading.local()
        self._held: list[Any] = []  # every connection taken, to give back at close
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"DirectSQLite({len(self._held)} connections)"

    def _compiled(self, statement: Any) -> tuple[str, dict[str, Any]]:
        known = self._statements.get(id(statement))
        if known is None or known[0] is not statement:
            compiled = statement.compile(dialect=self._dialect)
            constants = {k: v for k, v in compiled.params.items() if not k.startswith("p_")}
            known = (statement, str(compiled), constants)
            with self._lock:
                if len(self._statements) > 256:  # an app's statements, made per call
                    self._statements.clear()
                self._statements[id(statement)] = known
        return known[1], known[2]

    def _connection(self) -> sqlite3.Connection:
        proxied = getattr(self._local, "connection", None)
        if proxied is None:
            proxied = self._engine.raw_connection()
            with self._lock:
                self._held.append(proxied)
            self._local.connection = proxied
        return cast(sqlite3.Connection, proxied.driver_connection)

    def transaction(self, work: Callable[[Executes], T], write: bool) -> T:
        """Run ``work`` in one transaction on this thread's connection (a write locks at
        once). A connection that failed is closed; the next transaction opens another."""
        connection = self._connection()
        try:
            connection.execute("BEGIN IMMEDIATE" if write else "BEGIN DEFERRED")
            done = work(_Driver(connection, self._compiled))
            connection.execute("COMMIT")
            return done
        except BaseException as exc:
            try:
                if connection.in_transaction:
                    connection.execute("ROLLBACK")
            except sqlite3.Error:
                self._drop()
            else:
                if isinstance(exc, sqlite3.Error):
                    self._drop()
            raise

    def _drop(self) -> None:
        proxied = self._local.__dict__.pop("connection", None)
        if proxied is not None:
            with self._lock:
                self._held.remove(proxied)
            proxied.invalidate()

    def close(self) -> None:
        """Give every connection back to the pool (after the store's threads have ended)."""
        with self._lock:
            held, self._held = self._held, []
        for proxied in held:
            proxied.close()
        self._local = threading.local()

    def forget(self) -> None:
        """In a forked child: the parent's connections are not this process's to close."""
        self._held, self._local = [], threading.local()
