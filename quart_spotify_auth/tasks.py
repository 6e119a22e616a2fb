"""Stopping background tasks, even through a driver that swallows a cancellation."""

from __future__ import annotations

import asyncio
import logging

__all__ = ["cancel", "stop_if_cancelled"]


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
