"""The SQL store: SQLite (the default, shared by the workers of one host) or PostgreSQL (many
hosts), one implementation on SQLAlchemy Core.

Each read or write is one transaction: for SQLite with ``sqlite3``, a one-row one on the event
loop's thread while no other process holds the lock, else on a few threads (an async driver
hops threads for every cursor call, 2 ms against 0.1); for PostgreSQL on asyncpg. Writes
are compare-and-set on a version counter; a claim is a row with an expiry. Other processes hear
of writes by PostgreSQL's ``NOTIFY`` or SQLite's change slots (:mod:`.changes`)."""

from __future__ import annotations

import asyncio
import functools
import os
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any, TypeVar, cast

from sqlalchemy.engine import Connection, Engine, make_url
from sqlalchemy.exc import DBAPIError

from ..config import DEFAULTS
from ..errors import ConfigurationError, StoreUnavailable
from ..tasks import PerLoop, cancel
from ..tokens import TokenRecord
from .base import DUE_LEASE, Due, DueKey, Stored, TokenStore, url_or
from .cache import ReadCache
from .changes import ChangeSlots, current_pid
from .codec import Codec
from .sqldirect import Executes
from .sqlengine import is_async, listen, make_engine, unavailable
from .sqlrun import On, Runner

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncEngine
from .sqlschema import Schema
from .sqlstatements import Statements, bind
from .sqlversions import FAILURES, Found, moved_in, open_tables, saved, unwritable

__all__ = ["SQLTokenStore"]

from ..signals import logger

T = TypeVar("T")

#: How often (seconds) a process drops rows past their expiry and claims long ended.
SWEEP_EVERY = 60.0


class _Stale(Exception):
    """A compare-and-set found another version: roll the transaction back."""


