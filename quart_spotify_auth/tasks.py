"""Stopping background tasks: a cancellation that reaches its task even through a driver that
swallows one, and a check for retry loops that catch a driver's errors."""

from __future__ import annotations

import asyncio
import logging

__all__ = ["cancel", "stop_if_cancelled"]


async def cancel(task: asyncio.Task[None], timeout: float = 5.0) -> None:
    """Cancel ``task`` and wait for it to end, at most ``timeout`` seconds: a task that will
    not stop is left behind (and logged) rather than hang the app's shutdown.

    A cancellation can be lost: on Python 3.11, ``asyncio.wait_for`` swallows one that arrives
    as what it waits for completes (CPython gh-86296, fixed in 3.12), and drivers use it
    (redis-py connecting); the task then carries on as if never cancelled. So a task still
    running is cancelled again, after 0.2 s, then after twice as long each time, until it
    ends or ``timeout`` passes."""
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
    that catch a store's errors (a driver may turn a cancellation into one of them, and the
    loop would never end), and after a driver's call that may have lost one (see
    :func:`cancel`)."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError
