"""Retrying, in one place: exponential backoff with jitter, Spotify's ``Retry-After``, and a
budget of attempts and waiting per request."""

from __future__ import annotations

import asyncio
import math
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import httpx

__all__ = ["MAX_SECONDS", "Attempts", "Retry", "Sleep", "backoff", "retry_after", "whole_seconds"]

Sleep = Callable[[float], Awaitable[None]]

#: Longest lifetime or wait taken from Spotify's numbers; anything longer is clamped.
MAX_SECONDS = 86400.0


def backoff(attempt: int, *, base: float = 0.2, cap: float = 60.0) -> float:
    """Seconds to wait before retry ``attempt`` (1, 2, ...): half to all of ``base * 2**attempt``
    (at most ``cap``), so that many waiters spread out."""
    delay = min(cap, base * 2.0 ** min(attempt, 32))
    return delay * (0.5 + random.random() / 2)  # noqa: S311 - jitter, not a secret


#: The shortest wait after a 429, whatever its ``Retry-After``: ``0`` (or a fraction) would
#: send dozens of requests into a rate limit within the cap; HTTP's own unit is the second.
MIN_RETRY_AFTER = 1.0


def retry_after(response: httpx.Response) -> float:
    """Seconds a 429 asks to wait (``Retry-After``: 1 if unreadable, at most a day)."""
    try:
        wait = float(response.headers.get("retry-after", "1"))
    except ValueError:
        return 1.0
    return min(max(wait, 0.0), MAX_SECONDS) if not math.isnan(wait) else 1.0


def whole_seconds(wait: float) -> int:
    """A wait as our own ``Retry-After`` says it: whole seconds, rounded up (a client told
    to come back sooner than asked meets the rate limit again), and at least one."""
    return max(1, math.ceil(wait))


@dataclass(frozen=True, slots=True)
class Retry:
    """How requests to Spotify are retried (``SPOTIFY_RETRIES``, ``SPOTIFY_RETRY_AFTER_CAP``)."""

    #: Extra attempts after the first, for network errors, 5xx, unreadable replies and 429s.
    retries: int = 2
    #: Longest a caller on the request path waits out 429s, all of them together.
    retry_after_cap: float = 5.0
    sleep: Sleep = asyncio.sleep

    def attempts(self, max_wait: float | None = None) -> Attempts:
        """A fresh budget for one request; ``max_wait`` replaces the cap on ``Retry-After``."""
        return Attempts(self, self.retry_after_cap if max_wait is None else max_wait)


class Attempts:
    """One request's retry budget: each method waits, then says whether to try again."""

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
        await self._retry.sleep(backoff(self.failures))
        return True

    async def retry_after(self, response: httpx.Response) -> bool:
        """After a 429: wait out its ``Retry-After`` while all the waits together stay within
        the cap (a budget of time, not of attempts: a rate limit lifts after a while)."""
        self.wait = max(retry_after(response), MIN_RETRY_AFTER)
        if self.waited + self.wait > self._max_wait:
            return False
        self.waited += self.wait
        await self._retry.sleep(self.wait)
        return True
