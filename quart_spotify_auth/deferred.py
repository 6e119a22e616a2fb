"""Writes this process owes its store while it is away: renewed records (Spotify may have retired
the refresh token they replace: never lost, served from here meanwhile) and claim releases."""

from __future__ import annotations

import logging
from typing import TypeVar

from .errors import SpotifyAuthError
from .stores import TokenStore
from .tokens import TokenRecord

__all__ = ["Deferred", "remember"]

logger = logging.getLogger("quart_spotify_auth")

#: How many renewed records a process keeps while the store is away, at most.
MAX_SAVES = 10_000

K = TypeVar("K")
V = TypeVar("V")


def remember(memory: dict[K, V], key: K, value: V, limit: int) -> None:
    """Set ``key`` as the newest entry of ``memory``, forgetting the oldest beyond ``limit``."""
    memory.pop(key, None)
    memory[key] = value
    while len(memory) > limit:
        del memory[next(iter(memory))]


class Deferred:
    """The saves and releases one refresher owes ``store``."""

    def __init__(self, store: TokenStore) -> None:
        self._store = store
        #: key -> (the stored record a refresh started from, the renewed one, its due time).
        self._saves: dict[str, tuple[TokenRecord, TokenRecord, float | None]] = {}
        #: key -> a claim whose release could not reach the store.
        self._releases: dict[str, str] = {}

    def __repr__(self) -> str:
        return f"Deferred({len(self._saves)} saves, {len(self._releases)} releases)"

    def renewed(self, key: str) -> TokenRecord | None:
        """The record renewed for ``key`` and not saved yet (newer than the store's)."""
        save = self._saves.get(key) if self._saves else None
        return None if save is None else save[1]

    def stored(self, key: str, current: TokenRecord) -> TokenRecord:
        """The record a save of ``key`` must replace: what the store still holds."""
        save = self._saves.get(key)
        return current if save is None else save[0]

    def save(self, key: str, old: TokenRecord, new: TokenRecord, due: float | None) -> None:
        """Owe the store ``new`` in place of ``old`` (bounded: the oldest go first)."""
        remember(self._saves, key, (old, new, due), MAX_SAVES)

    def saved(self, key: str) -> None:
        """``key`` was written since (saved, logged in or out): nothing owed for it."""
        self._saves.pop(key, None)

    def release(self, key: str, claim: str) -> None:
        """Owe the store the release of ``claim``."""
        self._releases[key] = claim

    def released(self, key: str) -> None:
        """``key``'s claim was taken again: its release is no longer owed."""
        self._releases.pop(key, None)

    async def flush(self) -> None:
        """Write what is owed; stops at the first failure (the store is still away)."""
        for key, claim in list(self._releases.items()):
            try:
                await self._store.release(key, claim)
            except SpotifyAuthError:
                return
            if self._releases.get(key) == claim:
                del self._releases[key]
        for key, (old, new, due) in list(self._saves.items()):
            try:
                stored = await self._store.replace(key, old, new, due=due)
            except SpotifyAuthError:
                return
            if self._saves.get(key) == (old, new, due):
                del self._saves[key]
            if stored is None:
                logger.warning("A renewed token kept in this process was superseded meanwhile")
