"""What the SQL store needs of each engine beside SQLAlchemy: an engine set up for SQLite
(WAL, a busy timeout, writes that take the lock at once, a file only its owner can read), and
PostgreSQL's change notifications for the read cache.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from ..retry import backoff, stop_if_cancelled

__all__ = ["async_url", "listen", "make_engine"]

logger = logging.getLogger("quart_spotify_auth")


def async_url(url: str) -> str:
    """The async driver's URL: ``sqlite:///...`` → aiosqlite, ``postgresql://`` → asyncpg."""
    parsed = make_url(url)
    driver = {"sqlite": "sqlite+aiosqlite", "postgresql": "postgresql+asyncpg"}.get(
        parsed.drivername, parsed.drivername
    )
    return parsed.set(drivername=driver).render_as_string(hide_password=False)


def make_engine(url: str, busy_timeout: float = 5.0) -> AsyncEngine:
    """An async engine for ``url``; for SQLite, its file (and folder) created for its owner
    alone, and every connection set up for several processes (a write waits up to
    ``busy_timeout`` seconds for another process's)."""
    parsed = make_url(url)
    if not parsed.drivername.startswith("sqlite"):
        return create_async_engine(async_url(url), pool_pre_ping=True, pool_size=10)
    if parsed.database and parsed.database != ":memory:":
        path = Path(parsed.database)
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        if not path.exists():
            os.close(os.open(path, os.O_CREAT | os.O_RDWR, 0o600))  # -wal and -shm follow it
    engine = create_async_engine(async_url(url), connect_args={"timeout": busy_timeout})
    pragmas = ("journal_mode=WAL", f"busy_timeout={int(busy_timeout * 1000)}", "synchronous=NORMAL")

    def connected(dbapi_connection: Any, _: Any) -> None:
        # SQLAlchemy's recipe: let SQLAlchemy, not pysqlite, begin transactions.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        for pragma in pragmas:
            cursor.execute(f"PRAGMA {pragma}")
        cursor.close()

    event.listen(engine.sync_engine, "connect", connected)
    event.listen(engine.sync_engine, "begin", _sqlite_begin)
    return engine


def _sqlite_begin(connection: Any) -> None:
    # A write takes the write lock at once, so two processes never deadlock upgrading theirs.
    mode = "IMMEDIATE" if connection.get_execution_options().get("write") else "DEFERRED"
    connection.exec_driver_sql(f"BEGIN {mode}")


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
