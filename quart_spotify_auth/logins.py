"""The stored logins as a whole, for admins and jobs: :class:`Login` (what an admin may see,
never a token), listing them, forgetting idle ones, and moving them to another store."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from .grants import APP_KEY
from .stores import TokenStore

__all__ = ["Login", "Moved", "logins", "move"]


@dataclass(frozen=True, slots=True)
class Login:
    """One stored login as an admin may see it: never a token. Times are Unix epoch seconds;
    ``None`` where the store cannot read the record (``readable`` is then ``False``)."""

    #: The store key: ``user:<id>`` for a user keyed by the identity hook, else ``browser:...``.
    key: str
    #: The identity hook's id for the user; ``None`` for a browser's login.
    user_id: str | None
    scopes: frozenset[str]
    #: When the user gave consent (Spotify stops renewing six months later).
    authorized_at: float | None
    #: When the current access token expires.
    expires_at: float | None
    #: When a request last used it, if known.
    last_used: float | None
    readable: bool = True

    def as_dict(self) -> dict[str, Any]:
        """As JSON can hold it (scopes sorted)."""
        return {
            "key": self.key,
            "user_id": self.user_id,
            "scopes": sorted(self.scopes),
            "authorized_at": self.authorized_at,
            "expires_at": self.expires_at,
            "last_used": self.last_used,
            "readable": self.readable,
        }


def user_id_of(key: str) -> str | None:
    """The identity hook's id a store key was made from (``Core.key``), if any."""
    if key.startswith("user:"):
        return key[5:]
    try:
        return (
            bytes.fromhex(key[5:]).decode("utf-8", "surrogatepass") if key[:5] == "user!" else None
        )
    except ValueError:  # not a key Core.key made
        return None


async def logins(store: TokenStore) -> AsyncIterator[Login]:
    """Every user's login in ``store`` (not the app's own token), each once."""
    async for page in store.stored():
        for row in page:
            if row.key == APP_KEY:
                continue
            record = row.record
            yield Login(
                row.key,
                user_id_of(row.key),
                record.scopes if record else frozenset(),
                record.authorized_at if record else None,
                record.expires_at if record else None,
                row.used,
                record is not None,
            )


@dataclass(slots=True)
class Moved:
    """What :func:`move` did: logins copied, found as new or newer in the target, and not
    readable with the configured keys (left behind); and the seconds it took."""

    copied: int = 0
    current: int = 0
    unreadable: int = 0
    seconds: float = 0.0


async def move(source: TokenStore, target: TokenStore, *, dry_run: bool = False) -> Moved:
    """Copy every login in ``source`` to ``target`` as it is stored (blob, version, schedule,
    use), over no newer version: a second run copies nothing. ``dry_run``: only count."""
    moved, started = Moved(), time.perf_counter()
    async for page in source.stored():
        readable = [row for row in page if row.record is not None]
        moved.unreadable += len(page) - len(readable)
        copied = 0 if dry_run else await target.adopt(readable)
        for row in readable if dry_run else ():
            found = await target.get(row.key)
            copied += found is None or found.version < row.version
        moved.copied += copied
        moved.current += len(readable) - copied
    moved.seconds = time.perf_counter() - started
    return moved
