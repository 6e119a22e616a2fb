"""Token values (the stored record, the :class:`AccessToken` handed out) and
:class:`RenewalPolicy`: "when to renew" and "too late to hand out" are defined here, once."""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import NamedTuple

__all__ = [
    "ACCESS_MARGIN",
    "CONSENT_LIFETIME",
    "AccessToken",
    "Clock",
    "RenewalPolicy",
    "TokenRecord",
]

#: A source of the time, in Unix epoch seconds (``time.time``; a fake one in tests).
Clock = Callable[[], float]

#: Spotify refresh tokens die this long after the user's original consent (2026 rule).
CONSENT_LIFETIME = 182 * 86400

#: A token with less than this many seconds left (at most a tenth of its lifetime) is stale.
ACCESS_MARGIN = 5.0


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
    """What is stored for one user. Times are Unix epoch seconds. ``version`` is given by the
    store on every write, never reused for a key, so no write goes backwards."""

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

    def refresh_at(self, margin: float, jitter: float = 0.0) -> float:
        """``margin`` + ``jitter`` seconds before expiry, never before the lifetime's midpoint."""
        return max(self.issued_at + self.lifetime / 2, self.expires_at - margin - jitter)

    def stale(self, now: float) -> bool:
        """Too near expiry to hand out: its last tenth of life, at most :data:`ACCESS_MARGIN` s."""
        return now >= self.expires_at - min(ACCESS_MARGIN, self.lifetime / 10)

    def renewed(self, new: TokenRecord) -> TokenRecord:
        """The record after a refresh answered ``new``: the refresh token and scopes kept when
        Spotify sent none, and the consent time."""
        return replace(
            new,
            refresh_token=new.refresh_token or self.refresh_token,
            scopes=new.scopes or self.scopes,
            authorized_at=self.authorized_at,
            version=self.version,
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
class RenewalPolicy:
    """When the renewer looks at a record: ``margin`` seconds before expiry with up to 10%
    jitter; with background renewal off, when it would be forgotten unused."""

    margin: float
    auto_renew: bool
    idle_ttl: float

    def due(self, record: TokenRecord, renewable: bool, now: float) -> float | None:
        """When to look at ``record`` (one its grant can renew, or not); ``None``: never."""
        if not self.auto_renew:
            return now + self.idle_ttl
        if not renewable:
            return None
        return record.refresh_at(self.margin, random.uniform(0, self._max_jitter(record)))  # noqa: S311

    def earliest_due(self, record: TokenRecord) -> float:
        """The earliest time :meth:`due` can give ``record`` (with the most jitter)."""
        return record.refresh_at(self.margin, self._max_jitter(record))

    def _max_jitter(self, record: TokenRecord) -> float:
        return 0.1 * min(self.margin, record.lifetime)
