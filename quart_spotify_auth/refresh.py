"""Single-flight refresh: one token request per key, however many callers and processes ask.

:class:`Refresher` reads a user's valid token (refreshing it first when it is stale), records
logins and logouts, and refreshes: in this process one task per key that every caller joins;
across processes (a shared store) a claim that one process holds while the others wait for
its result. Writes are versioned (:meth:`.TokenStore.replace`), so a refresh never overwrites
a newer login or a rotated refresh token, and never resurrects a logout.

What is refreshed how is a :class:`Grant`: users' tokens with their refresh token, the app's
own token (key :data:`APP_KEY`) with the client-credentials grant.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from . import signals
from .accounts import AccountsClient
from .claims import Claims
from .errors import (
    LoginRequired,
    ReauthorizationRequired,
    SpotifyAuthError,
    SpotifyUnavailable,
    StoreUnavailable,
)
from .retry import backoff
from .stores import TokenStore
from .stores.cache import CachedStore
from .tasks import stop_if_cancelled
from .tokens import TokenRecord

__all__ = ["APP_KEY", "Grant", "Refresher", "grant_for"]

logger = logging.getLogger("quart_spotify_auth")

#: The store key of the app-only (client credentials) token.
APP_KEY = "app:client-credentials"

#: How many recently revoked keys are remembered, to tell "log in again" from "never logged in".
REVOKED_MEMORY = 10_000

#: How long a claim lasts unless its holder keeps it alive (a third of it at a time): the time
#: other processes wait for a holder that crashed.
CLAIM_TTL = 10.0

#: Longest a renewed record's save is retried before it is kept in the process (seconds).
SAVE_WINDOW = 1.0

#: How many renewed records a process keeps while the store is away, at most.
MAX_UNSAVED = 10_000

#: How many users' last-use stamps a process keeps (each costs a store write when lost).
MAX_TOUCHED = 100_000


class Grant:
    """How the tokens under a key are renewed: users' with their refresh token."""

    def renewable(self, record: TokenRecord) -> bool:
        return record.refresh_token is not None

    async def renew(
        self, accounts: AccountsClient, current: TokenRecord | None, max_wait: float | None
    ) -> TokenRecord:
        if current is None:
            raise LoginRequired()
        return await accounts.refresh(current, max_wait=max_wait)


class _AppGrant(Grant):
    """The app's own token: a new one from the client-credentials grant, stored or not."""

    def renewable(self, record: TokenRecord) -> bool:
        return True

    async def renew(
        self, accounts: AccountsClient, current: TokenRecord | None, max_wait: float | None
    ) -> TokenRecord:
        return await accounts.client_credentials(max_wait=max_wait)


_USER, _APP = Grant(), _AppGrant()


def grant_for(key: str) -> Grant:
    """The grant that renews ``key``'s tokens."""
    return _APP if key == APP_KEY else _USER


