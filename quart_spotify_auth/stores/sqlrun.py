"""Where the SQL store's transactions run, in one process (:class:`Runner`): an async engine's
on the event loop; a sync engine's on a few store threads; a SQLite file of the store's own
straight on ``sqlite3`` (:mod:`.sqldirect`), its one-row statements inline on the loop's
thread while no other process holds the lock, with the checkpoints that inline writes leave
for a store thread."""

from __future__ import annotations

import asyncio
import functools
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import nullcontext
from typing import TYPE_CHECKING, Any, Literal, TypeVar, cast

from sqlalchemy.engine import Engine

from ..signals import logger
from ..tasks import PerLoop
from .sqldirect import Busy, DirectSQLite, Executes
from .sqlengine import is_async

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncEngine

__all__ = ["THREADS", "On", "Runner"]

T = TypeVar("T")
E = TypeVar("E", "Engine", "AsyncEngine")

#: Threads a process runs SQLite's transactions on (one writes at a time; reads go beside it).
THREADS = 4

#: Where a transaction runs: "loop", inline where the store may (else as "thread"); "thread",
#: straight on the driver on a store thread; "engine", through SQLAlchemy.
On = Literal["loop", "thread", "engine"]


class _Turn:
    """This process's writers on one event loop (a lock is bound to the loop that first
    waits on it): their lock, and how many calls are taking their turn with it (holding it
    or waiting for it, or on a store thread)."""

    __slots__ = ("lock", "queued")

    def __init__(self) -> None:
        self.lock = asyncio.Lock()
        self.queued = 0


