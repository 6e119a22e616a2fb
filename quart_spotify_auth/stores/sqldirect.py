"""The SQLite store's own transactions straight on ``sqlite3`` (:class:`DirectSQLite`), and
what the store's statements run on (:class:`Executes`): SQLAlchemy's ``Connection``, or this.

A transaction runs on a store thread, where it may wait for another process's lock, or
*inline*, on the event loop's thread, where it never waits: its connection has no busy
timeout (a lock held elsewhere is :class:`Busy` at once, rolled back, and run again on a
thread) and never checkpoints (the store runs the checkpoints on a thread). A store thread
costs two thread hops, each one a wake-up of the other thread and of the loop's, under the
GIL: 250 to 400 µs of CPU in a served process, more than the transaction itself."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import weakref
from collections.abc import Callable, Mapping
from typing import Any, Protocol, TypeVar, cast

from sqlalchemy import Engine
from sqlalchemy.dialects import sqlite as sqlite_dialect
from sqlalchemy.exc import MultipleResultsFound, NoResultFound

__all__ = ["Busy", "DirectSQLite", "Executes"]


T = TypeVar("T")

#: SQLite's primary result codes for a lock another connection holds.
_BUSY = (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)

#: Inline writes between two checkpoints: the pages they add to the write-ahead log stay
#: well under SQLite's own trigger (1,000 pages), which inline connections turn off.
CHECKPOINT_EVERY = 200


#: Marks an inline connection (in its ``info``): never given back to the pool as it is.
_INLINE = "quart_spotify_auth_inline"


class _Inline:
    """A thread's inline connection, held in its locals (weakly referable: its end closes
    the connection)."""

    __slots__ = ("__weakref__", "proxied")

    def __init__(self, proxied: Any) -> None:
        self.proxied = proxied


class Busy(Exception):
    """An inline transaction found the database locked by another connection; it was rolled
    back, to be run again where it may wait."""


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
    connection per thread, from ``engine``'s pool (so set up by :func:`sqlite_setup`), and
    each statement compiled once. Through SQLAlchemy's engine on a store thread a claim cost
    359 µs of CPU and a login's write 541 µs; straight on the driver, 146 and 216 on a store
    thread, 31 and 83 inline. Other SQL (the tables' creation, an app's own statements, an
    app's own engine) still goes through SQLAlchemy."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._dialect = sqlite_dialect.dialect(paramstyle="named")
        self._statements: dict[int, tuple[Any, str, dict[str, Any]]] = {}
        self._local = threading.local()
        self._held: list[Any] = []  # every connection taken, to give back at close
        self._lock = threading.Lock()
        #: Inline writes since the last checkpoint.
        self.writes = 0

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
        """Run ``work`` in one transaction on this store thread's connection (a write locks at
        once, waiting up to the busy timeout for another process's)."""
        return self._within(self._connection(), "connection", work, write)

    def has_inline(self) -> bool:
        """Whether this thread (the event loop's) has its inline connection."""
        return getattr(self._local, "inline", None) is not None

    def inline_opening(self, start: Callable[[], asyncio.Future[Any]]) -> asyncio.Future[Any]:
        """This thread's one open of its inline connection: ``start()`` (:meth:`open_inline`
        on a store thread) unless one is under way. It is installed when it lands, whether
        or not its callers are still there."""
        opening: asyncio.Future[Any] | None = getattr(self._local, "opening", None)
        if opening is None:
            opening = self._local.opening = start()
            opening.add_done_callback(self.install)
        return opening

    def open_inline(self) -> Any:
        """A connection for an event loop's thread, opened on a store thread (its set-up may
        wait for a lock): no busy timeout, no checkpoints of its own."""
        proxied = self._engine.raw_connection()
        try:
            driver = cast(sqlite3.Connection, proxied.driver_connection)
            driver.execute("PRAGMA busy_timeout = 0")
            driver.execute("PRAGMA wal_autocheckpoint = 0")
            proxied.info[_INLINE] = True
        except BaseException:
            proxied.invalidate()
            raise
        with self._lock:
            self._held.append(proxied)
        return proxied

    def install(self, opening: asyncio.Future[Any]) -> None:
        """Make what ``opening`` (done) opened this thread's inline connection, once: its
        done callback does, and so does a caller that found it done before that ran."""
        if getattr(self._local, "opening", None) is opening:
            self._local.opening = None
        if opening.cancelled() or opening.exception() is not None:
            return  # the callers that waited have the error; the next call tries again
        if self.has_inline():
            return
        inline = _Inline(opening.result())
        # When the thread ends, its locals go, and the connection with them (not to the pool).
        weakref.finalize(inline, self._release, inline.proxied)
        self._local.inline = inline

    def inline(self, work: Callable[[Executes], T], write: bool) -> T:
        """Run ``work`` in one transaction on this thread's inline connection, never waiting:
        a lock held by another connection is :class:`Busy`."""
        connection = self._local.inline.proxied.driver_connection
        done = self._within(connection, "inline", work, write)
        if write:
            self.writes += 1
        return done

    def checkpoint_due(self) -> bool:
        """Whether inline writes since the last checkpoint call for one."""
        return self.writes >= CHECKPOINT_EVERY

    def checkpoint(self) -> None:
        """Move the write-ahead log's pages into the database, on a store thread, without
        waiting for readers (SQLite's ``PASSIVE`` mode): what inline writes leave for it."""
        self.writes = 0
        self._connection().execute("PRAGMA wal_checkpoint(PASSIVE)")

    def _within(
        self, connection: sqlite3.Connection, slot: str, work: Callable[[Executes], T], write: bool
    ) -> T:
        """``work`` in one transaction on ``connection`` (this thread's ``slot``). A connection
        that failed is closed; the next transaction opens another."""
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
                self._drop(slot)
            else:
                busy = getattr(exc, "sqlite_errorcode", 0) & 0xFF in _BUSY
                if slot == "inline" and busy and isinstance(exc, sqlite3.Error):
                    raise Busy() from exc
                if isinstance(exc, sqlite3.Error):
                    self._drop(slot)
            raise

    def _drop(self, slot: str) -> None:
        held = self._local.__dict__.pop(slot, None)
        if held is not None:
            self._release(held.proxied if isinstance(held, _Inline) else held)

    def _release(self, proxied: Any) -> None:
        """Close ``proxied`` for good (an inline one, or one that failed), if still held."""
        with self._lock:
            if proxied not in self._held:
                return  # closed already, or a forked parent's
            self._held.remove(proxied)
        proxied.invalidate()

    def close(self) -> None:
        """Give every store thread's connection back to the pool, close the inline ones
        (after the store's threads have ended)."""
        with self._lock:
            held, self._held = self._held, []
        for proxied in held:
            if proxied.info.get(_INLINE):
                proxied.invalidate()
            else:
                proxied.close()
        self._local = threading.local()

    def forget(self) -> None:
        """In a forked child: the parent's connections are not this process's to close."""
        self._held, self._local = [], threading.local()
