"""Token stores: where each user's tokens live, server-side, and the schedule of their renewals.

:class:`TokenStore` is the contract (:mod:`.base`). :func:`open_store` builds the store
``SPOTIFY_TOKEN_STORE`` names: by default :class:`SQLTokenStore` on a SQLite file in the app's
instance folder (every worker of one host shares it); ``memory`` (one process, nothing kept
across a restart); a PostgreSQL or Redis URL (many hosts).
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from ..errors import ConfigurationError
from .base import TokenStore
from .memory import MemoryTokenStore

if TYPE_CHECKING:
    from ..config import Settings
    from .redis import RedisTokenStore
    from .sql import SQLTokenStore

__all__ = [
    "SQLITE_FILE",
    "MemoryTokenStore",
    "RedisTokenStore",
    "SQLTokenStore",
    "TokenStore",
    "open_store",
    "sqlite_url",
]

#: The default store's file, in the app's instance folder.
SQLITE_FILE = "quart_spotify_auth.sqlite3"


def __getattr__(name: str) -> object:
    # imported on demand: redis is an optional extra, SQLAlchemy is only loaded when used
    if name == "RedisTokenStore":
        from .redis import RedisTokenStore

        return RedisTokenStore
    if name == "SQLTokenStore":
        from .sql import SQLTokenStore

        return SQLTokenStore
    raise AttributeError(name)


def open_store(
    settings: Settings, clock: Callable[[], float] = time.time, instance_path: str = "instance"
) -> TokenStore:
    """The store ``SPOTIFY_TOKEN_STORE`` names: by default a SQLite file in the app's instance
    folder; ``memory``; a SQLite, PostgreSQL or Redis URL. A relative SQLite path
    (``sqlite:///tokens.sqlite3``) is in the instance folder, as Flask-SQLAlchemy has it: the
    same file whatever folder each worker is started from."""
    url = sqlite_url(settings.token_store or "sqlite:///" + SQLITE_FILE, instance_path)
    if url == "memory":
        return MemoryTokenStore()
    prefix, keys = settings.token_store_prefix, settings.token_encryption_keys
    migrating, idle = settings.token_encryption_migrating, settings.token_idle_ttl
    if url.startswith(("sqlite", "postgresql")):
        from .sql import SQLTokenStore

        if url.startswith("postgresql"):
            _need("asyncpg", "postgresql")
        table_prefix = re.sub(r"\W", "_", prefix)
        return SQLTokenStore(
            url,
            prefix=table_prefix,
            idle_ttl=idle,
            encryption_keys=keys,
            migrating=migrating,
            clock=clock,
        )
    _need("redis", "redis")
    from .redis import RedisTokenStore

    return RedisTokenStore(
        url,
        prefix=prefix,
        idle_ttl=idle,
        encryption_keys=keys,
        migrating=migrating,
        max_connections=settings.redis_max_connections,
        timeout=min(settings.http_timeout, 5.0),
        clock=clock,
    )


def sqlite_url(url: str, instance_path: str) -> str:
    """``url`` with a relative SQLite path made absolute in ``instance_path`` (other URLs,
    and ``sqlite:////absolute/path``, as they are)."""
    scheme = "sqlite:///"
    if not url.startswith(scheme) or os.path.isabs(url[len(scheme) :]):
        return url
    return scheme + os.path.join(os.path.abspath(instance_path), url[len(scheme) :])


def _need(module: str, extra: str) -> None:
    try:
        __import__(module)
    except ImportError:
        raise ConfigurationError(
            f"SPOTIFY_TOKEN_STORE needs {module}, which is not installed: "
            f"pip install 'quart-spotify-auth[{extra}]'."
        ) from None
