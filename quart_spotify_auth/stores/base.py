"""The :class:`TokenStore` contract."""

from __future__ import annotations

from abc import ABC, abstractmethod

from ..tokens import PendingLogin, TokenRecord


class TokenStore(ABC):
    """Async storage of token records by key, the renewal schedule, and pending logins.

    **Records.** Writes are versioned, and a store never hands out the same version twice, not
    even for a key deleted and written again: :meth:`put` (a new login) always wins; and
    :meth:`replace` (a refresh) only lands if the stored version is still the one the refresh
    started from, so a refresh racing a logout and a new login never overwrites or deletes the
    new login.

    **Schedule.** Each write may carry ``due``, when the record should be renewed; the
    renewer asks for :meth:`due_keys` and moves keys with :meth:`reschedule`. A store shared by
    several processes keeps the schedule shared too, and :meth:`claim` makes sure one process
    refreshes a key at a time; the in-memory store serves one process and claims trivially.

    **Usage.** ``get(key, touch=now)`` records that the key was used (for the idle policy)
    and brings its schedule forward to ``now``, in the same round trip.
    """

    #: Whether several processes share this store (and so the schedule and the claims).
    shared: bool = False

    async def open(self) -> None:  # noqa: B027 - optional hook
        """Called when the app starts serving."""

    async def close(self) -> None:  # noqa: B027 - optional hook
        """Called when the app stops serving."""

    def forked(self) -> None:  # noqa: B027 - optional hook
        """Called in a forked child before use: drop connections that belong to the parent."""

    @abstractmethod
    async def get(
        self, key: str, *, touch: float | None = None, fresh: bool = False
    ) -> TokenRecord | None:
        """The record stored under ``key``, or ``None``. With ``touch``, also record use at
        that time and move the key's schedule to that time if it was later (or absent), so
        the renewer looks at a returning user at once. ``fresh`` bypasses any local cache
        (before a refresh, which must start from the newest refresh token)."""

    @abstractmethod
    async def put(
        self, key: str, record: TokenRecord, *, due: float | None = None, used: float | None = None
    ) -> TokenRecord:
        """Store ``record`` unconditionally with a new version; return what was stored.
        ``used`` records use at that time (a login is a use)."""

    @abstractmethod
    async def replace(
        self, key: str, old: TokenRecord, new: TokenRecord, *, due: float | None = None
    ) -> TokenRecord | None:
        """Store ``new`` with a new version only if the stored record still has
        ``old.version``. Returns what was stored, or ``None``."""

    @abstractmethod
    async def delete(self, key: str, old: TokenRecord | None = None) -> bool:
        """Remove ``key`` and its schedule (only if still at ``old.version`` when given)."""

    @abstractmethod
    async def last_used(self, key: str) -> float | None:
        """When ``key`` was last touched, if known."""

    @abstractmethod
    async def reschedule(self, key: str, due: float | None) -> None:
        """Renew ``key`` at ``due``; ``None`` takes it off the schedule."""

    @abstractmethod
    async def due_keys(self, now: float, limit: int) -> list[str]:
        """Up to ``limit`` keys due at ``now``, earliest first. A shared store may return a key
        again until it is rescheduled; the in-memory store hands each out once."""

    @abstractmethod
    async def next_due(self) -> float | None:
        """The earliest due time on the schedule, if any."""

    @abstractmethod
    async def claim(self, key: str, ttl: float, owner: str | None = None) -> str | None:
        """Take the right to refresh ``key`` for ``ttl`` seconds; ``None`` if another holds it.

        ``owner`` names the caller (one token manager in one process). A claim the same owner
        already holds, left behind when its release could not reach the store, is taken again
        (for a new ``ttl``) rather than waited out."""

    @abstractmethod
    async def release(self, key: str, claim: str) -> None:
        """Give up a claim (only the holder's own claim is removed)."""

    @abstractmethod
    async def add_pending(self, state: str, pending: PendingLogin, ttl: float) -> None:
        """Remember a started login for ``ttl`` seconds."""

    @abstractmethod
    async def pop_pending(self, state: str) -> PendingLogin | None:
        """Take a started login out (single use); ``None`` if unknown or expired."""
