"""What the SQL store needs of each engine beside SQLAlchemy: SQLite set up for several
processes (WAL, a busy timeout, writes that lock at once, a file for its owner alone),
PostgreSQL's feed of writes, and what to tell the user when the database fails."""

from __future__ import annotations

import asyncio
import functools
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeGuard

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DisconnectionError

if TYPE_CHECKING:  # SQLAlchemy 2.1 imports its asyncio part only with greenlet installed
    from sqlalchemy.ext.asyncio import AsyncEngine

from ..errors import ConfigurationError, StoreUnavailable
from .cache import ReadCache

__all__ = ["is_async", "listen", "make_engine", "sqlite_setup", "unavailable"]

from ..signals import logger


@functools.cache
def _async_engine() -> type | None:
    try:
        from sqlalchemy.ext.asyncio import AsyncEngine
    except ImportError:  # no greenlet: the default install (SQLite) has no async engines
        return None
    return AsyncEngine


def is_async(engine: object) -> TypeGuard[AsyncEngine]:
    """Whether ``engine`` is SQLAlchemy's ``AsyncEngine`` (never, without its asyncio part)."""
    cls = _async_engine()
    return cls is not None and isinstance(engine, cls)


def make_engine(url: str, busy_timeout: float = 5.0) -> Engine | AsyncEngine:
    """The engine for ``url``. PostgreSQL: asyncpg. SQLite: ``sqlite3`` (see :mod:`.sqldirect`),
    its file made private, each connection set up by :func:`sqlite_setup`."""
    parsed = make_url(url)
    if not parsed.drivername.startswith("sqlite"):
        try:
            from sqlalchemy.ext.asyncio import create_async_engine
        except ImportError as exc:
            raise ConfigurationError(
                "A PostgreSQL token store needs its extra: pip install "
                "'quart-spotify-auth[postgresql]' (asyncpg and SQLAlchemy's asyncio support)."
            ) from exc
        if parsed.drivername == "postgresql":  # the async driver
            parsed = parsed.set(drivername="postgresql+asyncpg")
        url = parsed.render_as_string(hide_password=False)  # hide_parameters: no token in logs
        timeout = {"command_timeout": 5.0}  # a statement, a close: a silent server fails
        # 20 connections kept, none beyond (the same 20 at most as 10 kept and 10 more made on
        # demand): the renewer's 16 at once, the feed of writes and a request or two used to
        # go past 10, and each connection past it was made and closed per transaction.
        made = create_async_engine(
            url, pool_size=20, max_overflow=0, hide_parameters=True, connect_args=timeout
        )
        event.listen(made.sync_engine, "checkout", _closed_is_gone)
        return made
    if parsed.database and parsed.database != ":memory:":
        private_file(Path(parsed.database))
    engine = create_engine(
        parsed.set(drivername="sqlite"),
        connect_args={"timeout": busy_timeout, "check_same_thread": False},
        hide_parameters=True,
    )
    sqlite_setup(engine, busy_timeout)
    return engine


def _closed_is_gone(dbapi_connection: Any, record: Any, proxy: Any) -> None:
    """A pooled PostgreSQL connection the server closed (a restart, a failover, an idle
    timeout) is replaced before use. Its driver heard the close, so no round trip is sent to
    find out: a ping on every checkout was a round trip in each transaction, a quarter of a
    renewal's CPU with a million logins."""
    driver = record.driver_connection
    if driver is not None and driver.is_closed():
        raise DisconnectionError("the server closed this connection")


def private_file(path: Path) -> None:
    """Make the database file (and its folder) for its owner alone, its -wal and -shm too (else
    refuse); one that cannot be created is left for the first connection to report (a 503)."""
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        if not path.exists():
            os.close(os.open(path, os.O_CREAT | os.O_RDWR, 0o600))  # -wal and -shm follow it
    except OSError as exc:
        logger.debug("Cannot create %s yet: %s", path, exc)
    for file in (path, Path(f"{path}-wal"), Path(f"{path}-shm")):
        try:
            if file.exists() and file.stat().st_mode & 0o077:
                os.chmod(file, 0o600)
        except OSError as exc:
            raise ConfigurationError(
                f"The SQLite file {file} may be read by other users and cannot be made private "
                f"({exc.strerror}): chmod 600 it, as its owner."
            ) from None