class Runner:
    """One process's transactions for a store: ``sqlite`` queues this process's writers in
    order on each event loop (not in SQLite's busy handler, which sleeps); ``direct``, a
    SQLite file the store owns, runs the store's own statements straight on the driver."""

    def __init__(self, *, sqlite: bool, direct: bool) -> None:
        self._sqlite = sqlite
        self._direct_allowed = direct
        self._threads: ThreadPoolExecutor | None = None
        self._direct: DirectSQLite | None = None
        #: Each event loop's writers.
        self._turns = PerLoop(_Turn)
        #: Engines with execution options (:meth:`_with`).
        self._engines: dict[tuple[object, tuple[tuple[str, Any], ...]], object] = {}
        #: The last checkpoint, copying on a store thread (whatever becomes of the loop
        #: whose write started it).
        self._copying: Future[None] | None = None

    def __repr__(self) -> str:
        return f"Runner(threads={self._threads is not None}, direct={self._direct!r})"

    async def run(
        self,
        engine: Engine | AsyncEngine,
        work: Callable[[Any], T],
        *,
        write: bool,
        on: On,
        single: bool = False,
    ) -> T:  # work takes a Connection, or (not on the engine) what Executes
        """``work`` in one transaction (a write takes SQLite's write lock at once, see
        :mod:`.sqlengine`, one per process at a time). ``single``: ``work`` runs one
        statement, its own transaction: but on SQLite, sent with no BEGIN and COMMIT (on
        PostgreSQL, two of a write's three round trips)."""
        direct, turn, copying = self._direct, self._turns.get(), self._copying
        if write and copying is not None and not copying.done():
            # The log is copied back first, whichever loop's write started it: writes that
            # went on would keep the checkpoint from ever catching up. Shielded, as a
            # cancelled wrapper cancels the copy; cancelled here, nothing was written.
            await asyncio.shield(asyncio.wrap_future(copying))
        if on == "loop" and not turn.queued and direct is not None and direct.has_inline():
            # Nothing else of this process holds the lock or waits for it: run at once, with
            # no lock and no await (so never cancelled halfway). A write's one yield here
            # cost more CPU than its SQL.
            try:
                return self._now(direct, work, write)
            except Busy:
                on = "thread"  # another process holds the lock: wait for it on a thread
        turn.queued += 1
        try:
            async with turn.lock if write and self._sqlite else nullcontext():
                return await self._in_turn(engine, work, write, on, single)
        finally:
            turn.queued -= 1

    async def _in_turn(
        self,
        engine: Engine | AsyncEngine,
        work: Callable[[Any], T],
        write: bool,
        on: On,
        single: bool = False,
    ) -> T:
        """:meth:`run` with this process's write lock held (for a write)."""
        options: dict[str, Any] = {"write": True} if write else {}
        if single and not self._sqlite:
            options = {"isolation_level": "AUTOCOMMIT"}
        if is_async(engine):
            async with self._with(engine, options).begin() as connection:
                return await connection.run_sync(work)
        if self._threads is None:
            self._threads = ThreadPoolExecutor(THREADS, thread_name_prefix="spotify-store")
        run: Callable[[], T]
        if on != "engine" and self._direct_allowed:
            if self._direct is None:
                self._direct = DirectSQLite(cast(Engine, engine))
            if on == "loop":
                try:
                    return await self._inline(self._direct, work, write)
                except Busy:
                    pass  # another process holds the lock: wait for it on a thread
            run = functools.partial(self._direct.transaction, work, write)
        else:

            def run() -> T:
                with self._with(cast(Engine, engine), options).begin() as connection:
                    return work(connection)

        return await asyncio.get_running_loop().run_in_executor(self._threads, run)

    def _with(self, engine: E, options: dict[str, Any]) -> E:
        """``engine`` with ``options``, made once (made anew, 17 to 22 µs a transaction)."""
        key = (engine, tuple(options.items()))
        found = self._engines.get(key)
        if found is None:
            found = self._engines[key] = engine.execution_options(**options)
        return cast("E", found)

    async def _inline(self, direct: DirectSQLite, work: Callable[[Executes], T], write: bool) -> T:
        """``work`` on the event loop's thread, never waiting (else :class:`.Busy`); every
        ``CHECKPOINT_EVERY`` writes, a checkpoint follows on a store thread."""
        loop = asyncio.get_running_loop()
        if not direct.has_inline():  # opened once per thread, on a store thread (it may wait)
            start = functools.partial(loop.run_in_executor, self._threads, direct.open_inline)
            opening = direct.inline_opening(start)
            await asyncio.shield(opening)
            direct.install(opening)
        return self._now(direct, work, write)

    def _now(self, direct: DirectSQLite, work: Callable[[Executes], T], write: bool) -> T:
        """``work`` inline, at once; every ``CHECKPOINT_EVERY`` writes a checkpoint starts on a
        store thread (this process's writes waiting for it, in :meth:`run`)."""
        done = direct.inline(work, write)
        if write and direct.checkpoint_due() and not self.checkpoint_pending() and self._threads:
            try:
                self._copying = self._threads.submit(_copy, direct)
            except RuntimeError as exc:  # the interpreter is exiting: no thread to run it
                logger.debug("A SQLite checkpoint was not started: %r", exc)
        return done  # no yield after: a read's callers find the copy it left

    def checkpoint_pending(self) -> bool:
        """Whether a checkpoint is copying the log back (this process's writes wait)."""
        return self._copying is not None and not self._copying.done()

    async def close(self) -> None:
        """Let the store threads finish (a checkpoint in progress too), and close the
        driver's connections (the engine is the store's to dispose of)."""
        self._engines.clear()
        threads, self._threads = self._threads, None
        if threads is not None and threading.main_thread().is_alive():
            await asyncio.get_running_loop().run_in_executor(None, threads.shutdown)
        elif threads is not None:  # at the interpreter's exit (atexit): Python 3.12 starts no
            threads.shutdown()  # thread then
        direct, self._direct = self._direct, None
        if direct is not None:
            direct.close()


def _copy(direct: DirectSQLite) -> None:
    """A checkpoint, on a store thread. Its failure is no writer's: the file locked, away,
    the pool spent, the next one tries (a write waiting for it, on any loop, goes on)."""
    try:
        direct.checkpoint()
    except Exception as exc:
        logger.debug("A SQLite checkpoint failed: %r", exc)