class Refresher:
    """Tokens for one app in one process: read them valid, record logins, refresh once."""

    def __init__(self, accounts: AccountsClient, store: TokenStore, *, sender: Any = None) -> None:
        self.accounts = accounts
        self.store = CachedStore(store)
        self.settings = accounts.settings
        self.clock = accounts.clock
        #: The sender of this app's signals (the app).
        self.sender = sender
        #: Called when the schedule changed: with ``None`` the renewer looks at it now, with
        #: a due time only if that comes before its next look anyway.
        self.wake: Callable[[float | None], None] = lambda at: None
        self._inflight: dict[str, asyncio.Task[TokenRecord]] = {}
        self._touched: dict[str, float] = {}  # key -> when this process last recorded use
        self._revoked: OrderedDict[str, None] = OrderedDict()
        self.claims = Claims(self.store)
        #: Renewed records the store could not take yet: key -> (the record renewed, the
        #: new one). Served from here, and saved by the renewer once the store is back.
        self.unsaved: OrderedDict[str, tuple[TokenRecord, TokenRecord]] = OrderedDict()

    def __repr__(self) -> str:
        return f"Refresher({len(self._inflight)} in flight)"

    def due(self, key: str, record: TokenRecord) -> float | None:
        """When the renewer should look at ``record``: ``SPOTIFY_REFRESH_MARGIN`` before expiry
        with up to 10% jitter (never before the lifetime's midpoint); with background renewal
        off, when it would be forgotten unused; ``None`` when never."""
        if not self.settings.auto_renew:
            return self.clock() + self.settings.token_idle_ttl
        if not grant_for(key).renewable(record):
            return None
        margin = self.settings.refresh_margin
        jitter = random.uniform(0, self._max_jitter(record))  # noqa: S311
        return record.refresh_at(margin, jitter)

    def earliest_due(self, record: TokenRecord) -> float:
        """The earliest time :meth:`due` can give ``record`` (with the most jitter)."""
        return record.refresh_at(self.settings.refresh_margin, self._max_jitter(record))

    def _max_jitter(self, record: TokenRecord) -> float:
        return 0.1 * min(self.settings.refresh_margin, record.lifetime)

    # -- logins -----------------------------------------------------------------------------

    async def login(self, key: str, record: TokenRecord) -> TokenRecord:
        """Store a fresh login for ``key`` (replacing any older one) and schedule it."""
        now = self.clock()
        due = self.due(key, record)
        stored = await self.store.put(key, record, due=due, used=now)
        self._revoked.pop(key, None)
        self.unsaved.pop(key, None)
        self._touched_at(key, now)
        if due is not None:
            self.wake(due)
        return stored

    async def logout(self, key: str, old: TokenRecord | None = None) -> bool:
        """Forget ``key``'s tokens (only if still at ``old``'s version, when given). Returns
        whether there were any."""
        self._touched.pop(key, None)
        self.unsaved.pop(key, None)
        return await self.store.delete(key, old)

    # -- reading a valid token --------------------------------------------------------------

    def _touch(self, key: str, now: float) -> bool:
        """Whether this read should record use: every tenth of the period after which an
        unused login is left alone (``SPOTIFY_KEEP_WARM``), or forgotten when background
        renewal is off (``SPOTIFY_TOKEN_IDLE_TTL``)."""
        settings = self.settings
        period = settings.keep_warm if settings.auto_renew else settings.token_idle_ttl
        last = self._touched.get(key)
        return period > 0 and (last is None or now - last > period / 10)

    def _touched_at(self, key: str, now: float) -> None:
        """Remember when this process last recorded ``key``'s use (a bounded map: the
        stamps of users long gone make room)."""
        self._touched.pop(key, None)
        self._touched[key] = now
        if len(self._touched) > MAX_TOUCHED:
            del self._touched[next(iter(self._touched))]

    def held(self, key: str) -> TokenRecord | None:
        """``key``'s record if this process holds a current copy that needs nothing done
        (not stale, no use to record); never waits."""
        unsaved = self.unsaved.get(key) if self.unsaved else None
        record = unsaved[1] if unsaved is not None else self.store.cached(key)
        if record is None:
            return None
        now = self.clock()
        return None if record.stale(now) or self._touch(key, now) else record

    async def current(self, key: str) -> TokenRecord:
        """``key``'s valid record, refreshed first if it is stale (the app token: fetched
        when there is none)."""
        now = self.clock()
        unsaved = self.unsaved.get(key)
        if unsaved is not None:  # renewed while the store was away: newer than what it holds
            return unsaved[1] if not unsaved[1].stale(now) else await self.refresh(key)
        touch = self._touch(key, now)
        try:
            record = await self.store.get(key)
            if touch and record is not None:
                await self.store.mark_used(key, now)
        except StoreUnavailable:
            # Served through a store restart: the copy this process holds, if still valid
            # and no write to it was heard (a logout needs the store, so none is confirmed
            # meanwhile); use is recorded by a later read.
            known = self.store.last_known(key)
            if known is None or known.stale(now):
                raise
            return known
        if record is None:
            self._touched.pop(key, None)
            if key in self._revoked:
                raise ReauthorizationRequired()
            if key != APP_KEY:
                raise LoginRequired()
            return await self.refresh(key)
        if touch:
            self._touched_at(key, now)
            if not self.store.shared:
                self.wake(None)
        return await self.refresh(key, record) if record.stale(now) else record

    # -- refreshing -------------------------------------------------------------------------

    async def refresh(
        self,
        key: str,
        seen: TokenRecord | None = None,
        *,
        max_wait: float | None = None,
        wait: bool = False,
    ) -> TokenRecord:
        """Refresh ``key`` now, joining a refresh already in flight for it.

        ``seen`` is the record the caller found; if the store has a newer, valid one by the
        time this process may refresh, that is returned without a token request. A caller on
        the request path waits at most ``settings.join_timeout`` (then 503); ``wait=True``
        (the renewer) waits as long as it takes.
        """
        task = self._inflight.get(key)
        if task is None:
            task = asyncio.ensure_future(self._refresh(key, seen, max_wait, not wait))
            self._inflight[key] = task
            task.add_done_callback(lambda t: self._finished(key, t))
        timeout = None if wait else self.settings.join_timeout
        try:
            return await asyncio.wait_for(asyncio.shield(task), timeout)
        except TimeoutError:
            raise SpotifyUnavailable(
                "Renewing the Spotify token is taking too long. Try again shortly."
            ) from None

    async def wait_for_inflight(self, timeout: float) -> None:
        """Let refreshes already talking to Spotify land (up to ``timeout`` seconds), so a
        rotated refresh token is not lost at shutdown."""
        pending = set(self._inflight.values())
        if pending:
            await asyncio.wait(pending, timeout=timeout)

    def _finished(self, key: str, task: asyncio.Task[TokenRecord]) -> None:
        if self._inflight.get(key) is task:
            del self._inflight[key]
        if not task.cancelled():
            task.exception()  # retrieved here so an unawaited failure is not reported twice

    async def _refresh(
        self, key: str, seen: TokenRecord | None, max_wait: float | None, on_request: bool
    ) -> TokenRecord:
        if seen is None:  # forced: the version to wait past, if another process has the claim
            seen = await self._latest(key)
        ttl = CLAIM_TTL  # kept alive while the refresh runs: short, so a crash frees it soon
        claim = await self.claims.take(key, ttl)
        if claim is None:  # another process is refreshing this key: wait for its result
            elsewhere = await self._refreshed_elsewhere(key, seen, ttl)
            if isinstance(elsewhere, TokenRecord):
                return elsewhere
            claim = elsewhere  # it let go without a new token: ours to refresh now
        async with self.claims.held(key, claim, ttl):
            current = await self._latest(key)  # the newest refresh token
            newer = current is not None and seen is not None and current.version != seen.version
            if current is not None and newer and not current.stale(self.clock()):
                return current  # somebody else (another process) renewed it meanwhile
            return await self._renew(key, current, max_wait, on_request)

    async def _latest(self, key: str) -> TokenRecord | None:
        """The newest record of ``key``: one renewed here and not saved yet, or the store's."""
        unsaved = self.unsaved.get(key)
        return unsaved[1] if unsaved is not None else await self.store.uncached.get(key)

    async def _renew(
        self, key: str, current: TokenRecord | None, max_wait: float | None, on_request: bool
    ) -> TokenRecord:
        try:
            new = await grant_for(key).renew(self.accounts, current, max_wait)
        except ReauthorizationRequired:
            if current is None or await self._drop(key, current):
                raise
            # Not the stored login any more (renewed or replaced meanwhile): use that one.
            latest = await self.store.uncached.get(key)
            if latest is None:
                raise
            return latest
        if current is None:  # the app token, first fetched
            stored: TokenRecord | None = await self.login(key, new)
        else:
            stored = await self._save(key, current, new)
        if stored is None:
            stored = await self.store.uncached.get(key)  # a login or logout won the race
            if stored is None:
                raise LoginRequired()
            return stored
        if self.settings.auto_renew:  # the renewer looks early enough for the new due time
            self.wake(self.earliest_due(stored))
        await signals.send(
            signals.token_renewed, self.sender, key=key, in_background=not on_request
        )
        return stored

    async def _save(self, key: str, current: TokenRecord, new: TokenRecord) -> TokenRecord | None:
        """Write a refreshed record. Spotify may already have retired the old refresh token
        (rotation), so while the store is away the write is retried for a moment, and then
        the new record is kept in this process (served from here) until the renewer can
        save it: a rotated refresh token is never thrown away."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + min(SAVE_WINDOW, self.settings.join_timeout / 4)
        attempt = 0
        base, _ = self.unsaved.get(key, (current, new))
        while True:
            try:  # a store that is away may also be slow to say so: each try is bounded
                async with asyncio.timeout(max(deadline - loop.time(), 0.05)):
                    stored = await self.store.replace(key, base, new, due=self.due(key, new))
            except (SpotifyAuthError, TimeoutError):
                stop_if_cancelled()
                attempt += 1
                delay = backoff(attempt, base=0.1, cap=2.0)
                if loop.time() + delay <= deadline:
                    await asyncio.sleep(delay)
                    continue
                logger.error("A renewed token is kept in this process until the store is back")
                self.unsaved[key] = (base, new)
                self.unsaved.move_to_end(key)
                while len(self.unsaved) > MAX_UNSAVED:  # bounded: the oldest go
                    self.unsaved.popitem(last=False)
                return replace(new, version=base.version)
            self.unsaved.pop(key, None)
            return stored

    async def save_unsaved(self) -> None:
        """Save what was renewed while the store was away (stops at the first failure)."""
        for key, (base, new) in list(self.unsaved.items()):
            try:
                stored = await self.store.replace(key, base, new, due=self.due(key, new))
            except SpotifyAuthError:
                return
            if self.unsaved.get(key) == (base, new):
                del self.unsaved[key]
            if stored is None:
                logger.warning("A renewed token kept in this process was superseded meanwhile")

    async def _refreshed_elsewhere(
        self, key: str, seen: TokenRecord | None, lock_ttl: float
    ) -> TokenRecord | str:
        """Wait (polling, with backoff) until another process's refresh of ``key`` lands, and
        return the new record; or, if that process lets go of its claim without one (its
        refresh failed, or it died), take the claim and return it."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.settings.join_timeout
        attempt = 0
        while loop.time() < deadline:
            attempt += 1
            await asyncio.sleep(min(0.01 * 2**attempt, 0.2))
            current = await self.store.uncached.get(key)
            if current is None:
                if key in self._revoked or key == APP_KEY:
                    break
                raise LoginRequired()
            if seen is None or current.version != seen.version:
                return current
            claim = await self.claims.take(key, lock_ttl)
            if claim is not None:
                return claim
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
        logger.info("Spotify no longer accepts a refresh token; its login was dropped")
        await signals.send(signals.reauthorization_required, self.sender, key=key)
        return True
