"""Token values: the stored record and the :class:`AccessToken` handed to callers."""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import NamedTuple

__all__ = ["AccessToken", "PendingLogin", "TokenRecord"]

#: Spotify refresh tokens die this long after the user's original consent (2026 rule).
CONSENT_LIFETIME = 182 * 86400


class AccessToken(NamedTuple):
    """A user's access token at the time of the call.

    It unpacks into the four items Flask-Spotify-Auth returned, in the same order::

        access, header, scopes, expires_in = await spotify.get_access_token()

    Its ``repr`` hides the token so that it can be logged safely.
    """

    #: The bearer token for the Web API.
    access_token: str
    #: ``{"Authorization": "Bearer ..."}``, ready to pass as ``headers=``.
    authorization_header: dict[str, str]
    #: The scopes Spotify granted.
    scopes: frozenset[str]
    #: Whole seconds left before the token expires, at the time of the call.
    expires_in: int

    def __repr__(self) -> str:
        return (
            f"AccessToken(access_token='***', scopes={sorted(self.scopes)!r}, "
            f"expires_in={self.expires_in})"
        )


@dataclass(frozen=True, slots=True)
class TokenRecord:
    """What is stored for one user. Times are Unix epoch seconds.

    ``version`` grows by one with every write for the same login, so a store can refuse a
    write that would go backwards (a stale refresh overwriting a rotated refresh token).
    """

    access_token: str = field(repr=False)
    refresh_token: str | None = field(repr=False)
    expires_at: float
    issued_at: float
    scopes: frozenset[str]
    #: When the user gave consent; refreshing does not move it.
    authorized_at: float
    version: int = 1

    @property
    def lifetime(self) -> float:
        """Seconds from issue to expiry of the current access token."""
        return self.expires_at - self.issued_at

    @property
    def reauthorize_by(self) -> float:
        """When Spotify will stop accepting the refresh token (consent + six months)."""
        return self.authorized_at + CONSENT_LIFETIME

    def is_expired(self, now: float, margin: float = 0.0) -> bool:
        """True when the access token is expired, or will be within ``margin`` seconds.

        The margin is capped at half the token's lifetime, so tokens that live only a few
        seconds (as in tests) are not treated as always expired.
        """
        return now >= self.expires_at - min(margin, self.lifetime / 2)

    def renewed(self, new: TokenRecord) -> TokenRecord:
        """The record after a refresh answered ``new``: keeps the refresh token when Spotify
        sent none, keeps the consent time, and bumps the version."""
        return replace(
            new,
            refresh_token=new.refresh_token or self.refresh_token,
            scopes=new.scopes or self.scopes,  # a reply without "scope" keeps the grant
            authorized_at=self.authorized_at,
            version=self.version + 1,
        )

    def to_access_token(self, now: float) -> AccessToken:
        """The caller's view of this record at time ``now``."""
        return AccessToken(
            self.access_token,
            {"Authorization": f"Bearer {self.access_token}"},
            self.scopes,
            max(0, math.floor(self.expires_at - now)),
        )


@dataclass(frozen=True, slots=True)
class PendingLogin:
    """A login started by :meth:`SpotifyAuth.get_user` and not finished yet."""

    #: The PKCE verifier, or ``None`` when PKCE is off.
    code_verifier: str | None = field(repr=False)
    #: The redirect URI sent to ``/authorize`` (the exchange must repeat it).
    redirect_uri: str
    created_at: float
    #: Where to send the browser after the login (a same-site path), if the app asked.
    next_url: str | None = None
