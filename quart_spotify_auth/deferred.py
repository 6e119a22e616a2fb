"""Writes this process owes its store while it is away: renewed records (Spotify may have retired
the refresh token they replace: never lost, served from here meanwhile) and claim releases."""

from __future__ import annotations

from .errors import SpotifyAuthError
from .signals import logger
from .stores import TokenStore
from .stores.cache import bounded_insert
from .tokens import Clock, TokenRecord

__all__ = ["Deferred"]

#: How many renewed records a process keeps while the store is away, at most.
MAX_SAVES = 10_000


class Deferred:
    """The saves and releases one refresher owes ``store``."""

    def __init__(self, store: TokenStore, clock: Clock, bound: float) -> None:
        self._store = store
        self._clock = clock
        self._bound = bound  # how long a renewed record is served unconfirmed
        #: key -> (the record a refresh started from, the renewed one, its due time, served until).
        self._saves: dict[str, tuple[TokenRecord, TokenRecord, float | None, float]] = {}
        #: key -> a claim whose release could not reach the store.
        self._releases: dict[str, str] = {}

    def __repr__(self) -> str:
        return f"Deferred({len(self._saves)} saves, {len(self._releases)} releases)"

    def renewed(self, key: str, *, served: bool = False) -> TokenRecord | None:
        """The record renewed for ``key`` and not saved yet (newer than the store's); to be
        ``served``, only ``bound`` s from its first deferral (a logout elsewhere is unheard)."""
        save = self._saves.get(key) if self._saves else None
        return None if save is None or (served and self._clock() > save[3]) else save[1]

    def stored(self, key: str, current: TokenRecord) -> TokenRecord:
        """The record a save of ``key`` must replace: what the store still holds."""
        save = self._saves.get(key)
        return current if save is None else save[0]

    def save(self, key: str, old: TokenRecord, new: TokenRecord, due: float | None) -> None:
        """Owe the store ``new`` in place of ``old`` (bounded: the oldest go first)."""
        until = self._saves[key][3] if key in self._saves else self._clock() + self._bound
        bounded_insert(self._saves, key, (old, new, due, until), MAX_SAVES)

    def saved(self, key: str) -> None:
        """``key`` was written since (saved, logged in or out): nothing owed for it."""
        self._saves.pop(key, None)

    def release(self, key: str, claim: str) -> None:
        """Owe the store the release of ``claim``."""
        self._releases[key] = claim

    def released(self, key: str) -> None:
        """``key``'s claim was taken again: its release is no longer owed."""
        self._releases.pop(key, None)

    async def flush(self) -> bool:
        """Write what is owed: whether all was; stops at the first failure (the store is away)."""
        try:
            for key, claim in list(self._releases.items()):
                await self._store.release(key, claim)
                if self._releases.get(key) == claim:
                    del self._releases[key]
            for key, save in list(self._saves.items()):
                old, new, due, _ = save
                stored = await self._store.replace(key, old, new, due=due)
                if self._saves.get(key) == save:
                    del self._saves[key]
                if stored is None:
                    logger.warning("A renewed token kept in this process was superseded meanwhile")
        except SpotifyAuthError:
            return False
        return True
