"""The store contract, in two parts a store implements together as a :class:`TokenStore`."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import NamedTuple

from ..errors import ConfigurationError
from ..tokens import TokenRecord

__all__ = ["Due", "Records", "Schedule", "TokenStore"]


class Records(ABC):
    """Token records by key, versioned.

    A store never hands out the same version twice for a key, not even for a key deleted and
    written again: :meth:`put` (a login) always wins; :meth:`replace` (a refresh) lands only if
    the stored version is still the one the refresh started from, so a refresh racing a logout
    and a new login never overwrites or resurrects anything.
    """

    @abstractmethod
    async def get(
        self, key: str, *, touch: float | None = None, fresh: bool = False
    ) -> TokenRecord | None:
        """The record under ``key``, or ``None``. With ``touch``, also record use at that time
        and move the key's renewal forward to it if it was later (or absent), so the renewer
        looks at a returning user at once. ``fresh`` skips any copy held in this process (a
        refresh must start from the newest refresh token)."""

    @abstractmethod
    async def put(
        self, key: str, record: TokenRecord, *, due: float | None = None, used: float | None = None
    ) -> TokenRecord:
        """Store ``record`` with a new version, renewed at ``due`` (``None``: not scheduled);
        ``used`` records use at that time. Returns what was stored."""

    @abstractmethod
    async def replace(
        self, key: str, old: TokenRecord, new: TokenRecord, *, due: float | None = None
    ) -> TokenRecord | None:
        """Store ``new`` with a new version only if the stored record still has
        ``old.version``. Returns what was stored, or ``None``."""

    @abstractmethod
    async def delete(self, key: str, old: TokenRecord | None = None) -> bool:
        """Remove ``key`` and its schedule (only if still at ``old.version`` when given)."""

    def peek(self, key: str) -> TokenRecord | None:
        """The record under ``key`` if this process holds a copy it knows to be current, else
        ``None``; never waits (the Flask shim calls it from request threads)."""
        return None

    def kept(self, key: str) -> TokenRecord | None:
        """After this store failed to answer (a
        :class:`~quart_spotify_auth.StoreUnavailable`): the copy of ``key`` this process may
        still serve until the store is back, else ``None`` (the default)."""
        return None


class Due(NamedTuple):
    """What :meth:`Schedule.due` hands out."""

    #: Keys due now, earliest first, each with when it was last used (if known).
    keys: list[tuple[str, float | None]]
    #: The earliest due time left on the schedule, if any.
    next: float | None


class Schedule(ABC):
    """When each key is renewed, and who renews it.

    A store that serves one process claims trivially (the refresher's single flight is the
    claim); a store shared by several processes keeps the schedule shared and overrides
    :meth:`claim` and :meth:`release` so that one process refreshes a key at a time.
    """

    @abstractmethod
    async def due(self, now: float, limit: int) -> Due:
        """Up to ``limit`` keys due at ``now``, and the next due time. A shared store may hand
        a key out again until it is rescheduled; one that serves one process hands it out
        once."""

    @abstractmethod
    async def reschedule(self, key: str, due: float | None) -> None:
        """Renew ``key`` at ``due``; ``None`` takes it off the schedule."""

    async def claim(self, key: str, ttl: float, owner: str) -> str | None:
        """Take the right to refresh ``key`` for ``ttl`` seconds; ``None`` if another holds it.

        ``owner`` names the caller (one refresher in one process). A claim the same owner
        already holds, left behind when its release could not reach the store, is taken again
        (for a new ``ttl``) rather than waited out."""
        return owner

    async def release(self, key: str, claim: str) -> None:  # noqa: B027 - trivial default
        """Give up a claim (only the holder's own claim is removed)."""


class TokenStore(Records, Schedule):
    """Where tokens and their renewal schedule live, server-side. (Logins in flight are kept
    nowhere: see :mod:`quart_spotify_auth.states`.)"""

    #: Whether several processes share this store (and so the schedule and the claims).
    shared: bool = False

    async def open(self) -> None:
        """Called when the app starts serving (in each process, on its event loop)."""

    async def close(self) -> None:
        """Called when the app stops serving."""


def url_or(url: object, given: object, store: str, what: str) -> None:
    """A shared store is built from a URL, or from a client of the app's (``what``): exactly
    one of them."""
    if (url is None) == (given is None):
        raise ConfigurationError(f"{store} needs a url or {what} (one of them).")
