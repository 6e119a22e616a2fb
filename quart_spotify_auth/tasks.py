"""Stopping background tasks, even through a driver that swallows a cancellation; a task
many callers join (:class:`Flight`); asyncio's primitives, one per event loop (:class:`PerLoop`)."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections import deque
from collections.abc import Callable
from typing import Generic, TypeVar

__all__ = ["Flight", "PerLoop", "cancel", "stop_if_cancelled"]

T = TypeVar("T")


async def cancel(task: asyncio.Task[None], timeout: float = 5.0) -> None:
    """Cancel ``task`` and wait at most ``timeout`` seconds for it to end (else it is logged and
    left behind). On Python 3.11 ``asyncio.wait_for``, which drivers use, can swallow a
    cancellation (CPython gh-86296), so it is cancelled again after 0.2 s, 0.4 s, ..."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    pause = 0.2
    while True:
        task.cancel()
        left = deadline - loop.time()
        done, _ = await asyncio.wait({task}, timeout=max(0.0, min(pause, left)))
        if done or left <= pause:
            break
        pause *= 2
    if not done:
        logging.getLogger("quart_spotify_auth").error("A background task would not stop")
    elif not task.cancelled():
        task.exception()  # retrieved: it ended on its own error, already logged by it


def stop_if_cancelled() -> None:
    """Raise :class:`asyncio.CancelledError` if this task is being cancelled: for retry loops
    that catch a store's errors (a driver may turn a cancellation into one of them)."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


class PerLoop(Generic[T]):
    """One ``make()`` for each running event loop. asyncio's locks, semaphores and events are
    bound to the first loop that waits on them, and a store or a client may serve one loop
    after another (an ``asyncio.run`` per task, a test framework's loop per test, a loop
    thread started again) or several loops' threads at once. Those of closed loops are
    forgotten when another loop first asks."""

    __slots__ = ("_guard", "_items", "_make")

    def __init__(self, make: Callable[[], T]) -> None:
        self._make = make
        self._items: dict[asyncio.AbstractEventLoop, T] = {}
        self._guard = threading.Lock()  # two loops' threads making theirs at once

    def __repr__(self) -> str:
        return f"PerLoop(loops={len(self._items)})"

    def get(self) -> T:
        """The running loop's (made on its first call)."""
        loop = asyncio.get_running_loop()
        item = self._items.get(loop)
        if item is None:
            with self._guard:
                for closed in [known for known in self._items if known.is_closed()]:
                    del self._items[closed]
                item = self._items.get(loop)
                if item is None:
                    item = self._items[loop] = self._make()
        return item

    def made(self) -> list[T]:
        """Every loop's, the closed loops' too until forgotten."""
        with self._guard:
            return list(self._items.values())


class Flight(Generic[T]):
    """A task that many callers join, each for at most ``timeout`` seconds from when it
    joined: a future per caller and one timer for them all. (``asyncio.wait`` costs each
    caller a timer, a set and a done callback on the task: with 1,000 callers joining one
    refresh, that was most of their wait.) A caller that goes away never cancels the task."""

    __slots__ = ("_loop", "_timeout", "_timer", "_waiters", "task")

    def __init__(self, task: asyncio.Task[T], timeout: float) -> None:
        self.task = task
        self._timeout = timeout
        self._loop = task.get_loop()
        #: (deadline, future) in the order the callers joined, so by deadline.
        self._waiters: deque[tuple[float, asyncio.Future[bool]]] = deque()
        self._timer: asyncio.TimerHandle | None = None
        task.add_done_callback(self._landed)

    def __repr__(self) -> str:
        return f"Flight({len(self._waiters)} waiting, done={self.task.done()})"

    async def join(self) -> bool:
        """Wait for the task to end: whether it did within this caller's timeout."""
        if self.task.done():
            return True
        waiter: asyncio.Future[bool] = self._loop.create_future()
        deadline = self._loop.time() + self._timeout
        self._waiters.append((deadline, waiter))
        if self._timer is None:
            self._timer = self._loop.call_at(deadline, self._expire)
        return await waiter or self.task.done()  # landed as its time ran out: in time

    def _landed(self, _: asyncio.Task[T]) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        waiters, self._waiters = self._waiters, deque()
        for _deadline, waiter in waiters:
            if not waiter.done():  # done: cancelled, its caller gone
                waiter.set_result(True)

    def _expire(self) -> None:
        self._timer = None
        now = self._loop.time()  # (a timer that fires a hair early is set again)
        waiters = self._waiters
        while waiters and waiters[0][0] <= now:
            _deadline, waiter = waiters.popleft()
            if not waiter.done():
                waiter.set_result(False)
        if waiters:
            self._timer = self._loop.call_at(waiters[0][0], self._expire)
