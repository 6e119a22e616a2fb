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

#: Threads a process runs SQLite's transactions on (one writes at a time; reads go beside it).
THREADS = 4

#: Where a transaction runs: "loop", inline where the store may (else as "thread"); "thread",
#: straight on the driver on a store thread; "engine", through SQLAlchemy.
On = Literal["loop", "thread", "engine"]


class _Turn:
    """This process's writers on one event loop (a lock is bound to the loop that first
    waits on it): their lock, how many calls are taking their turn with it (holding it or
    waiting for it, or on a store thread), and the checkpoint task, while one is pending."""

    __slots__ = ("checkpointing", "lock", "queued")

    def __init__(self) -> None:
        self.lock = asyncio.Lock()
        self.queued = 0
        self.checkpointing: asyncio.Task[None] | None = None

    def checkpoint_pending(self) -> bool:
        """Whether a checkpoint is yet to run or running (one cancelled before it ran, as
        its loop ended, is not)."""
        return self.checkpointing is not None and not self.checkpointing.done()


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
        #: The last checkpoint's copy on a store thread, which goes on if its loop ends.
        self._copying: Future[None] | None = None

    def __repr__(self) -> str:
        return f"Runner(threads={self._threads is not None}, direct={self._direct!r})"

    async def run(
        self, engine: Engine | AsyncEngine, work: Callable[[Any], T], *, write: bool, on: On
    ) -> T:  # work takes a Connection, or (not on the engine) what Executes
        """``work`` in one transaction (a write takes SQLite's write lock at once, see
        :mod:`.sqlengine`, one per process at a time)."""
        direct, turn = self._direct, self._turns.get()
        checkpointing, copying = turn.checkpointing, self._copying
        if write and checkpointing is not None and turn.checkpoint_pending():
            # The log is copied back first: writes that went on would keep the checkpoint
            # from ever catching up. Cancelled here, nothing was written.
            await asyncio.shield(checkpointing)
        elif write and copying is not None and not copying.done():
            # One whose loop ended (an asyncio.run per call) still copies on its thread.
            await asyncio.shield(asyncio.wrap_future(copying))
        if on == "loop" and not turn.queued and direct is not None and direct.has_inline():
            # Nothing else of this process holds the lock or waits for it: run at once, with
            # no lock and no await (so never cancelled halfway). A write's one yield here
            # cost more CPU than its SQL.
            try:
                return self._now(direct, turn, work, write)
            except Busy:
                on = "thread"  # another process holds the lock: wait for it on a thread
        turn.queued += 1
        try:
            async with turn.lock if write and self._sqlite else nullcontext():
                return await self._in_turn(engine, turn, work, write, on)
        finally:
            turn.queued -= 1

    async def _in_turn(
        self,
        engine: Engine | AsyncEngine,
        turn: _Turn,
        work: Callable[[Any], T],
        write: bool,
        on: On,
    ) -> T:
        """:meth:`run` with this process's write lock held (for a write)."""
        options = {"write": True} if write else {}
        if is_async(engine):
            async with engine.execution_options(**options).begin() as connection:
                return await connection.run_sync(work)
        if self._threads is None:
            self._threads = ThreadPoolExecutor(THREADS, thread_name_prefix="spotify-store")
        run: Callable[[], T]
        if on != "engine" and self._direct_allowed:
            if self._direct is None:
                self._direct = DirectSQLite(cast(Engine, engine))
            if on == "loop":
                try:
                    return await self._inline(self._direct, turn, work, write)
                except Busy:
                    pass  # another process holds the lock: wait for it on a thread
            run = functools.partial(self._direct.transaction, work, write)
        else:

            def run() -> T:
                with cast(Engine, engine).execution_options(**options).begin() as connection:
                    return work(connection)

        return await asyncio.get_running_loop().run_in_executor(self._threads, run)

    async def _inline(
        self, direct: DirectSQLite, turn: _Turn, work: Callable[[Executes], T], write: bool
    ) -> T:
        """``work`` on the event loop's thread, never waiting (else :class:`.Busy`); every
        ``CHECKPOINT_EVERY`` writes, a checkpoint follows on a store thread."""
        loop = asyncio.get_running_loop()
        if not direct.has_inline():  # opened once per thread, on a store thread (it may wait)
            start = functools.partial(loop.run_in_executor, self._threads, direct.open_inline)
            opening = direct.inline_opening(start)
            await asyncio.shield(opening)
            direct.install(opening)
        return self._now(direct, turn, work, write)

    def _now(
        self, direct: DirectSQLite, turn: _Turn, work: Callable[[Executes], T], write: bool
    ) -> T:
        """``work`` inline, at once; every ``CHECKPOINT_EVERY`` writes a checkpoint task is
        made (it runs on a store thread, this process's writes waiting for it)."""
        done = direct.inline(work, write)
        if write and direct.checkpoint_due() and not turn.checkpoint_pending():
            turn.checkpointing = asyncio.get_running_loop().create_task(
                self._checkpoint(direct, turn)
            )
        return done  # no yield after: a read's callers find the copy it left

    async def _checkpoint(self, direct: DirectSQLite, turn: _Turn) -> None:
        """Checkpoint on a store thread what inline writes left in the write-ahead log (a
        page for each table and index a write touches), this process's writes waiting: were
        they to go on, the checkpoint would never catch up and the log would only grow."""
        try:
            async with turn.lock:
                if self._threads is not None:
                    self._copying = self._threads.submit(_copy, direct)
                    # Shielded: a cancellation (its loop ending) leaves the copy to go on.
                    await asyncio.shield(asyncio.wrap_future(self._copying))
        except RuntimeError as exc:  # the store threads shut down (at exit): none to run it
            logger.debug("A SQLite checkpoint was not started: %r", exc)

    async def close(self) -> None:
        """Let a checkpoint in progress end, the store threads finish, and close the
        driver's connections (the engine is the store's to dispose of)."""
        turn = self._turns.get()
        if turn.checkpointing is not None and turn.checkpoint_pending():  # (another loop's
            await turn.checkpointing  # ended with its loop)
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
