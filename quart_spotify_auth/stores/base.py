"""The :class:`TokenStore` contract."""

from __future__ import annotations

from abc import ABC, abstractmethod

from ..tokens import PendingLogin, TokenRecord


class TokenStore(ABC):
    """Async storage of token records by key, and of pending logins by ``state``.

    Writes are versioned: :meth:`put` (a new login) always wins and stores the record with a
    version above any earlier one for the key; :meth:`replace` (a refresh) only lands if the
    stored version is still the one the refresh started from, so a refresh racing a login or a
    logout never resurrects or overwrites anything.
    """

    async def open(self) -> None:  # noqa: B027 - optional hook
        """Called when the app starts serving."""

    async def close(self) -> None:  # noqa: B027 - optional hook
        """Called when the app stops serving."""

    @abstractmethod
    async def get(self, key: str) -> TokenRecord | None:
        """The record stored under ``key``, or ``None``."""

    @abstractmethod
    async def put(self, key: str, record: TokenRecord) -> TokenRecord:
        """Store ``record`` unconditionally with the next version; return what was stored."""

    @abstractmethod
    async def replace(self, key: str, old: TokenRecord, new: TokenRecord) -> bool:
        """Store ``new`` only if the stored record still has ``old.version``. ``new.version``
        must be ``old.version + 1``. Returns whether it was stored."""

    @abstractmethod
    async def delete(self, key: str, old: TokenRecord | None = None) -> bool:
        """Remove ``key`` (only if still at ``old.version`` when ``old`` is given)."""

    @abstractmethod
    async def add_pending(self, state: str, pending: PendingLogin, ttl: float) -> None:
        """Remember a started login for ``ttl`` seconds."""

    @abstractmethod
    async def pop_pending(self, state: str) -> PendingLogin | None:
        """Take a started login out (single use); ``None`` if unknown or expired."""
