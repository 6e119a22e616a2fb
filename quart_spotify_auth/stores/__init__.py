"""Token stores, where each user's tokens live, server-side, with their renewals' schedule:
:class:`TokenStore` is the contract (:mod:`.base`); :func:`open_store` opens the one configured."""

from __future__ import annotations

import importlib
import os
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ..errors import ConfigurationError
from .base import TokenStore
from .memory import MemoryTokenStore

if TYPE_CHECKING:
    from ..config import Settings
    from .redis import RedisTokenStore
    from .sql import SQLTokenStore

__all__ = [
    "SQLITE_FILE",
    "STORE_SCHEMES",
    "MemoryTokenStore",
    "RedisTokenStore",
    "SQLTokenStore",
    "TokenStore",
    "open_store",
]

#: The default store's file, in the app's instance folder.
SQLITE_FILE = "quart_spotify_auth.sqlite3"

#: What ``SPOTIFY_TOKEN_STORE`` may name, by how it starts, and the kind of store it opens.
STORE_SCHEMES = {
    "memory": "memory",
    "sqlite:///": "sqlite",
    "postgresql://": "postgresql",
    "postgresql+asyncpg://": "postgresql",
    "redis://": "redis",
    "rediss://": "redis",
    "unix://": "redis",
}


def __getattr__(name: str) -> object:  # redis is an optional extra; SQLAlchemy loads when used
    modules = {"RedisTokenStore": ".redis", "SQLTokenStore": ".sql"}
    if name not in modules:
        raise AttributeError(name)
    return getattr(importlib.import_module(modules[name], __name__), name)


def open_store(
    settings: Settings, clock: Callable[[], float] = time.time, instance_path: str = "instance"
) -> TokenStore:
    """The store ``SPOTIFY_TOKEN_STORE`` names (:data:`STORE_SCHEMES`), given the settings as
    they are; by default a SQLite file in the instance folder, shared by one host's workers. A
    relative SQLite path is in the instance folder too, as in Flask-SQLAlchemy."""
    url = settings.token_store or "sqlite:///" + SQLITE_FILE
    path = url.removeprefix("sqlite:///")
    if path != url and not os.path.isabs(path):
        url = "sqlite:///" + os.path.join(os.path.abspath(instance_path), path)
    kind = next((kind for scheme, kind in STORE_SCHEMES.items() if url.startswith(scheme)), "")
    if kind == "memory":
        return MemoryTokenStore()
    common: dict[str, Any] = {
        "prefix": settings.token_store_prefix,
        "idle_ttl": settings.token_idle_ttl,
        "encryption_keys": settings.token_encryption_keys,
        "migrating": settings.token_encryption_migrating,
        "clock": clock,
    }
    if kind in ("sqlite", "postgresql"):
        if kind == "postgresql":
            _need("asyncpg", "postgresql")
        from .sql import SQLTokenStore

        return SQLTokenStore(url, **common)
    _need("redis", "redis")
    from .redis import RedisTokenStore

    timeout = min(settings.http_timeout, 5.0)
    return RedisTokenStore(
        url, max_connections=settings.redis_max_connections, timeout=timeout, **common
    )


def _need(module: str, extra: str) -> None:
    try:
        __import__(module)
    except ImportError:
        raise ConfigurationError(
            f"SPOTIFY_TOKEN_STORE needs {module}, which is not installed: "
            f"pip install 'quart-spotify-auth[{extra}]'."
        ) from None
