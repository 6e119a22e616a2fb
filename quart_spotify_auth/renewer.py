"""The background renewer: one task per app process renews what the store's schedule says is
due, forgets logins unused for ``SPOTIFY_TOKEN_IDLE_TTL`` and flushes deferred writes."""

from __future__ import annotations

import asyncio
import contextlib
import math
from typing import Any

from . import signals
from .accounts import AccountsClient
from .config import Settings
from .errors import LoginRequired, SpotifyAuthError
from .grants import grant_for
from .refresh import Refresher
from .retry import backoff
from .signals import logger
from .stores import TokenStore
from .stores.base import DueKey
from .tasks import cancel, stop_if_cancelled
from .tokens import Clock, RenewalPolicy

__all__ = ["Renewer", "renewal"]

#: Longest the renewer sleeps between looks (other processes may add to a shared schedule).
POLL = 1.0


def renewal(
    accounts: AccountsClient, store: TokenStore, settings: Settings, clock: Clock, sender: Any
) -> tuple[Refresher, Renewer]:
    """One app's refresher and renewer on ``store``, wired together."""
    policy = RenewalPolicy(settings.refresh_margin, settings.auto_renew, settings.token_idle_ttl)
    refresher = Refresher(accounts, store, settings, policy, clock=clock, sender=sender)
    return refresher, Renewer(refresher)


