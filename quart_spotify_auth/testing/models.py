"""What the fake accounts service knows: users, apps, codes and tokens it issued."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

__all__ = ["FakeAuthorizeError", "FakeClient", "FakeUser", "OAuthError"]


@dataclass
class FakeUser:
    """A Spotify account known to the fake."""

    id: str
    display_name: str | None = None
    email: str | None = None
    product: str = "premium"
    country: str = "SE"
    account_id: str | None = None

    def __post_init__(self) -> None:
        if self.account_id is None:
            self.account_id = hashlib.sha256(f"fake-account:{self.id}".encode()).hexdigest()[:24]


@dataclass
class FakeClient:
    """A registered app. ``client_secret=None`` makes it a public (PKCE-only) client.

    ``allowlist`` (user ids) is only enforced on /v1/me when the fake runs in ``dev_mode``;
    ``None`` lets every user through.
    """

    client_id: str
    client_secret: str | None
    redirect_uris: list[str]
    allowlist: list[str] | None = None


class FakeAuthorizeError(Exception):
    """An /authorize request that Spotify answers with an error page instead of a redirect."""


@dataclass(slots=True)
class _Code:
    client_id: str
    redirect_uri: str
    user_id: str
    scopes: tuple[str, ...]
    challenge: str | None
    expires_at: float


@dataclass(slots=True)
class _Access:
    user_id: str | None
    client_id: str
    scopes: frozenset[str]
    expires_at: float


@dataclass(slots=True)
class _Refresh:
    user_id: str
    client_id: str
    scopes: tuple[str, ...]
    authorized_at: float
    pkce: bool
    alive: bool = True


@dataclass(slots=True)
class _AuthRequest:
    client: FakeClient
    redirect_uri: str
    scopes: tuple[str, ...]
    state: str | None
    challenge: str | None


class OAuthError(Exception):
    """A token request Spotify refuses: ``body`` is its JSON error reply (400)."""

    def __init__(self, error: str, description: str | None = None) -> None:
        super().__init__(error)
        self.body = {"error": error}
        if description is not None:
            self.body["error_description"] = description
