"""What the SQL store needs of each engine, beside SQLAlchemy: an engine set up for SQLite
(WAL, a busy timeout, writes that take the lock at once, a file only its owner can read), the
point read of SQLite made in the calling thread, and PostgreSQL's change notifications.

**Why SQLite reads bypass SQLAlchemy's async engine.** Every request reads its user's token.
Through the async engine a point read costs about 740 µs of a thread hop (aiosqlite); the same
read with the standard ``sqlite3`` module in the calling thread costs about 10 µs (measured
here, 2 cores). In WAL mode a reader never waits for a writer, so the read is made inline,
fresh, with no cache to keep honest; if SQLite is busy (a crash recovery), it falls back to the
async engine. Writes always go through the async engine.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from ..retry import backoff, stop_if_cancelled

__all__ = ["SQLiteReader", "async_url", "listen", "make_engine"]

logger = logging.getLogger("quart_spotify_auth")

#: How long a SQLite write waits for another process's write to end (ms).
BUSY_TIMEOUT_MS = 5000


def async_url(url: str) -> str:
    """The async driver's URL: ``sqlite:///...`` → aiosqlite, ``postgresql://`` → asyncpg."""
    parsed = make_url(url)
    driver = {"sqlite": "sqlite+aiosqlite", "postgresql": "postgresql+asyncpg"}.get(
        parsed.drivername, parsed.drivername
    )
    return parsed.set(drivername=driver).render_as_string(hide_password=False)


def make_engine(url: str) -> AsyncEngine:
    """An async engine for ``url``; for SQLite, its file (and folder) created for its owner
    alone, and every connection set up for several processes."""
    parsed = make_url(url)
    if not parsed.drivername.startswith("sqlite"):
        return create_async_engine(async_url(url), pool_pre_ping=True, pool_size=10)
    if parsed.database and parsed.database != ":memory:":
        path = Path(parsed.database)
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        if not path.exists():
            os.close(os.open(path, os.O_CREAT | os.O_RDWR, 0o600))  # -wal and -shm follow it
    engine = create_async_engine(async_url(url), connect_args={"timeout": BUSY_TIMEOUT_MS / 1000})
    event.listen(engine.sync_engine, "connect", _sqlite_connect)
    event.listen(engine.sync_engine, "begin", _sqlite_begin)
    return engine


def _sqlite_connect(dbapi_connection: Any, _: Any) -> None:
    # SQLAlchemy's recipe: let SQLAlchemy, not pysqlite, begin transactions.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    for pragma in ("journal_mode=WAL", f"busy_timeout={BUSY_TIMEOUT_MS}", "synchronous=NORMAL"):
        cursor.execute(f"PRAGMA {pragma}")
    cursor.close()


def _sqlite_begin(connection: Any) -> None:
    # A write takes the write lock at once, so two processes never deadlock upgrading theirs.
    mode = "IMMEDIATE" if connection.get_execution_options().get("write") else "DEFERRED"
    connection.exec_driver_sql(f"BEGIN {mode}")


class SQLiteReader:
    """Point reads of one SQLite file with ``sqlite3``, in the calling thread (one connection
    per thread and process); ``None`` means "ask the async engine"."""

    def __init__(self, path: str, table: str) -> None:
        self._uri = f"file:{path}?mode=rw"  # never creates the file
        self._sql = f'SELECT version, record FROM "{table}" WHERE "key" = ? AND expires > ?'  # noqa: S608 - our own table name
        self._local = threading.local()

    def read(self, key: str, now: float) -> tuple[int, bytes] | bool | None:
        """``(version, record)``, ``False`` when there is no such row, ``None`` when this
        thread cannot read now (busy, or no file yet)."""
        try:
            row = self._connection().execute(self._sql, (key, now)).fetchone()
        except sqlite3.Error:
            self._local.__dict__.clear()  # start afresh next time
            return None
        return False if row is None else (int(row[0]), bytes(row[1]))

    def _connection(self) -> sqlite3.Connection:
        local = self._local.__dict__
        if local.get("pid") != os.getpid():
            connection = sqlite3.connect(self._uri, uri=True, timeout=0, isolation_level=None)
            local.update(connection=connection, pid=os.getpid())
        connection = local["connection"]
        assert isinstance(connection, sqlite3.Connection)
        return connection


async def listen(
    engine: AsyncEngine,
    channel: str,
    heard: Callable[[str], None],
    listening: Callable[[bool], None],
) -> None:
    """Call ``heard(key)`` for every key written on ``channel`` (PostgreSQL LISTEN), and
    ``listening(...)`` as the feed starts and stops; reconnects with backoff until cancelled."""
    failures = 0
    while True:
        try:
            async with engine.connect() as connection:
                raw = await connection.get_raw_connection()
                driver: Any = raw.driver_connection
                closed = asyncio.Event()
                driver.add_termination_listener(lambda _, closed=closed: closed.set())
                await driver.add_listener(channel, lambda *args: heard(str(args[-1])))
                listening(True)
                failures = 0
                await closed.wait()
        except Exception:  # the database is away: try again
            stop_if_cancelled()
        finally:
            listening(False)
        failures += 1
        await asyncio.sleep(backoff(failures, base=0.1, cap=5.0))