class Renewer:
    """Renews the tokens of ``refresher``'s store in the background; flushes its deferred writes."""

    def __init__(self, refresher: Refresher) -> None:
        self._refresher = refresher
        refresher.wake = self.wake  # the refresher's news of a changed schedule
        refresher.rate_limited = self.pause  # and of a 429 a request's refresh met
        self._store = refresher.store
        self._clock = refresher.clock
        self._wake = asyncio.Event()
        self._next_look = math.inf  # when the loop looks at the schedule next, unasked
        self._runner: asyncio.Task[None] | None = None
        self._slots = asyncio.Semaphore(refresher.settings.renew_concurrency)
        self._renewing: set[str] = set()
        #: Keys handed out again while renewing (key -> last use): looked at when that ends.
        self._again: dict[str, float | None] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._failures: dict[str, int] = {}
        #: Until when Spotify asked this app to wait (a 429's ``Retry-After``, on a renewal):
        #: its rate limit is the app's, so no renewal is sent before then.
        self.paused_until = 0.0

    def __repr__(self) -> str:
        return f"Renewer({len(self._renewing)} renewing, running={self.running})"

    @property
    def running(self) -> bool:
        return self._runner is not None

    def wake(self, at: float | None = None) -> None:
        """Look at the schedule now; given ``at``, a new due time, only if it comes before the
        next look anyway (with a shared store each look is a query)."""
        if at is None or at < self._next_look:
            self._wake.set()

    def start(self) -> None:
        """Start on the running loop."""
        if self._runner is None:
            self._wake = asyncio.Event()
            self._slots = asyncio.Semaphore(self._refresher.settings.renew_concurrency)
            self._runner = asyncio.get_running_loop().create_task(self._loop())

    async def stop(self, grace: float = 10.0) -> None:
        """Stop; refreshes in flight may land (up to ``grace`` seconds)."""
        runner, self._runner = self._runner, None
        if runner is not None:
            await cancel(runner)
        await self._refresher.wait_for_inflight(grace)
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.wait(self._tasks)

    async def _loop(self) -> None:
        limit = self._refresher.settings.renew_concurrency * 4
        away = False  # the store failed the last look
        while True:
            self._wake.clear()
            self._next_look = math.inf  # woken while looking: look again at once
            timeout = POLL
            try:
                await self._refresher.deferred.flush()
                due = await self._store.due(self._clock(), limit)
                for i, (key, used) in enumerate(due.entries):
                    if key in self._renewing:  # put back while renewing, or its lease ended
                        if not self._store.shared:  # off the schedule now: ours to look at
                            self._again[key] = used
                        continue  # a shared store hands it out again after DUE_LEASE
                    if not await self._slot():  # Spotify asked the app to wait: this key
                        await self._hold_back(due.entries[i:])  # and the rest are put off
                        break
                    self._renewing.add(key)
                    task = asyncio.get_running_loop().create_task(self._renew(key, used))
                    self._tasks.add(task)
                    task.add_done_callback(self._tasks.discard)
                if due.next is not None:
                    timeout = min(timeout, max(due.next - self._clock(), 0.0))
                    if self._store.shared:  # other processes' keys are due too: not a spin
                        timeout = max(timeout, 0.05)
                if away:
                    away = False
                    logger.info("The renewer reads its schedule again")
            except SpotifyAuthError as exc:  # the store is away: try again, said once
                stop_if_cancelled()
                if not away:
                    away = True
                    logger.warning(
                        "The renewer could not read its schedule (%s); it tries again each "
                        "second, and says when it can",
                        type(exc).__name__,
                    )
            self._next_look = self._clock() + timeout
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout)

    async def _slot(self) -> bool:
        """A renewal's slot, unless renewals are paused, before or while waiting for one (a
        renewal in flight may meet a 429 meanwhile)."""
        if self._clock() < self.paused_until:
            return False
        await self._slots.acquire()
        if self._clock() < self.paused_until:
            self._slots.release()
            return False
        return True

    def pause(self, seconds: float) -> None:
        """Send no renewal for ``seconds`` (a 429's ``Retry-After``, met by a renewal or by a
        request's refresh: Spotify's rate limit is the app's, not the user's)."""
        until = self._clock() + seconds
        if until > self.paused_until:
            self.paused_until = until
            logger.warning(
                "Spotify is rate-limiting this app (429): background renewals wait %d s, as "
                "its Retry-After asks",
                seconds,
            )

    async def _hold_back(self, entries: list[DueKey]) -> None:
        """Put the keys handed out off until :attr:`paused_until`, in the schedule (shared:
        a process that looks next finds them there, due then)."""
        sender = self._refresher.sender
        for key, used in entries:
            if key in self._renewing:  # as in the loop: looked at again when that ends
                if not self._store.shared:
                    self._again[key] = used
                continue
            await self._store.reschedule(key, self.paused_until)
            await signals.send(signals.renewal_skipped, sender, key=key, reason="rate-limited")

    async def _renew(self, key: str, used: float | None) -> None:
        done = False
        try:
            retry_at = await self._attempt(key, used)
            while key in self._again:  # handed out again while renewing: look at it again
                used = self._again.pop(key)
                if retry_at is not None:  # unless it failed: its backoff stands
                    with contextlib.suppress(SpotifyAuthError, OSError):
                        await self._store.reschedule(key, retry_at)
                    break
                retry_at = await self._attempt(key, used)
            done = True
        finally:
            self._renewing.discard(key)
            self._again.pop(key, None)
            self._slots.release()
            if not done:
                # Stopped or broken mid-renewal: handed out, it left the schedule (or is put off
                # by DUE_LEASE); due again now, for this process or another.
                with contextlib.suppress(Exception):
                    await self._store.reschedule(key, self._clock())

    async def _attempt(self, key: str, used: float | None) -> float | None:
        """Look at ``key`` once; on a failure, the time it is retried at (rescheduled)."""
        sender = self._refresher.sender
        try:
            await self._renew_key(key, used)
        except LoginRequired:  # logged out, revoked (the signal was sent) or replaced meanwhile
            await signals.send(signals.renewal_skipped, sender, key=key, reason="gone")
        except (SpotifyAuthError, OSError) as exc:
            failures = self._failures[key] = self._failures.get(key, 0) + 1
            now = self._clock()
            retry_at = now + backoff(failures, base=0.5, cap=60.0)
            asked = getattr(exc, "retry_after", None)  # a 429 longer than the token has left
            if asked is not None and now + asked > retry_at:
                retry_at = now + asked
                self.pause(asked)
            else:
                logger.warning(
                    "Background token renewal failed (%s); will retry", type(exc).__name__
                )
            with contextlib.suppress(SpotifyAuthError, OSError):
                await self._store.reschedule(key, retry_at)
            await signals.send(signals.renewal_failed, sender, key=key, error=exc)
            return retry_at
        self._failures.pop(key, None)  # renewed, or nothing left to renew: no backoff kept
        return None

    async def _renew_key(self, key: str, used: float | None) -> None:
        store, settings, sender = self._store, self._refresher.settings, self._refresher.sender
        record = await store.get(key)
        now = self._clock()
        if record is None or not (grant_for(key).renewable(record) or not settings.auto_renew):
            await store.reschedule(key, None)
            raise LoginRequired()
        if settings.auto_renew and now < self._refresher.policy.earliest_due(record):
            # Not due even with the most jitter: another process renewed it already.
            await store.reschedule(key, self._refresher.due(key, record))
            await signals.send(signals.renewal_skipped, sender, key=key, reason="current")
            return
        if settings.keep_warm > 0 or not settings.auto_renew:
            if used is None or now - used > settings.token_idle_ttl:
                if await self._refresher.logout(key, record):  # abandoned: forget it
                    await signals.send(signals.login_forgotten, sender, key=key)
                return
            if not settings.auto_renew or now - used > settings.keep_warm:
                # Looked at again when it would be forgotten; idle: renewed on its next use.
                await store.reschedule(key, used + settings.token_idle_ttl)
                if settings.auto_renew:
                    await signals.send(signals.renewal_skipped, sender, key=key, reason="idle")
                return
        max_wait = max(record.expires_at - now, 0.0)
        await self._refresher.refresh(key, record, max_wait=max_wait, wait=True)
