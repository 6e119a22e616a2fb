"""Token stores: where each user's tokens and the pending logins live, server-side.

:class:`TokenStore` is the contract; :class:`MemoryTokenStore` is the embedded default for one
process. Every method is async so a networked store (Redis) fits the same shape.
"""

from __future__ import annotations

from .base import TokenStore
from .memory import MemoryTokenStore

__all__ = ["MemoryTokenStore", "RedisTokenStore", "TokenStore"]


def __getattr__(name: str) -> object:
    if name == "RedisTokenStore":  # imported on demand: redis is an optional extra
        from .redis import RedisTokenStore

        return RedisTokenStore
    raise AttributeError(name)