class SQLTokenStore(TokenStore):
    """Tokens, their schedule and claims in SQL tables, shared by every process that opens the
    same database.

    Arguments:
        url: ``sqlite:///path/to/file`` or ``postgresql://user:password@host/db``; or pass
            ``engine``, an ``Engine`` or ``AsyncEngine`` the app owns (never disposed by the
            store; a SQLite one best set up with :func:`.sqlengine.sqlite_setup`).
        prefix: the tables' name prefix (``SPOTIFY_TOKEN_STORE_PREFIX``; see :class:`.Schema`).
        idle_ttl: a login not written for this long (seconds) is forgotten.
        encryption_keys: Fernet keys: records are encrypted at rest, each bound to its key.
        migrating: with keys, still read records written in clear or unbound.
        cache_ttl: seconds a read may be served from this process (0: never).
        busy_timeout: SQLite: seconds a write waits for another process's.
    """

    shared = True
    cache: ReadCache

    def __init__(
        self,
        url: str | None = None,
        *,
        engine: Engine | AsyncEngine | None = None,
        prefix: str = DEFAULTS["SPOTIFY_TOKEN_STORE_PREFIX"],
        idle_ttl: float = DEFAULTS["SPOTIFY_TOKEN_IDLE_TTL"],
        encryption_keys: Sequence[str | bytes] = (),
        migrating: bool = DEFAULTS["SPOTIFY_TOKEN_ENCRYPTION_MIGRATING"],
        clock: Callable[[], float] = time.time,
        cache_ttl: float = 30.0,
        busy_timeout: float = 5.0,
    ) -> None:
        url_or(url, engine, "SQLTokenStore", "an engine")
        self._url = url if url is not None else str(engine.url)  # type: ignore[union-attr]
        self._engine = engine
        self._owned = engine is None
        #: Why the SQLite file could be read but not written at start (logged), else None.
        self.unwritable: StoreUnavailable | None = None
        self.schema = Schema(prefix)
        self._idle = idle_ttl
        self._codec = Codec(encryption_keys, migrating=migrating)
        self._clock = clock
        parsed = make_url(self._url)
        sqlite = parsed.drivername.startswith("sqlite")
        self.dialect = "sqlite" if sqlite else "postgresql"
        self._sql = Statements(self.schema, self.dialect)
        server = f"PostgreSQL at '{parsed.host}:{parsed.port or 5432}/{parsed.database or ''}'"
        self._where = f"the SQLite file {parsed.database!r}" if sqlite else server
        if sqlite and parsed.database in (None, "", ":memory:"):
            raise ConfigurationError("SQLTokenStore needs a SQLite file, not :memory:.")
        self._slots = ChangeSlots(f"{parsed.database}.changes") if sqlite else None
        self.cache = ReadCache(cache_ttl, stamp=self._slots.seen if self._slots else None)
        self._listener: asyncio.Task[None] | None = None
        self._swept = 0.0
        self._busy_timeout = busy_timeout
        self._pid = 0
        #: PostgreSQL: whether this role may move the sequence of versions (a move's copies).
        self._movable = False
        self._forked()

    def __repr__(self) -> str:
        return f"SQLTokenStore({self._where}, prefix={self.schema.prefix!r})"

    @property
    def engine(self) -> Engine | AsyncEngine:
        """The app's engine, or one made from the URL on first use."""
        if self._engine is None:
            self._engine = make_engine(self._url, self._busy_timeout)
        return self._engine

    def _forked(self) -> None:
        """Start afresh in this process (a forked child has none of the parent's)."""
        self._pid, self._listener, self._ready = current_pid(), None, False
        self._ready_lock = PerLoop(asyncio.Lock)  # a loop's first calls wait for one creation
        sqlite = self.dialect == "sqlite"  # the parent's threads and connections are not ours
        self._runner = Runner(sqlite=sqlite, direct=sqlite and self._owned)

    async def _adopt_fork(self) -> None:
        """In a forked child: start afresh, the parent's pooled connections left to it."""
        self._forked()
        self.cache.listen(False)
        if is_async(self._engine):
            await self._engine.dispose(close=False)
        elif self._engine is not None:
            self._engine.dispose(close=False)

    async def open(self) -> None:
        """Create the tables when missing (an unreachable database is logged; requests get
        503 until it answers); refuse tables of another schema version."""
        if self._pid != current_pid():  # a forked child: the parent's connections are not ours
            await self._adopt_fork()
        try:
            await self._ensure()
        except StoreUnavailable as exc:
            logger.error(
                "The token store cannot be opened (%s). Requests that need it get 503 until it "
                "answers; nothing has to be restarted.",
                "; ".join(exc.__notes__),
            )
        except ConfigurationError:
            await self.close()
            raise
        engine = self.engine  # PostgreSQL's feed of writes needs asyncpg
        if is_async(engine) and self._slots is None and self.cache.ttl > 0 and not self._listener:
            feed = functools.partial(listen, engine, self.schema.channel, self.cache)
            self._listener = asyncio.get_running_loop().create_task(self.cache.follow(feed))

    async def close(self) -> None:
        listener, self._listener = self._listener, None
        if listener is not None:
            await cancel(listener)
        self.cache.listen(False)
        await self._runner.close()
        if self._owned and self._engine is not None:
            engine, self._engine = self._engine, None
            if is_async(engine):
                await engine.dispose()
            else:
                engine.dispose()
        if self._slots is not None:
            self._slots.close()
        self._ready = False

    async def _ensure(self) -> None:
        async with self._ready_lock.get():  # transaction() calls it only while not ready
            if self._ready:
                return

            def create(connection: Connection) -> Found:
                return open_tables(connection, self.schema, self._sql, self._where)

            try:
                found = await self._in_transaction(create, write=True)
            except FAILURES:  # two processes creating the tables at once: one loses
                try:
                    found = await self._in_transaction(create, write=True)
                except FAILURES as exc:
                    raise unavailable(self.dialect, self._where, exc) from exc
            if self.dialect == "sqlite" and self._owned:  # a file that cannot be written, said
                write = functools.partial(self._in_transaction, write=True)
                self.unwritable = await unwritable(write, self.schema, self._where)
            self._movable = found.movable
            if found.sequenced != self._sql.sequenced:
                self._sql = Statements(self.schema, self.dialect, sequenced=found.sequenced)
            self._ready = True

    async def get(self, key: str) -> TokenRecord | None:
        read, now = self._sql.read, self._clock()
        row = await self._run(
            lambda c: c.execute(read, bind(key=key, now=now)).first(),
            write=False,
            single=True,
            retry=True,
        )
        return self._codec.read(key, bytes(row[1]), int(row[0])) if row else None

    async def put(
        self, key: str, record: TokenRecord, *, due: float | None = None, used: float | None = None
    ) -> TokenRecord:
        return replace(record, version=await self._save(key, record, due, used=used))

    async def replace(
        self, key: str, old: TokenRecord, new: TokenRecord, *, due: float | None = None
    ) -> TokenRecord | None:
        try:
            return replace(new, version=await self._save(key, new, due, old=old.version))
        except _Stale:
            return None

    async def _save(self, key: str, record: TokenRecord, due: float | None, **more: Any) -> int:
        """A login (``used=``: an upsert), or a refresh over version ``old=`` (else
        :class:`_Stale`). Returns the new version."""
        row = {"key": key, "record": self._codec.record(key, record), "due": due, **more}
        row["expires"] = min(self._clock() + self._idle, record.reauthorize_by)

        def write(connection: Executes, sql: Statements) -> int:
            version = saved(connection, sql, "old" in more, row)
            if version is None:
                raise _Stale()
            return version

        return await self._write(key, write)

    async def delete(self, key: str, old: TokenRecord | None = None) -> bool:
        which = bind(key=key, old=None if old is None else old.version)  # old: delete_version's

        def gone(connection: Executes, sql: Statements) -> bool:
            done = connection.execute(sql.delete if old is None else sql.delete_version, which)
            return done.first() is not None if sql.notifying else bool(done.rowcount)

        return await self._write(key, gone)

    async def stored(self, page: int = 500) -> AsyncIterator[list[Stored]]:
        after = ""
        while True:
            rows = await self._page(after, page)
            if not rows:
                return
            yield [
                Stored(k, v, bytes(b), self._codec.readable(k, bytes(b), v), due, used)
                for k, v, b, due, used in rows
            ]
            after = rows[-1][0]

    async def _page(self, after: str, limit: int) -> Sequence[Any]:
        where = bind(after=after, now=self._clock(), limit=limit)
        page = self._sql.page
        return await self._run(lambda c: c.execute(page, where).all(), write=False, on="thread")

    async def adopt(self, rows: Sequence[Stored]) -> int:
        sql = await self._statements()
        if sql.sequenced and not self._movable:
            named = sql.sequence_named
            raise ConfigurationError(
                f"Moving logins into {self._where} needs the right to move the sequence "
                f"{named} (the versions given after them stay above theirs): run the move as "
                f"the tables' owner, or GRANT UPDATE ON SEQUENCE {named} to this role."
            )
        now = self._clock()
        moved = [
            (row, min(now + self._idle, row.record.reauthorize_by)) for row in rows if row.record
        ]

        channel = self.schema.channel if self.dialect == "postgresql" else None

        def write(connection: Executes) -> list[str]:
            return moved_in(connection, sql, moved, now, channel)

        adopted = await self._run(write, on="thread")
        if self._slots is not None:
            for key in adopted:
                self._slots.changed(key)
        return len(adopted)

    async def reschedule(self, key: str, due: float | None) -> None:
        moved = bind(key=key, due=due)
        await self._run(lambda c: c.execute(self._sql.reschedule, moved), single=True, retry=True)

    async def mark_used(self, key: str, at: float) -> None:
        used = bind(key=key, now=self._clock(), at=at)
        await self._run(lambda c: c.execute(self._sql.mark_used, used), single=True, retry=True)

    async def due(self, now: float, limit: int) -> Due:
        sql, sweep = self._sql, self._swept + SWEEP_EVERY <= now

        def read(connection: Executes) -> Due:
            keys = connection.execute(sql.due, bind(now=now, limit=limit)).all()
            if keys:
                until = now + DUE_LEASE
                connection.execute(sql.lease, [bind(key=k, until=until) for k, _ in keys])
            first = connection.execute(sql.next_due, bind(now=now)).scalar()
            if sweep:  # rows past their expiry, and claims long ended, go
                connection.execute(sql.sweep_tokens, bind(now=now))
                connection.execute(sql.sweep_claims, bind(ended=now - 3600))
            return Due([DueKey(str(k), used) for k, used in keys], first)

        found = await self._run(read, on="thread")  # many rows, and a sweep may delete many
        if sweep:
            self._swept = now
        return found

    async def claim(self, key: str, ttl: float, owner: str) -> str | None:
        holder, now = f"{owner}/{os.urandom(8).hex()}", self._clock()
        taken = {"key": key, "holder": holder, "until": now + ttl, "now": now, "mine": f"{owner}/"}
        row = await self._run(
            lambda c: c.execute(self._sql.claim, bind(**taken)).first(), single=True, retry=True
        )
        return holder if row is not None else None

    async def release(self, key: str, claim: str) -> None:
        ended = bind(key=key, holder=claim)
        await self._run(lambda c: c.execute(self._sql.release, ended), single=True, retry=True)

    async def _write(self, key: str, work: Callable[[Executes, Statements], T]) -> T:
        """Run a write of ``key`` (``work(connection, statements)``, the statements as the store
        found the database) and report it: PostgreSQL notifies in its transaction (a notifying
        statement, one of its own), SQLite moves the key's change slot after it (committed or
        not)."""
        sql = await self._statements()

        def reported(connection: Executes) -> T:
            done = work(connection, sql)
            if self.dialect == "postgresql" and not sql.notifying:
                connection.execute(sql.notify, bind(channel=self.schema.channel, key=key))
            return done

        try:
            return await self._run(reported, single=sql.notifying)
        finally:
            if self._slots is not None:
                self._slots.changed(key)

    async def _statements(self) -> Statements:
        """The statements for the database as the store found it (opened first if need be)."""
        if not self._ready:
            await self._ensure()
        return self._sql

    async def transaction(self, work: Callable[[Connection], T], *, write: bool = True) -> T:
        """Run ``work(connection)`` (a sync ``Connection``) in one transaction; the database's
        failures become a clean 503."""
        return await self._run(cast("Callable[[Executes], T]", work), write=write, on="engine")

    async def _run(
        self,
        work: Callable[[Executes], T],
        *,
        write: bool = True,
        on: On = "loop",
        single: bool = False,
        retry: bool = False,
    ) -> T:
        """:meth:`transaction` for the store's own statements: on a SQLite file of the
        store's own, straight on the driver (:class:`.DirectSQLite`), and the one-row ones
        (``on="loop"``) inline on the event loop's thread while no other process holds the
        lock. ``single``: ``work`` runs one statement, a transaction by itself (PostgreSQL:
        no BEGIN and COMMIT sent). ``retry``: ``work`` may run twice (a read; a claim, which its
        holder takes again; a release, a use mark, a schedule, each setting what it sets),
        and does, on a new connection, when its own was found dead."""
        try:
            if not self._ready:
                await self._ensure()
            try:
                return await self._in_transaction(work, write=write, on=on, single=single)
            except DBAPIError as exc:
                if not (retry and exc.connection_invalidated):
                    raise
                # A connection the server dropped unheard (a NAT's idle timeout, a failover):
                # once more, on a new one.
                return await self._in_transaction(work, write=write, on=on, single=single)
        except FAILURES as exc:
            raise unavailable(self.dialect, self._where, exc) from exc

    async def _in_transaction(
        self, work: Callable[[Any], T], *, write: bool, on: On = "engine", single: bool = False
    ) -> T:  # work takes a Connection, or (not on the engine) what Executes
        if self._pid != current_pid():  # forked, and open() not called: never the parent's
            await self._adopt_fork()  # connections (SQLite's own docs forbid it)
        return await self._runner.run(self.engine, work, write=write, on=on, single=single)
