"""The store contract: :class:`Records`, :class:`Schedule` (with claims) and a lifecycle, which
a store implements together as a :class:`TokenStore`. Reading through this process's copies is
not a store's job: :class:`~.cache.CachedRecords` wraps any store."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Sequence
from typing import TYPE_CHECKING, NamedTuple

from ..errors import ConfigurationError
from ..tokens import TokenRecord

if TYPE_CHECKING:
    from .cache import ReadCache

__all__ = ["Due", "DueKey", "Records", "Schedule", "Stored", "TokenStore"]


class Records(ABC):
    """Token records by key, versioned: a version is never handed out twice for a key (not
    even after a delete). :meth:`put` (a login) always wins; :meth:`replace` (a refresh) lands
    only over the version it started from, so it never overwrites nor resurrects anything."""

    @abstractmethod
    async def get(self, key: str) -> TokenRecord | None:
        """The stored record under ``key``, or ``None``."""

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


class DueKey(NamedTuple):
    """A key due for renewal, and when it was last used (if known)."""

    key: str
    used: float | None


#: Seconds a shared store puts a key it hands out off by (a renewal takes well under one):
#: two renewers each take keys of their own instead of both waiting on the same claims.
DUE_LEASE = 30.0


class Due(NamedTuple):
    """What :meth:`Schedule.due` hands out: the keys due now, earliest first, and the earliest
    due time left on the schedule, if any."""

    entries: list[DueKey]
    next: float | None


class Schedule(ABC):
    """When each key is renewed, when it was last used, and who renews it: a store shared by
    several processes overrides :meth:`claim` and :meth:`release` so that one refreshes a key
    at a time (in one process, the refresher's single flight is the claim)."""

    @abstractmethod
    async def due(self, now: float, limit: int) -> Due:
        """Up to ``limit`` keys due at ``now``, and the next due time. A store that serves one
        process hands a key out once. A shared store puts each key it hands out off by
        :data:`DUE_LEASE` seconds (due at ``now + DUE_LEASE``), so another process's renewer
        takes other keys; a renewer that dies mid-renewal leaves its keys due again then."""

    @abstractmethod
    async def reschedule(self, key: str, due: float | None) -> None:
        """Renew ``key`` at ``due``; ``None`` takes it off the schedule."""

    @abstractmethod
    async def mark_used(self, key: str, at: float) -> None:
        """Record ``key``'s use at ``at``, and bring its renewal forward to ``at`` if later or
        unscheduled (a returning user is looked at at once); nothing for a key not stored."""

    async def claim(self, key: str, ttl: float, owner: str) -> str | None:
        """Take the right to refresh ``key`` for ``ttl`` seconds; ``None`` if another holds it.
        ``owner`` names the caller: a claim it already holds (its release was lost) is taken
        again rather than waited out."""
        return owner

    async def release(self, key: str, claim: str) -> None:  # noqa: B027 - trivial default
        """Give up a claim (only the holder's own claim is removed)."""


class Stored(NamedTuple):
    """One login as a store keeps it, for listing and for moving to another store: ``blob`` is
    the record as stored (encrypted and bound to ``key`` when keys are set), ``record`` what it
    reads as (``None``: not readable with this store's keys)."""

    key: str
    version: int
    blob: bytes
    record: TokenRecord | None
    due: float | None
    used: float | None


class TokenStore(Records, Schedule):
    """Where tokens and their renewal schedule live, server-side. :meth:`stored` and
    :meth:`adopt` (listing logins, moving them between stores) are optional."""

    #: Whether several processes share this store (and so the schedule and the claims).
    shared: bool = False

    #: Where this store reports its changes, for :class:`~.cache.CachedRecords`; ``None``:
    #: nothing is cached.
    cache: ReadCache | None = None

    async def open(self) -> None:
        """Called when the app starts serving (in each process, on its event loop)."""

    async def close(self) -> None:
        """Called when the app stops serving."""

    def stored(self, page: int = 500) -> AsyncIterator[list[Stored]]:
        """Every live login, in pages of about ``page``; a key may appear twice (Redis)."""
        raise ConfigurationError(f"{type(self).__name__} cannot list its logins (no stored()).")

    async def adopt(self, rows: Sequence[Stored]) -> int:
        """Store each readable row as it is (its blob, version, due time and use) unless this
        store holds its key at that version or newer; versions given later stay above them.
        Returns how many were written."""
        raise ConfigurationError(f"{type(self).__name__} cannot take logins in (no adopt()).")


def url_or(url: object, given: object, store: str, what: str) -> None:
    """A shared store takes exactly one of a URL and a client of the app's (``what``)."""
    if (url is None) == (given is None):
        raise ConfigurationError(f"{store} needs a url or {what} (one of them).")
