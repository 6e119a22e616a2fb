"""The SQL store: SQLite (the default: a file in the app's instance folder, shared by the
workers of one host) or PostgreSQL (many hosts), one implementation on SQLAlchemy's async Core.

Versioned writes are compare-and-set updates with a version counter in the same transaction;
the schedule is an indexed ``due`` column; a claim is a row with an expiry, so a holder that
crashed cannot keep it (no lock is held across a Spotify round trip, and nothing depends on a
database session staying up). Records are encrypted at rest with the same keys as Redis.

Reads go through a per-process :class:`~.cache.ReadCache`: a read through the async engine
costs 700 to 800 µs (aiosqlite's thread hops, asyncpg's round trips), twice what a whole
request costs. PostgreSQL tells every process about writes (``LISTEN``/``NOTIFY``); SQLite
processes compare the key's slot in a change file beside the database (:mod:`.changes`).
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import replace
from typing import Any, TypeVar

from sqlalchemy import delete, func, or_, select, text, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from ..errors import ConfigurationError, StoreUnavailable
from ..retry import cancel
from ..tokens import TokenRecord
from .base import Due, TokenStore
from .cache import ReadCache
from .changes import ChangeSlots
from .codec import Codec, Unbound
from .sqlengine import listen, make_engine
from .sqlschema import SCHEMA_VERSION, Schema

__all__ = ["SQLTokenStore"]

logger = logging.getLogger("quart_spotify_auth")

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
            ``engine``, an ``AsyncEngine`` the app owns (not disposed by the store), to keep
            tokens in the app's own database.
        prefix: the tables' name prefix.
        idle_ttl: a login not written for this long (seconds) is forgotten.
        encryption_keys: Fernet keys; records are encrypted at rest, each bound to its key.
        migrating: with keys, still read records written in clear or unbound.
        clock: the time source (tests).
        cache_ttl: seconds a read may be served from this process (0: never).
        busy_timeout: SQLite: seconds a write waits for another process's.
    """

    shared = True

    def __init__(
        self,
        url: str | None = None,
        *,
        engine: AsyncEngine | None = None,
        prefix: str = "quart_spotify_auth_",
        idle_ttl: float = 30 * 86400,
        encryption_keys: Sequence[str | bytes] = (),
        migrating: bool = False,
        clock: Callable[[], float] = time.time,
        cache_ttl: float = 30.0,
        busy_timeout: float = 5.0,
    ) -> None:
        if (url is None) == (engine is None):
            raise ConfigurationError("SQLTokenStore needs a url or an engine (one of them).")
        self._url = url if url is not None else str(engine.url)  # type: ignore[union-attr]
        self._engine = engine
        self._owned = engine is None
        self.schema = Schema(prefix)
        self._idle = idle_ttl
        self._codec = Codec(encryption_keys, migrating=migrating)
        self._clock = clock
        parsed = make_url(self._url)
        self.dialect = "sqlite" if parsed.drivername.startswith("sqlite") else "postgresql"
        self._where = parsed.database if self.dialect == "sqlite" else parsed.host
        self._slots = None
        if self.dialect == "sqlite":
            if parsed.database in (None, "", ":memory:"):
                raise ConfigurationError("SQLTokenStore needs a SQLite file, not :memory:.")
            self._slots = ChangeSlots(f"{parsed.database}.changes")
        stamp = self._slots.seen if self._slots is not None else None
        self.cache = ReadCache(cache_ttl, stamp=stamp)
        self._listener: asyncio.Task[None] | None = None
        self._ready = False
        self._ready_lock = asyncio.Lock()
        self._swept = 0.0
        self._pid = os.getpid()
        self._busy_timeout = busy_timeout

    def __repr__(self) -> str:
        return f"SQLTokenStore({self.dialect}, {self._where!r}, prefix={self.schema.prefix!r})"

    # -- lifecycle ---------------------------------------------------------------------------

    @property
    def engine(self) -> AsyncEngine:
        if self._engine is None:
            self._engine = make_engine(self._url, self._busy_timeout)
        return self._engine

    async def open(self) -> None:
        """Create the tables when missing (an unreachable database is logged, and requests
        get 503 until it answers); refuse tables of another schema version."""
        if self._pid != os.getpid():  # a forked child: the parent's connections are not ours
            self._pid, self._listener, self._ready = os.getpid(), None, False
            self._ready_lock = asyncio.Lock()
            self.cache.listen(False)
            if self._engine is not None:
                await self._engine.dispose(close=False)
        try:
            await self._ensure()
        except StoreUnavailable as exc:
            logger.error("The token store cannot be opened yet: %s", exc.description)
        except ConfigurationError:
            await self.close()
            raise
        if self.dialect == "postgresql" and self.cache.ttl > 0 and self._listener is None:
            self._listener = asyncio.get_running_loop().create_task(
                listen(self.engine, self.schema.channel, self.cache.changed, self.cache.listen)
            )

    async def close(self) -> None:
        listener, self._listener = self._listener, None
        if listener is not None:
            await cancel(listener)
        self.cache.listen(False)
        if self._owned and self._engine is not None:
            engine, self._engine = self._engine, None
            await engine.dispose()
        if self._slots is not None:
            self._slots.close()
        self._ready = False

    async def _ensure(self) -> None:
        if self._ready:
            return
        async with self._ready_lock:
            if self._ready:
                return
            meta = self.schema.meta
            for attempt in (1, 2):  # two processes creating the tables at once: one loses
                try:
                    async with self._write() as connection:
                        await connection.run_sync(self.schema.metadata.create_all)
                        found = dict((await connection.execute(select(meta))).all())
                        for name, value in (("schema", SCHEMA_VERSION), ("versions", 0)):
                            if name not in found:
                                await connection.execute(
                                    meta.insert().values(name=name, value=value)
                                )
                    break
                except (SQLAlchemyError, OSError) as exc:
                    if attempt == 2:
                        raise self._unavailable(exc) from exc
            version = found.get("schema", SCHEMA_VERSION)
            if version != SCHEMA_VERSION:
                raise ConfigurationError(
                    f"The token tables {self.schema.prefix}* in {self._where!r} are schema "
                    f"version {version}; this quart-spotify-auth uses version {SCHEMA_VERSION}. "
                    "Print the tables it needs with `python -m quart_spotify_auth schema` and "
                    "migrate yours to them (or drop them: every user logs in again)."
                )
            self._ready = True

    # -- records -----------------------------------------------------------------------------

    def peek(self, key: str) -> TokenRecord | None:
        return self.cache.get(key)

    async def get(
        self, key: str, *, touch: float | None = None, fresh: bool = False
    ) -> TokenRecord | None:
        tokens = self.schema.tokens
        now = self._clock()
        if touch is None:
            if not fresh and (cached := self.cache.get(key)) is not None:
                return cached
            begun = self.cache.begin(key)
            query = select(tokens.c.version, tokens.c.record).where(
                tokens.c.key == key, tokens.c.expires > now
            )
            row = await self._run(lambda c: c.execute(query), write=False)
            record = self._load(key, row.first())
            self.cache.remember(key, record, begun)
            return record
        due: Any = func.coalesce(func.min(tokens.c.due, touch), touch)
        if self.dialect == "postgresql":
            due = func.least(func.coalesce(tokens.c.due, touch), touch)
        touched = (
            update(tokens)
            .where(tokens.c.key == key, tokens.c.expires > now)
            .values(used=touch, due=due)
            .returning(tokens.c.version, tokens.c.record)
        )
        row = await self._run(lambda c: c.execute(touched))
        return self._load(key, row.first())

    async def put(
        self, key: str, record: TokenRecord, *, due: float | None = None, used: float | None = None
    ) -> TokenRecord:
        tokens, blob = self.schema.tokens, self._codec.record(key, record)
        expires = min(self._clock() + self._idle, record.reauthorize_by)

        async def write(connection: AsyncConnection) -> int:
            version = await self._next_version(connection)
            values = dict(
                key=key, version=version, record=blob, due=due, used=used, expires=expires
            )
            statement = self._insert(tokens).values(**values)
            kept = {"used": func.coalesce(statement.excluded.used, tokens.c.used)}
            await connection.execute(
                statement.on_conflict_do_update(
                    index_elements=[tokens.c.key],
                    set_={**{k: statement.excluded[k] for k in values if k != "key"}, **kept},
                )
            )
            await self._notify(connection, key)
            return version

        try:
            version = await self._run(write)
        finally:
            self._changed(key)
        return replace(record, version=version)

    async def replace(
        self, key: str, old: TokenRecord, new: TokenRecord, *, due: float | None = None
    ) -> TokenRecord | None:
        tokens, blob = self.schema.tokens, self._codec.record(key, new)
        expires = min(self._clock() + self._idle, new.reauthorize_by)

        async def write(connection: AsyncConnection) -> int:
            version = await self._next_version(connection)
            changed = await connection.execute(
                update(tokens)
                .where(tokens.c.key == key, tokens.c.version == old.version)
                .values(version=version, record=blob, due=due, expires=expires)
            )
            if changed.rowcount != 1:
                raise _Stale()
            await self._notify(connection, key)
            return version

        try:
            version = await self._run(write)
        except _Stale:
            return None
        finally:
            self._changed(key)
        return replace(new, version=version)

    async def delete(self, key: str, old: TokenRecord | None = None) -> bool:
        tokens = self.schema.tokens
        where = [tokens.c.key == key] + ([tokens.c.version == old.version] if old else [])

        async def write(connection: AsyncConnection) -> bool:
            deleted = await connection.execute(delete(tokens).where(*where))
            await self._notify(connection, key)
            return bool(deleted.rowcount)

        try:
            return await self._run(write)
        finally:
            self._changed(key)

    # -- schedule and claims -----------------------------------------------------------------

    async def reschedule(self, key: str, due: float | None) -> None:
        tokens = self.schema.tokens
        statement = update(tokens).where(tokens.c.key == key).values(due=due)
        await self._run(lambda c: c.execute(statement))

    async def due(self, now: float, limit: int) -> Due:
        tokens, claims = self.schema.tokens, self.schema.claims
        live = tokens.c.expires > now
        due_now = (
            select(tokens.c.key, tokens.c.used)
            .where(tokens.c.due <= now, live)
            .order_by(tokens.c.due)
            .limit(limit)
        )
        upcoming = select(func.min(tokens.c.due)).where(tokens.c.due.isnot(None), live)
        sweep = self._swept + SWEEP_EVERY <= now

        async def read(connection: AsyncConnection) -> Due:
            keys = (await connection.execute(due_now)).all()
            first = (await connection.execute(upcoming)).scalar()
            if sweep:  # rows past their expiry, and claims long ended, go
                await connection.execute(delete(tokens).where(tokens.c.expires <= now))
                await connection.execute(delete(claims).where(claims.c.until <= now - 3600))
            return Due([(str(k), used) for k, used in keys], first)

        found = await self._run(read, write=sweep)
        if sweep:
            self._swept = now
        return found

    async def claim(self, key: str, ttl: float, owner: str) -> str | None:
        claims = self.schema.claims
        holder = f"{owner}/{os.urandom(8).hex()}"
        now = self._clock()
        statement = self._insert(claims).values(key=key, holder=holder, until=now + ttl)
        statement = statement.on_conflict_do_update(
            index_elements=[claims.c.key],
            set_={"holder": holder, "until": now + ttl},
            where=or_(
                claims.c.until <= now, claims.c.holder.startswith(f"{owner}/", autoescape=True)
            ),
        ).returning(claims.c.holder)
        row = await self._run(lambda c: c.execute(statement))
        return holder if row.first() is not None else None

    async def release(self, key: str, claim: str) -> None:
        claims = self.schema.claims
        statement = delete(claims).where(claims.c.key == key, claims.c.holder == claim)
        await self._run(lambda c: c.execute(statement))

    # -- helpers -----------------------------------------------------------------------------

    def _load(self, key: str, row: Any) -> TokenRecord | None:
        if not row:
            return None
        try:
            return self._codec.load_record(key, bytes(row[1]), int(row[0]))
        except Unbound:
            logger.warning("A stored record is not bound to its key; it was refused")
            return None

    def _changed(self, key: str) -> None:
        """After a write (committed or not: a copy may be stale either way)."""
        self.cache.changed(key)
        if self._slots is not None:
            self._slots.changed(key)

    def _insert(self, table: Any) -> Any:
        return (sqlite.insert if self.dialect == "sqlite" else postgresql.insert)(table)

    async def _next_version(self, connection: AsyncConnection) -> int:
        meta = self.schema.meta
        bumped = await connection.execute(
            update(meta)
            .where(meta.c.name == "versions")
            .values(value=meta.c.value + 1)
            .returning(meta.c.value)
        )
        return int(bumped.scalar_one())

    async def _notify(self, connection: AsyncConnection, key: str) -> None:
        if self.dialect == "postgresql":
            await connection.execute(
                text("SELECT pg_notify(:channel, :key)"),
                {"channel": self.schema.channel, "key": key},
            )

    def _write(self) -> Any:
        """A write transaction (SQLite: one that takes the write lock at once)."""
        return self.engine.execution_options(write=True).begin()

    async def _run(
        self, work: Callable[[AsyncConnection], Awaitable[T]], *, write: bool = True
    ) -> T:
        """``work`` in a transaction; the database's failures become a clean 503."""
        try:
            if not self._ready:
                await self._ensure()
            async with self._write() if write else self.engine.begin() as connection:
                return await work(connection)
        except (SQLAlchemyError, OSError) as exc:
            raise self._unavailable(exc) from exc

    def _unavailable(self, exc: BaseException) -> StoreUnavailable:
        cause = getattr(exc, "orig", None) or exc
        detail = str(cause).splitlines()[0][:160] if str(cause) else type(cause).__name__
        if self.dialect == "sqlite":
            unwritable = " (it cannot be written: check its and its folder's permissions)"
            fix = {
                "readonly": unwritable,
                "unable to open": unwritable,
                "malformed": " (it is damaged: restore it from a backup or move it away; it is "
                "never replaced)",
                "not a database": " (it is not a SQLite database: move it away; it is never "
                "replaced)",
            }
            hint = next(
                (v for k, v in fix.items() if k in detail.replace("read-only", "readonly")), ""
            )
            where = f"the SQLite file {self._where!r}{hint}"
        else:
            where = f"PostgreSQL at {self._where!r}"
        return StoreUnavailable(
            f"The login store is unavailable right now ({where}: {type(cause).__name__}: "
            f"{detail}). Try again shortly; your login is kept."
        )
