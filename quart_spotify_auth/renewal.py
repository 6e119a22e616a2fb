"""Keeping tokens valid: single-flight refresh and the background renewer.

:class:`TokenManager` is framework-free. It owns, for one app in one process, the store, the
accounts client, the refreshes in flight (one per key, however many callers wait) and the
renewal schedule: a heap ordered by refresh time, so each token costs O(log n) to schedule and
the renewer never scans every token.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import inspect
import logging
import random
import time
from collections import Counter, OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

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
    #: Longest a request waits for a refresh it joined before getting a 503.
    join_timeout: float = 30.0
    #: Background renewal on; off means lazy refresh only.
    enabled: bool = True

    def due(self, record: TokenRecord) -> float:
        """When to refresh ``record``: expiry minus the margin and up to 10% jitter, never
        before the midpoint of its lifetime."""
        lifetime = record.lifetime
        jitter = random.uniform(0, 0.1 * min(self.margin, lifetime))  # noqa: S311
        return max(record.issued_at + lifetime / 2, record.expires_at - self.margin - jitter)


@dataclass(order=True, slots=True)
class _Entry:
    due: float
    seq: int
    key: str = field(compare=False)
    version: int = field(compare=False)
    failures: int = field(default=0, compare=False)


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
        self._inflight: dict[str, asyncio.Task[TokenRecord]] = {}
        self._heap: list[_Entry] = []
        self._scheduled: dict[str, int] = {}  # key -> version the heap entry is for
        self._last_used: dict[str, float] = {}
        self._seq = 0
        self._wake = asyncio.Event()
        self._runner: asyncio.Task[None] | None = None
        self._slots = asyncio.Semaphore(self.policy.concurrency)
        self._background: set[asyncio.Task[None]] = set()
        self._revoked: OrderedDict[str, None] = OrderedDict()
        #: Counts of what the renewer did: ``renewed``, ``failed``, ``reauthorization``,
        #: ``idle`` (dropped from the schedule), ``lazy`` (refreshed on access),
        #: ``max_in_flight`` (the most background refreshes seen at once).
        self.stats: Counter[str] = Counter()
        self._changed = asyncio.Condition()
        self._in_flight = 0

    def __repr__(self) -> str:
        return f"TokenManager({len(self._scheduled)} scheduled, {len(self._inflight)} in flight)"

    # -- the request path -------------------------------------------------------------------

    async def login(self, key: str, record: TokenRecord) -> TokenRecord:
        """Store a fresh login for ``key`` (replacing any older one) and schedule it."""
        stored = await self.store.put(key, record)
        self._revoked.pop(key, None)
        self._last_used[key] = self.clock()
        self.schedule(key, stored)
        return stored

    async def logout(self, key: str) -> bool:
        """Forget ``key``'s tokens. Returns whether there were any."""
        self._scheduled.pop(key, None)
        self._last_used.pop(key, None)
        return await self.store.delete(key)

    async def current(self, key: str) -> TokenRecord:
        """``key``'s valid record, refreshed first if it is (about to be) expired."""
        record = await self.store.get(key)
        if record is None:
            if key in self._revoked:
                raise ReauthorizationRequired()
            raise LoginRequired()
        now = self.clock()
        self._last_used[key] = now
        if _stale(record, now):
            self.stats["lazy"] += 1
            return await self.refresh(key, record)
        if self.policy.enabled and self._scheduled.get(key) != record.version:
            self.schedule(key, record)
        return record

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
        current = await self.store.get(key)
        if current is None:
            if key == APP_KEY:
                return await self._store_app_token(None)
            raise LoginRequired()
        renewed_meanwhile = seen is not None and current.version != seen.version
        if renewed_meanwhile and not _stale(current, self.clock()):
            return current  # somebody else (another worker) renewed it meanwhile
        if key == APP_KEY:
            return await self._store_app_token(current, max_wait)
        try:
            new = await self.accounts.refresh(current, max_wait=max_wait)
        except ReauthorizationRequired:
            if await self.store.delete(key, current):
                self._scheduled.pop(key, None)
                self._last_used.pop(key, None)
                self._revoked[key] = None
                while len(self._revoked) > REVOKED_MEMORY:
                    self._revoked.popitem(last=False)
                self.stats["reauthorization"] += 1
                await self._reauthorization_required(key)
            raise
        if await self.store.replace(key, current, new):
            stored = await self.store.get(key) or new
            self.schedule(key, stored)
            return stored
        latest = await self.store.get(key)  # a login or logout won the race: keep theirs
        if latest is None:
            raise LoginRequired()
        return latest

    async def app_token(self) -> TokenRecord:
        """The app-only token (client credentials grant), cached, renewed like user tokens."""
        record = await self.store.get(APP_KEY)
        now = self.clock()
        self._last_used[APP_KEY] = now
        if record is None or _stale(record, now):
            return await self.refresh(APP_KEY, record)
        if self.policy.enabled and self._scheduled.get(APP_KEY) != record.version:
            self.schedule(APP_KEY, record)
        return record

    async def _store_app_token(
        self, current: TokenRecord | None, max_wait: float | None = None
    ) -> TokenRecord:
        new = await self.accounts.client_credentials(max_wait=max_wait)
        if current is None:
            stored = await self.store.put(APP_KEY, new)
        elif await self.store.replace(APP_KEY, current, new):
            stored = await self.store.get(APP_KEY) or new
        else:
            return await self.store.get(APP_KEY) or await self.store.put(APP_KEY, new)
        self.schedule(APP_KEY, stored)
        return stored

    async def _reauthorization_required(self, key: str) -> None:
        logger.info("Spotify no longer accepts a refresh token; its login was dropped")
        for hook in self.reauth_hooks:
            try:
                result = hook(key)
                if inspect.isawaitable(result):
                    await result
            except Exception:
                logger.exception("A reauthorization hook failed")

    # -- the background renewer -------------------------------------------------------------

    def schedule(self, key: str, record: TokenRecord) -> None:
        """Put ``record`` on the renewal schedule (replacing any older entry for ``key``)."""
        if not self.policy.enabled or (record.refresh_token is None and key != APP_KEY):
            return
        self._scheduled[key] = record.version
        self._seq += 1
        entry = _Entry(self.policy.due(record), self._seq, key, record.version)
        if not self._heap or entry < self._heap[0]:
            self._wake.set()
        heapq.heappush(self._heap, entry)

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

    @property
    def scheduled(self) -> int:
        """How many tokens the renewer is keeping warm."""
        return len(self._scheduled)

    def start(self) -> None:
        """Start the renewer on the running loop (no-op when renewal is off)."""
        if self.policy.enabled and self._runner is None:
            self._wake = asyncio.Event()
            self._slots = asyncio.Semaphore(self.policy.concurrency)
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
            while self._heap and self._heap[0].due <= now:
                entry = heapq.heappop(self._heap)
                if self._scheduled.get(entry.key) != entry.version:
                    continue  # superseded by a newer schedule entry
                if not self._is_warm(entry.key, now):
                    del self._scheduled[entry.key]  # idle: refresh lazily on next use
                    await self._count("idle")
                    continue
                await self._slots.acquire()
                task = asyncio.get_running_loop().create_task(self._renew(entry))
                self._background.add(task)
                task.add_done_callback(self._background.discard)
                now = self.clock()
            timeout = self._heap[0].due - now if self._heap else None
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout)

    def _is_warm(self, key: str, now: float) -> bool:
        keep = self.policy.keep_warm
        return keep <= 0 or now - self._last_used.get(key, now) <= keep

    async def _renew(self, entry: _Entry) -> None:
        self._in_flight += 1
        self.stats["max_in_flight"] = max(self.stats["max_in_flight"], self._in_flight)
        outcome = "renewed"
        try:
            record = await self.store.get(entry.key)
            if record is None or record.version != entry.version:
                outcome = "skipped"
                return
            left = record.expires_at - self.clock()
            await self.refresh(entry.key, record, max_wait=max(left, 0.0), wait=True)
        except LoginRequired:
            outcome = "gone"  # logged out, revoked (hooks ran) or replaced meanwhile
        except (SpotifyAuthError, OSError) as exc:
            outcome = "failed"
            self._retry_later(entry, exc)
        finally:
            self._in_flight -= 1
            self._slots.release()
            await self._count(outcome)

    def _retry_later(self, entry: _Entry, exc: Exception) -> None:
        """Transient failure: the stored token is kept; try again with exponential backoff
        and jitter (1 s doubling up to 60 s)."""
        logger.warning("Background token renewal failed (%s); will retry", type(exc).__name__)
        if self._scheduled.get(entry.key) != entry.version:
            return
        self._seq += 1
        delay = min(60.0, 2.0**entry.failures) * random.uniform(0.5, 1.0)  # noqa: S311
        due = self.clock() + delay
        heapq.heappush(
            self._heap,
            _Entry(due, self._seq, entry.key, entry.version, entry.failures + 1),
        )
        self._wake.set()
