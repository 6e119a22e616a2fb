"""Retrying, in one place: exponential backoff with jitter, Spotify's ``Retry-After``, a
budget of attempts and waiting per request; and stopping the loops that retry.

Used by the accounts client (token requests), the Web API client (its bearer flow and lost
connections), the renewer (failed renewals, saves while the store is away) and the Redis
store's change listener.
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import httpx

__all__ = [
    "MAX_SECONDS",
    "Attempts",
    "Retry",
    "Sleep",
    "backoff",
    "cancel",
    "retry_after",
    "stop_if_cancelled",
]

Sleep = Callable[[float], Awaitable[None]]

#: Longest lifetime or wait taken from Spotify's numbers; anything longer is clamped.
MAX_SECONDS = 86400.0


def backoff(attempt: int, *, base: float = 0.2, cap: float = 60.0) -> float:
    """Seconds to wait before retry number ``attempt`` (1, 2, ...): between half and all of
    ``base * 2**attempt`` (at most ``cap``), jittered so that many waiters spread out."""
    delay = min(cap, base * 2.0 ** min(attempt, 32))
    return delay * (0.5 + random.random() / 2)  # noqa: S311 - jitter, not a secret


async def cancel(task: asyncio.Task[None], timeout: float = 5.0) -> None:
    """Cancel ``task`` and wait for it to end, at most ``timeout`` seconds: a task that will
    not stop is left behind (and logged) rather than hang the app's shutdown.

    A cancellation can be lost: on Python 3.11, ``asyncio.wait_for`` swallows one that arrives
    as what it waits for completes (CPython gh-86296, fixed in 3.12), and drivers use it
    (redis-py connecting); the task then carries on as if never cancelled, and would wait on
    its next read for ever. So a task still running is cancelled again, after 0.2 s, then
    after twice as long each time, until it ends or ``timeout`` passes (a task cleaning up
    after its cancellation, closing a connection, finishes well within that first pause)."""
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
    that catch a store's errors, since a driver may turn a cancellation into one of them and
    the loop would then never end (a shutdown that hangs); and after a driver's call that may
    have lost one (see :func:`cancel`), before waiting on anything else."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


#: The shortest wait after a 429, whatever its ``Retry-After`` (``0`` would be a busy loop).
MIN_RETRY_AFTER = 0.1


def retry_after(response: httpx.Response) -> float:
    """Seconds a 429 asks to wait (``Retry-After``; 1 when absent or unreadable, clamped to
    :data:`MAX_SECONDS`)."""
    try:
        wait = float(response.headers.get("retry-after", "1"))
    except ValueError:
        return 1.0
    return min(max(wait, 0.0), MAX_SECONDS) if not math.isnan(wait) else 1.0


@dataclass(frozen=True, slots=True)
class Retry:
    """How requests to Spotify are retried (``SPOTIFY_RETRIES``, ``SPOTIFY_RETRY_AFTER_CAP``)."""

    #: Extra attempts after the first, for network errors, 5xx, unreadable replies and 429s.
    retries: int = 2
    #: Longest a caller on the request path waits out 429s, all of them together.
    retry_after_cap: float = 5.0
    #: The first backoff delay in seconds; it doubles with each attempt.
    base: float = 0.2
    sleep: Sleep = asyncio.sleep

    def attempts(self, max_wait: float | None = None) -> Attempts:
        """A fresh budget for one request; ``max_wait`` replaces the cap on ``Retry-After``
        (the renewer may wait as long as the token it renews has left)."""
        return Attempts(self, self.retry_after_cap if max_wait is None else max_wait)


class Attempts:
    """One request's retry budget. Each method waits as it should and says whether to try
    again; ``False`` means the budget is spent (then raise the failure seen last)."""

    __slots__ = ("_max_wait", "_retry", "failures", "wait", "waited")

    def __init__(self, retry: Retry, max_wait: float) -> None:
        self._retry = retry
        self._max_wait = max_wait
        self.failures = 0
        #: The last ``Retry-After`` asked for (for the error's own ``Retry-After``).
        self.wait = 0.0
        #: Seconds spent waiting out 429s so far.
        self.waited = 0.0

    async def backoff(self) -> bool:
        """After a network error, a 5xx or an unreadable reply."""
        if self.failures >= self._retry.retries:
            return False
        self.failures += 1
        await self._retry.sleep(backoff(self.failures, base=self._retry.base))
        return True

    async def retry_after(self, response: httpx.Response) -> bool:
        """After a 429: wait out its ``Retry-After`` while all the waits together stay within
        the cap (a budget of time, not of attempts: a rate limit lifts after a while, and a
        request that waits it out is answered instead of failing early)."""
        self.wait = max(retry_after(response), MIN_RETRY_AFTER)
        if self.waited + self.wait > self._max_wait:
            return False
        self.waited += self.wait
        await self._retry.sleep(self.wait)
        return True
