"""Keeping tokens valid: single-flight refresh and the background renewer.

:class:`TokenManager` is framework-free. It owns, for one app in one process, the refreshes in
flight (one per key, however many callers wait) and the background renewer. The renewal
schedule lives in the store, ordered by refresh time (a heap in memory, a sorted set in Redis),
so each token costs O(log n) to schedule and the renewer never scans every token; with a shared
store, the schedule and a per-key claim are shared, so N workers refresh each token once.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import os
import random
import secrets
import time
from collections import Counter, OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from .accounts import AccountsClient
from .errors import LoginRequired, ReauthorizationRequired, SpotifyAuthError, SpotifyUnavailable
from .stores import TokenStore
from .tokens import TokenRecord

__all__ = ["RenewalPolicy", "TokenManager"]

logger = logging.getLogger("quart_spotify_auth")

#: A token with less than this many seconds left (at most a tenth of its lifetime) is
#: refreshed on access. Kept well inside the renewer's window, so with background renewal on
#: the renewer gets there first and requests do not wait on Spotify.
ACCESS_MARGIN = 5.0


def _stale(record: TokenRecord, now: float) -> bool:
    """Too close to expiry to hand out: refresh it on the request path."""
    return record.is_expired(now, min(ACCESS_MARGIN, record.lifetime / 10))


#: The store key of the app-only (client credentials) token.
APP_KEY = "app:client-credentials"

#: How many recently revoked keys are remembered, to tell "log in again" from "never logged in".
REVOKED_MEMORY = 10_000

ReauthHook = Callable[[str], Awaitable[None] | None]


@dataclass(frozen=True, slots=True)
class RenewalPolicy:
    """When the background renewer refreshes a token."""

    #: Refresh this many seconds before expiry (never before the lifetime's midpoint).
    margin: float = 300.0
    #: Refreshes in flight at once, at most.
    concurrency: int = 16
    #: Keep a token warm only if it was used within this many seconds; idle users' tokens are
    #: refreshed lazily on their next use instead. 0 keeps every token warm.
    keep_warm: float = 86400.0
    #: Forget a login not used for this many seconds (its tokens are deleted); only applies
    #: with a ``keep_warm`` period.
    forget_after: float = 30 * 86400.0
    #: Longest a request waits for a refresh it joined before getting a 503.
    join_timeout: float = 30.0
    #: Background renewal on; off means lazy refresh only.
    enabled: bool = True
    #: Longest the renewer sleeps before looking at the schedule again (other processes may
    #: have added to a shared one).
    poll: float = 1.0

    def due(self, record: TokenRecord) -> float:
        """When to refresh ``record``: expiry minus the margin and up to 10% jitter, never
        before the midpoint of its lifetime."""
        lifetime = record.lifetime
        jitter = random.uniform(0, 0.1 * min(self.margin, lifetime))  # noqa: S311
        return max(record.issued_at + lifetime / 2, record.expires_at - self.margin - jitter)

    def earliest_due(self, record: TokenRecord) -> float:
        """The earliest :meth:`due` can be for ``record`` (with the most jitter)."""
        lifetime = record.lifetime
        return max(
            record.issued_at + lifetime / 2,
            record.expires_at - self.margin - 0.1 * min(self.margin, lifetime),
        )


class TokenManager:
    """Tokens for one app in one process: read, refresh once, renew ahead of expiry."""

    def __init__(
        self,
        store: TokenStore,
        accounts: AccountsClient,
        *,
        policy: RenewalPolicy | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.accounts = accounts
        self.policy = policy or RenewalPolicy()
        self.clock = clock
        #: Called with the key when Spotify no longer accepts a user's refresh token.
        self.reauth_hooks: list[ReauthHook] = []
        #: Counts of what happened: ``renewed``, ``failed``, ``reauthorization``, ``idle``
        #: (dropped from the schedule), ``lazy`` (refreshed on a request), ``token_requests``
        #: (refreshes this process sent), ``max_in_flight`` (most background refreshes at once).
        self.stats: Counter[str] = Counter()
        self._inflight: dict[str, asyncio.Task[TokenRecord]] = {}
        self._touched: dict[str, float] = {}  # key -> when this process last recorded use
        self._revoked: OrderedDict[str, None] = OrderedDict()
        self._failures: dict[str, int] = {}
        self._nonce = secrets.token_hex(6)
        self._orphans: dict[str, str] = {}  # key -> our claim whose release failed
        self._renewing: set[str] = set()
        self._background: set[asyncio.Task[None]] = set()
        self._runner: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._slots = asyncio.Semaphore(self.policy.concurrency)
        self._changed = asyncio.Condition()

    def __repr__(self) -> str:
        return f"TokenManager({len(self._inflight)} in flight, {len(self._renewing)} renewing)"

    @property
    def owner(self) -> str:
        """Who this manager is when it claims a key in a shared store (with the process id, so
        a forked copy is somebody else). A claim taken again gets a new value, so releasing the
        old one never removes the new."""
        return f"{os.getpid()}:{self._nonce}"

    def _due(self, key: str, record: TokenRecord) -> float | None:
        if not self.policy.enabled or (record.refresh_token is None and key != APP_KEY):
            return None
        return self.policy.due(record)

    # -- the request path -------------------------------------------------------------------

    async def login(self, key: str, record: TokenRecord) -> TokenRecord:
        """Store a fresh login for ``key`` (replacing any older one) and schedule it."""
        now = self.clock()
        stored = await self.store.put(key, record, due=self._due(key, record), used=now)
        self._revoked.pop(key, None)
        self._touched[key] = now
        self._wake.set()
        return stored

    async def logout(self, key: str) -> bool:
        """Forget ``key``'s tokens. Returns whether there were any."""
        self._touched.pop(key, None)
        return await self.store.delete(key)

    async def current(self, key: str) -> TokenRecord:
        """``key``'s valid record, refreshed first if it is (about to be) expired.

        One store read; every so often (a tenth of the keep-warm period) that read also
        records the use, so the renewer keeps this user's token warm."""
        now = self.clock()
        touch = None
        keep = self.policy.keep_warm
        if self.policy.enabled and keep > 0 and now - self._touched.get(key, -keep) > keep / 10:
            touch = now
        record = await self.store.get(key, touch=touch)
        if record is None:
            if key in self._revoked:
                raise ReauthorizationRequired()
            raise LoginRequired()
        if touch is not None:
            self._touched[key] = touch
            if not self.store.shared:
                self._wake.set()
        if _stale(record, now):
            self.stats["lazy"] += 1
            return await self.refresh(key, record)
        return record

    async def app_token(self) -> TokenRecord:
        """The app-only token (client credentials grant), cached, renewed like user tokens."""
        try:
            return await self.current(APP_KEY)
        except LoginRequired:
            return await self.refresh(APP_KEY)

    async def refresh(
        self,
        key: str,
        seen: TokenRecord | None = None,
        *,
        max_wait: float | None = None,
        wait: bool = False,
    ) -> TokenRecord:
        """Refresh ``key`` now, joining a refresh already in flight for it.

        ``seen`` is the record the caller found; if the store has a newer, valid one, that is
        returned without a token request. A request-path caller waits at most the policy's
        ``join_timeout`` (then 503); ``wait=True`` (the renewer) waits as long as it takes.
        """
        task = self._inflight.get(key)
        if task is None:
            task = asyncio.ensure_future(self._refresh(key, seen, max_wait))
            self._inflight[key] = task
            task.add_done_callback(lambda t: self._finished(key, t))
        timeout = None if wait else self.policy.join_timeout
        try:
            return await asyncio.wait_for(asyncio.shield(task), timeout)
        except TimeoutError:
            raise SpotifyUnavailable(
                "Renewing the Spotify token is taking too long. Try again shortly."
            ) from None

    def _finished(self, key: str, task: asyncio.Task[TokenRecord]) -> None:
        if self._inflight.get(key) is task:
            del self._inflight[key]
        if not task.cancelled():
            task.exception()  # retrieved here so an unawaited failure is not reported twice

    async def _refresh(
        self, key: str, seen: TokenRecord | None, max_wait: float | None
    ) -> TokenRecord:
        if seen is None:  # force_renewal: the version to wait past, if another has the claim
            seen = await self.store.get(key, fresh=True)
        lock_ttl = self.policy.join_timeout + (max_wait or 0.0)
        claim = await self.store.claim(key, lock_ttl, self.owner)
        if claim is None:  # another process is refreshing this key: wait for its result
            elsewhere = await self._refreshed_elsewhere(key, seen, lock_ttl)
            if isinstance(elsewhere, TokenRecord):
                return elsewhere
            claim = elsewhere  # it let go without a new token: ours to refresh now
        self._orphans.pop(key, None)
        try:
            current = await self.store.get(key, fresh=True)  # the newest refresh token
            if current is None and key != APP_KEY:
                raise LoginRequired()
            renewed = current is not None and seen is not None and current.version != seen.version
            if current is not None and renewed and not _stale(current, self.clock()):
                return current  # somebody else (another worker) renewed it meanwhile
            return await self._renew_now(key, current, max_wait)
        finally:
            try:
                await self.store.release(key, claim)
            except SpotifyAuthError:
                # The store is away: the claim would block other processes until it expires.
                # The renewer releases it when the store is back; this manager takes it again
                # meanwhile if it refreshes the key.
                self._orphans[key] = claim

    async def _release_orphans(self) -> None:
        """Release claims left behind while the store was away (kept if it still is)."""
        for key, claim in list(self._orphans.items()):
            try:
                await self.store.release(key, claim)
            except SpotifyAuthError:
                return
            if self._orphans.get(key) == claim:
                del self._orphans[key]

    async def _renew_now(
        self, key: str, current: TokenRecord | None, max_wait: float | None
    ) -> TokenRecord:
        self.stats["token_requests"] += 1
        if key == APP_KEY:
            new = await self.accounts.client_credentials(max_wait=max_wait)
            if current is None:
                now = self.clock()
                self._touched[key] = now
                return await self.store.put(key, new, due=self._due(key, new), used=now)
        else:
            assert current is not None
            try:
                new = await self.accounts.refresh(current, max_wait=max_wait)
            except ReauthorizationRequired:
                if await self._drop(key, current):
                    raise
                # Not the stored login any more (renewed or replaced meanwhile): use that one.
                latest = await self.store.get(key, fresh=True)
                if latest is None:
                    raise
                return latest
        assert current is not None
        stored = await self._save(key, current, new)
        if stored is not None:
            self._wake.set()
            return stored
        latest = await self.store.get(key, fresh=True)  # a login or logout won the race
        if latest is None:
            raise LoginRequired()
        return latest

    async def _save(self, key: str, current: TokenRecord, new: TokenRecord) -> TokenRecord | None:
        """Write a refreshed record. Spotify may already have retired the old refresh token
        (rotation), so if the store is away the write is retried for a while rather than the
        new token lost; only after that does the caller get the 503."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.policy.join_timeout
        delay = 0.1
        while True:
            try:
                return await self.store.replace(key, current, new, due=self._due(key, new))
            except SpotifyAuthError:
                if loop.time() + delay > deadline:
                    logger.error("A renewed token could not be saved: the store stayed away")
                    raise
                logger.warning("Saving a renewed token failed; retrying while the store is away")
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)

    async def _refreshed_elsewhere(
        self, key: str, seen: TokenRecord | None, lock_ttl: float
    ) -> TokenRecord | str:
        """Wait (polling, with backoff) until another process's refresh of ``key`` lands, and
        return the new record; or, if that process lets go of its claim without one (its
        refresh failed, or it died), take the claim and return it."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.policy.join_timeout
        delay = 0.01
        while loop.time() < deadline:
            await asyncio.sleep(delay)
            current = await self.store.get(key, fresh=True)
            if current is None:
                if key in self._revoked or key == APP_KEY:
                    break
                raise LoginRequired()
            if seen is None or current.version != seen.version:
                return current
            claim = await self.store.claim(key, lock_ttl, self.owner)
            if claim is not None:
                return claim
            delay = min(delay * 2, 0.2)
        raise SpotifyUnavailable(
            "Renewing the Spotify token is taking too long. Try again shortly."
        )

    async def _drop(self, key: str, current: TokenRecord) -> bool:
        """Forget a login Spotify refused; ``False`` if the store holds another by now."""
        if not await self.store.delete(key, current):
            return False
        self._touched.pop(key, None)
        self._revoked[key] = None
        while len(self._revoked) > REVOKED_MEMORY:
            self._revoked.popitem(last=False)
        await self._count("reauthorization")
        logger.info("Spotify no longer accepts a refresh token; its login was dropped")
        for hook in self.reauth_hooks:
            try:
                result = hook(key)
                if inspect.isawaitable(result):
                    await result
            except Exception:
                logger.exception("A reauthorization hook failed")
        return True

    # -- the background renewer -------------------------------------------------------------

    def wake(self) -> None:
        """Make the renewer look at its schedule now (after a test moved the clock)."""
        self._wake.set()

    async def wait_until(self, predicate: Callable[[Counter[str]], bool]) -> None:
        """Wait until ``predicate(self.stats)`` holds; the stats change as the renewer works.

        .. code-block:: python

            await asyncio.wait_for(manager.wait_until(lambda s: s["renewed"] >= 1), 10)
        """
        async with self._changed:
            await self._changed.wait_for(lambda: predicate(self.stats))

    async def _count(self, name: str) -> None:
        async with self._changed:
            self.stats[name] += 1
            self._changed.notify_all()

    def start(self) -> None:
        """Start the renewer on the running loop (no-op when renewal is off)."""
        if self.policy.enabled and self._runner is None:
            self._wake = asyncio.Event()
            self._slots = asyncio.Semaphore(self.policy.concurrency)
            self._changed = asyncio.Condition()
            self._runner = asyncio.get_running_loop().create_task(self._run())

    async def stop(self, grace: float = 10.0) -> None:
        """Stop the renewer; refreshes already talking to Spotify may finish (up to
        ``grace`` seconds) so a rotated refresh token is not lost."""
        runner, self._runner = self._runner, None
        if runner is not None:
            runner.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await runner
        pending = set(self._inflight.values())
        if pending:
            await asyncio.wait(pending, timeout=grace)
        for task in list(self._background):
            task.cancel()
        if self._background:
            await asyncio.wait(self._background)

    async def _run(self) -> None:
        while True:
            self._wake.clear()
            now = self.clock()
            timeout = self.policy.poll
            try:
                if self._orphans:
                    await self._release_orphans()
                for key in await self.store.due_keys(now, self.policy.concurrency * 4):
                    if key in self._renewing:
                        continue  # a shared store hands it out until it is rescheduled
                    await self._slots.acquire()
                    self._renewing.add(key)
                    task = asyncio.get_running_loop().create_task(self._renew(key))
                    self._background.add(task)
                    task.add_done_callback(self._background.discard)
                upcoming = await self.store.next_due()
                if upcoming is not None:
                    timeout = min(timeout, max(upcoming - self.clock(), 0.0))
                    if self.store.shared or self._renewing:
                        timeout = max(timeout, 0.05)  # due keys still being worked on
            except SpotifyAuthError as exc:  # the store is away: back off, try again
                logger.warning("The renewer could not read its schedule (%s)", type(exc).__name__)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout)

    async def _renew(self, key: str) -> None:
        self.stats["max_in_flight"] = max(self.stats["max_in_flight"], len(self._renewing))
        outcome = "renewed"
        try:
            outcome = await self._renew_key(key)
        except LoginRequired:
            outcome = "gone"  # logged out, revoked (hooks ran) or replaced meanwhile
        except (SpotifyAuthError, OSError) as exc:
            outcome = "failed"
            failures = self._failures.get(key, 0)
            self._failures[key] = failures + 1
            delay = min(60.0, 2.0**failures) * random.uniform(0.5, 1.0)  # noqa: S311
            logger.warning("Background token renewal failed (%s); will retry", type(exc).__name__)
            with contextlib.suppress(SpotifyAuthError, OSError):
                await self.store.reschedule(key, self.clock() + delay)
        finally:
            if outcome != "failed":
                self._failures.pop(key, None)
            self._renewing.discard(key)
            self._slots.release()
            await self._count(outcome)

    async def _renew_key(self, key: str) -> str:
        record = await self.store.get(key, fresh=True)
        now = self.clock()
        if record is None or (record.refresh_token is None and key != APP_KEY):
            await self.store.reschedule(key, None)
            return "gone"
        if now < self.policy.earliest_due(record):  # another process renewed it already
            await self.store.reschedule(key, self.policy.due(record))
            return "skipped"
        keep = self.policy.keep_warm
        if keep > 0:
            used = await self.store.last_used(key)
            if used is None or now - used > self.policy.forget_after:
                await self.store.delete(key, record)  # abandoned: forget it
                return "forgotten"
            if now - used > keep:
                # Idle: not kept warm (refreshed on its next use instead); looked at again
                # when it would be forgotten.
                await self.store.reschedule(key, used + self.policy.forget_after)
                return "idle"
        await self.refresh(key, record, max_wait=max(record.expires_at - now, 0.0), wait=True)
        return "renewed"