def sqlite_setup(engine: Engine, busy_timeout: float = 5.0) -> None:
    """WAL, a busy timeout (a write waits that many seconds for another process's), and
    transactions SQLAlchemy begins itself (a write's at once)."""
    pragmas = ("journal_mode=WAL", f"busy_timeout={int(busy_timeout * 1000)}", "synchronous=NORMAL")

    def connected(dbapi_connection: Any, _: Any) -> None:
        # SQLAlchemy's recipe: let SQLAlchemy, not pysqlite, begin transactions.
        dbapi_connection.isolation_level = None
        try:
            cursor = dbapi_connection.cursor()
            for pragma in pragmas:
                cursor.execute(f"PRAGMA {pragma}")
            cursor.close()
        except BaseException:
            # SQLAlchemy before 2.1 drops a connection whose set-up failed without closing it.
            dbapi_connection.close()
            raise

    event.listen(engine, "connect", connected)
    event.listen(engine, "begin", _sqlite_begin)


def _sqlite_begin(connection: Any) -> None:
    # A write locks at once, so two processes never deadlock upgrading their locks; straight
    # to the driver, as SQLAlchemy's execution cost 100 µs a transaction.
    mode = "IMMEDIATE" if connection.get_execution_options().get("write") else "DEFERRED"
    connection.connection.driver_connection.execute(f"BEGIN {mode}")


async def listen(engine: AsyncEngine, channel: str, cache: ReadCache) -> None:
    """Report every key written on ``channel`` (PostgreSQL ``LISTEN``) to ``cache``, until the
    connection ends or a ``SELECT 1`` each heartbeat goes unanswered for one."""
    async with engine.connect() as connection:
        driver: Any = (await connection.get_raw_connection()).driver_connection
        closed = asyncio.Event()
        driver.add_termination_listener(lambda _: closed.set())
        await driver.add_listener(channel, lambda *args: cache.changed(str(args[-1])))
        cache.listen(True)
        try:
            while not closed.is_set():
                try:
                    async with asyncio.timeout(cache.heartbeat):
                        await closed.wait()
                except TimeoutError:
                    await driver.fetchval("SELECT 1", timeout=cache.heartbeat)
            raise ConnectionError("the server closed the change feed's connection")
        except BaseException:
            driver.terminate()  # never back to the pool: a silent one would hang its next user
            await connection.invalidate()
            raise


#: What a SQLite error's text says is wrong with the file, and the fix.
_SQLITE_HINTS = {
    "readonly": " (it cannot be written: check its and its folder's permissions)",
    "unable to open": " (it cannot be written: check its and its folder's permissions)",
    "malformed": " (it is damaged: restore it from a backup or move it away; it is never replaced)",
    "not a database": " (it is not a SQLite database: move it away; it is never replaced)",
    "locked": " (it is locked: another process held it longer than the busy timeout)",
}


def unavailable(dialect: str, where: str | None, exc: BaseException) -> StoreUnavailable:
    """The clean 503 for a database failure: its page names the kind of problem (a SQLite file's
    likely fix); its note, for the log, ``where`` and what the database said. Never the URL."""
    cause = getattr(exc, "orig", None) or exc
    detail = str(cause).splitlines()[0][:160] if str(cause) else type(cause).__name__
    sqlite = dialect == "sqlite"
    said = detail.replace("read-only", "readonly") if sqlite else ""
    hint = next((fix for words, fix in _SQLITE_HINTS.items() if words in said), "")
    failed = StoreUnavailable.of(
        ("SQLite" if sqlite else "PostgreSQL") + hint, cause, where, detail
    )
    if hint:  # the fix, in the log too
        failed.add_note(hint.strip(" ()").capitalize())
    return failed
