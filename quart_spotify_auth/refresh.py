"""Single-flight refresh: one token request per key, however many callers and processes ask
(one task per key in a process, a :mod:`.claims` claim across processes). Versioned writes never
overwrite a newer login or a rotated refresh token; unsaved ones are :mod:`.deferred`."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from . import signals
from .accounts import AccountsClient
from .claims import Claims
from .config import Settings
from .deferred import Deferred
from .errors import (
    LoginRequired,
    ReauthorizationRequired,
    SpotifyAuthError,
    SpotifyUnavailable,
    StoreUnavailable,
)
from .grants import APP_KEY, grant_for
from .retry import backoff
from .signals import logger
from .stores import TokenStore
from .stores.cache import CachedRecords, bounded_insert
from .tasks import Flight, stop_if_cancelled
from .tokens import Clock, RenewalPolicy, TokenRecord

__all__ = ["Refresher"]

#: How many recently revoked keys are remembered, to tell "log in again" from "never logged in".
REVOKED_MEMORY = 10_000

#: How long a claim lasts unless its holder keeps it alive: how long others wait for a crash.
CLAIM_TTL = 10.0

#: Longest a renewed record's save is retried before it is deferred (seconds).
SAVE_WINDOW = 1.0

#: How many users' last-use stamps a process keeps (each costs a store write when lost).
MAX_USE_STAMPS = 100_000

_TOO_LONG = "Renewing the Spotify token is taking too long. Try again shortly."


class Refresher:
    """Tokens for one app in one process: read them valid, record logins, refresh once.
    ``wake(at)`` tells the renewer (which sets it) the schedule changed."""

    def __init__(
        self,
        accounts: AccountsClient,
        store: TokenStore,
        settings: Settings,
        policy: RenewalPolicy,
        *,
        clock: Clock,
        sender: Any,
    ) -> None:
        self.accounts = accounts
        self.settings = settings
        self.store = store
        self.records = CachedRecords(store)
        self.policy = policy
        self.clock = clock
        self.sender = sender  # of this app's signals (the app)
        self.deferred = Deferred(store, clock, self.records.cache.last_known_for)
        self._claims = Claims(store, self.deferred)
        self.wake: Callable[[float | None], None] = lambda at: None
        #: Told of a 429 a refresh could not wait out (its ``Retry-After``): the renewer pauses.
        self.rate_limited: Callable[[float], None] = lambda seconds: None
        self._inflight: dict[str, Flight[TokenRecord]] = {}
        self._use_stamps: dict[str, float] = {}  # key -> when this process last marked use
        self._revoked: dict[str, None] = {}

    def __repr__(self) -> str:
        return f"Refresher({len(self._inflight)} in flight)"

    def due(self, key: str, record: TokenRecord) -> float | None:
        """When the renewer looks at ``key``'s ``record`` (:class:`.RenewalPolicy`)."""
        return self.policy.due(record, grant_for(key).renewable(record), self.clock())

    async def login(self, key: str, record: TokenRecord) -> TokenRecord:
        """Store a fresh login for ``key`` (replacing any older one) and schedule it."""
        now = self.clock()
        due = self.due(key, record)
        stored = await self.records.put(key, record, due=due, used=now)
        self._revoked.pop(key, None)
        self.deferred.saved(key)
        bounded_insert(self._use_stamps, key, now, MAX_USE_STAMPS)
        if due is not None:
            self.wake(due)
        return stored

    async def logout(self, key: str, old: TokenRecord | None = None) -> bool:
        """Forget ``key``'s tokens (only if still at ``old``'s version): whether there were any."""
        self._use_stamps.pop(key, None)
        self.deferred.saved(key)
        return await self.records.delete(key, old)

    def _use_to_mark(self, key: str, now: float) -> bool:
        """Whether this read marks use: every tenth of ``keep_warm`` (else ``token_idle_ttl``)."""
        settings = self.settings
        period = settings.keep_warm if settings.auto_renew else settings.token_idle_ttl
        last = self._use_stamps.get(key)
        return period > 0 and (last is None or now - last > period / 10)

    def cached(self, key: str) -> TokenRecord | None:
        """``key``'s record if held here, not stale and with no use to mark; never waits."""
        record = self.deferred.renewed(key, served=True) or self.records.cache.get(key)
        now = self.clock()
        if record is None or record.stale(now) or self._use_to_mark(key, now):
            return None
        return record

    async def current(self, key: str) -> TokenRecord:
        """``key``'s valid record, refreshed first if stale (the app token: fetched if none)."""
        now = self.clock()
        renewed = self.deferred.renewed(key, served=True)  # newer than what the store holds
        if renewed is not None:
            return renewed if not renewed.stale(now) else await self.refresh(key)
        if self.deferred.renewed(key) and not await self.deferred.flush():
            raise StoreUnavailable()  # unsaved too long to serve unseen: a logout may be there
        mark = self._use_to_mark(key, now)
        if mark:  # one mark, however many callers read the key at once
            bounded_insert(self._use_stamps, key, now, MAX_USE_STAMPS)
        try:
            record = await self.records.get(key)
            if mark and record is not None:
                await self.store.mark_used(key, now)
        except StoreUnavailable:
            if mark:
                self._use_stamps.pop(key, None)  # not marked: the next read tries again
            # Through a store restart: the copy held here, if still valid and not written.
            known = self.records.cache.last_known(key)
            if known is None or known.stale(now):
                raise
            return known
        if record is None:
            self._use_stamps.pop(key, None)
            if key in self._revoked:
                raise ReauthorizationRequired()
            if key != APP_KEY:
                raise LoginRequired()
            return await self.refresh(key)
        if mark and not self.store.shared:
            self.wake(None)
        return await self.refresh(key, record) if record.stale(now) else record

    async def refresh(
        self,
        key: str,
        seen: TokenRecord | None = None,
        *,
        max_wait: float | None = None,
        wait: bool = False,
    ) -> TokenRecord:
        """Refresh ``key`` now, or join its refresh in flight; a valid record newer than ``seen``
        is returned unrefreshed. Callers wait ``join_timeout`` (then 503) unless ``wait=True``."""
        flight = self._inflight.get(key)
        if flight is None:
            task = asyncio.ensure_future(self._refresh(key, seen, max_wait, not wait))
            flight = self._inflight[key] = Flight(task, self.settings.join_timeout)
            task.add_done_callback(lambda t: self._finished(key, flight))
        if wait:  # waited for, never cancelled by a caller going away
            await asyncio.wait((flight.task,))
        elif not await flight.join():
            raise SpotifyUnavailable(_TOO_LONG)
        return flight.task.result()

    async def wait_for_inflight(self, timeout: float) -> None:
        """Let refreshes in flight land (up to ``timeout`` seconds) at shutdown."""
        if self._inflight:
            await asyncio.wait({flight.task for flight in self._inflight.values()}, timeout=timeout)

    def _finished(self, key: str, flight: Flight[TokenRecord]) -> None:
        if self._inflight.get(key) is flight:
            del self._inflight[key]
        if not flight.task.cancelled():
            # retrieved here so an unawaited failure is not reported twice
            failed = flight.task.exception()
            waiting = getattr(failed, "retry_after", None)
            if waiting is not None:  # Spotify's rate limit is the app's: no renewal meanwhile
                self.rate_limited(waiting)

    async def _refresh(
        self, key: str, seen: TokenRecord | None, max_wait: float | None, on_request: bool
    ) -> TokenRecord:
        if seen is None:  # forced: the version to wait past, if another process has the claim
            seen = await self._latest(key)
        claim = await self._claims.take(key, CLAIM_TTL)
        if claim is None:  # another process is refreshing this key: wait for its result
            elsewhere = await self._refreshed_elsewhere(key, seen)
            if isinstance(elsewhere, TokenRecord):
                return elsewhere
            claim = elsewhere  # it let go without a new token: ours to refresh now
        async with self._claims.holding(key, claim, CLAIM_TTL):
            current = await self._latest(key)  # the newest refresh token
            newer = current is not None and seen is not None and current.version != seen.version
            if current is not None and newer and not current.stale(self.clock()):
                return current  # somebody else (another process) renewed it meanwhile
            return await self._renew(key, current, max_wait, on_request)

    async def _latest(self, key: str) -> TokenRecord | None:
        """The newest record of ``key``: one renewed here and not saved yet, or the store's."""
        return self.deferred.renewed(key) or await self.store.get(key)

    async def _renew(
        self, key: str, current: TokenRecord | None, max_wait: float | None, on_request: bool
    ) -> TokenRecord:
        try:
            new = await grant_for(key).renew(self.accounts, current, max_wait)
        except ReauthorizationRequired:
            if current is None or await self._drop(key, current):
                raise
            # Not the stored login any more (renewed or replaced meanwhile): use that one.
            latest = await self.store.get(key)
            if latest is None:
                raise
            return latest
        # The app token, first fetched, is a login; a renewal replaces the record it renewed.
        stored = await (self.login(key, new) if current is None else self._save(key, current, new))
        if stored is None:
            stored = await self.store.get(key)  # a login or logout won the race
            if stored is None:
                raise LoginRequired()
            return stored
        if self.settings.auto_renew:  # the renewer looks early enough for the new due time
            self.wake(self.policy.earliest_due(stored))
        await signals.send(
            signals.token_renewed, self.sender, key=key, in_background=not on_request
        )
        return stored

    async def _save(self, key: str, current: TokenRecord, new: TokenRecord) -> TokenRecord | None:
        """Write a refreshed record: Spotify may have retired the old refresh token, so while
        the store is away the write is retried for a moment, then deferred, never dropped."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + min(SAVE_WINDOW, self.settings.join_timeout / 4)
        attempt = 0
        old, due = self.deferred.stored(key, current), self.due(key, new)
        while True:
            try:  # a store that is away may also be slow to say so: each try is bounded
                async with asyncio.timeout(max(deadline - loop.time(), 0.05)):
                    stored = await self.records.replace(key, old, new, due=due)
            except (SpotifyAuthError, TimeoutError):
                stop_if_cancelled()
                attempt += 1
                delay = backoff(attempt, base=0.1, cap=2.0)
                if loop.time() + delay <= deadline:
                    await asyncio.sleep(delay)
                    continue
                logger.error("A renewed token is kept in this process until the store is back")
                self.deferred.save(key, old, new, due)
                return replace(new, version=old.version)
            self.deferred.saved(key)
            return stored

    async def _refreshed_elsewhere(self, key: str, seen: TokenRecord | None) -> TokenRecord | str:
        """Wait (polling) for another process's refresh of ``key``: its new record; or, if it
        lets go of the claim without one (failed, or died), the claim, taken."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.settings.join_timeout
        attempt = 0
        while loop.time() < deadline:
            attempt += 1
            await asyncio.sleep(min(0.01 * 2**attempt, 0.2))
            current = await self.store.get(key)
            if current is None:
                if key in self._revoked or key == APP_KEY:
                    break
                raise LoginRequired()
            if seen is None or current.version != seen.version:
                return current
            claim = await self._claims.take(key, CLAIM_TTL)
            if claim is not None:
                return claim
        raise SpotifyUnavailable(_TOO_LONG)

    async def _drop(self, key: str, current: TokenRecord) -> bool:
        """Forget a login Spotify refused; ``False`` if the store holds another by now."""
        if not await self.records.delete(key, current):
            return False
        self._use_stamps.pop(key, None)
        bounded_insert(self._revoked, key, None, REVOKED_MEMORY)
        logger.info("Spotify no longer accepts a refresh token; its login was dropped")
        await signals.send(signals.reauthorization_required, self.sender, key=key)
        return True
