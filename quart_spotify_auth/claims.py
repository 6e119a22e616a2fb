"""Claims: which process refreshes a key when several share a store. A claim is kept alive while
its refresh runs and released after (deferred if the store is away); a dead holder's expires."""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
from collections.abc import AsyncIterator

from .deferred import Deferred
from .errors import SpotifyAuthError
from .signals import logger
from .stores import TokenStore
from .tasks import stop_if_cancelled

__all__ = ["Claims"]


class Claims:
    """One refresher's claims on the keys of one store."""

    #: Longest a refresh waits for its claim's release; after that the release is deferred.
    RELEASE_TIMEOUT = 0.2

    def __init__(self, store: TokenStore, deferred: Deferred) -> None:
        self._store = store
        self._deferred = deferred
        self._nonce = secrets.token_hex(6)

    def __repr__(self) -> str:
        return f"Claims({self.owner!r})"

    @property
    def owner(self) -> str:
        """Who this refresher is in a shared store (a forked copy is somebody else)."""
        return f"{os.getpid()}:{self._nonce}"

    async def take(self, key: str, ttl: float) -> str | None:
        """Claim ``key`` for ``ttl`` seconds; ``None`` if another process holds it."""
        claim = await self._store.claim(key, ttl, self.owner)
        if claim is not None:
            self._deferred.released(key)
        return claim

    @contextlib.asynccontextmanager
    async def holding(self, key: str, claim: str, ttl: float) -> AsyncIterator[None]:
        """Keep ``claim`` alive while the block runs, then release it."""
        current = [claim]
        done = asyncio.Event()
        keeper = None
        if self._store.shared:
            keeper = asyncio.ensure_future(self._keep(key, current, ttl, done))
        try:
            yield
        finally:
            done.set()
            if keeper is not None:  # it ends at its next step, unless the store is slow
                finished, _ = await asyncio.wait({keeper}, timeout=self.RELEASE_TIMEOUT)
                if not finished:
                    keeper.cancel()
            try:
                async with asyncio.timeout(self.RELEASE_TIMEOUT):
                    await self._store.release(key, current[0])
            except (SpotifyAuthError, TimeoutError):
                # The store is away: the claim would block other processes until it expires.
                self._deferred.release(key, current[0])

    async def _keep(self, key: str, current: list[str], ttl: float, done: asyncio.Event) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(done.wait(), ttl / 3)
            if done.is_set():
                return
            try:
                again = await self._store.claim(key, ttl, self.owner)
            except SpotifyAuthError:
                stop_if_cancelled()
                continue  # the store is away: try again; the claim lives on meanwhile
            if again is None:
                logger.warning("A refresh claim expired while its refresh was still running")
                return
            current[0] = again
