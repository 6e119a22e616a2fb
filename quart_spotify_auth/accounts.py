"""Spotify's accounts protocol, with no web framework in it.

Plain async code taking plain values: the authorize URL, PKCE, the code exchange, the refresh
and the client-credentials grant, with Spotify's error replies mapped to the exception family
and transient faults retried. The Quart extension and the Flask shim sit on top of it.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import logging
import math
import random
import secrets
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import httpx

from .errors import (
    InvalidCallback,
    InvalidClient,
    ReauthorizationRequired,
    SpotifyAuthError,
    SpotifyBadResponse,
    SpotifyUnavailable,
)
from .tokens import TokenRecord

__all__ = [
    "KNOWN_SCOPES",
    "REMOVED_SCOPES",
    "AccountsClient",
    "AccountsConfig",
    "code_challenge",
    "new_code_verifier",
    "new_state",
    "parse_scopes",
]

logger = logging.getLogger("quart_spotify_auth")

#: Scope names Spotify documents (developer.spotify.com, concepts/scopes).
KNOWN_SCOPES = frozenset(
    {
        "ugc-image-upload",
        "user-read-playback-state",
        "user-modify-playback-state",
        "user-read-currently-playing",
        "app-remote-control",
        "streaming",
        "playlist-read-private",
        "playlist-read-collaborative",
        "playlist-modify-private",
        "playlist-modify-public",
        "user-follow-modify",
        "user-follow-read",
        "user-read-playback-position",
        "user-top-read",
        "user-read-recently-played",
        "user-library-modify",
        "user-library-read",
        "user-read-email",
        "user-read-private",
        "user-soa-link",
        "user-soa-unlink",
        "soa-manage-entitlements",
        "soa-manage-partner",
        "soa-create-partner",
    }
)

#: Scopes Spotify dropped: asking for one gets its own "Illegal scope" page.
REMOVED_SCOPES = {
    "user-read-birthdate": "Spotify removed it; drop it (the birth date is no longer available)",
}

Sleep = Callable[[float], Awaitable[None]]


def new_state() -> str:
    """A fresh random ``state`` value: 256 bits, URL-safe."""
    return secrets.token_urlsafe(32)


def new_code_verifier() -> str:
    """A PKCE verifier: 86 characters from the unreserved alphabet (43-128 allowed)."""
    return secrets.token_urlsafe(64)


def code_challenge(verifier: str) -> str:
    """The S256 challenge of ``verifier``: base64url of its SHA-256, without padding."""
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def parse_scopes(value: str | Iterable[str] | None) -> tuple[str, ...]:
    """Scope names from a space- (or comma-) separated string or an iterable, de-duplicated,
    in the given order."""
    if value is None:
        return ()
    items = value.replace(",", " ").split() if isinstance(value, str) else list(value)
    return tuple(dict.fromkeys(item.strip() for item in items if item.strip()))


@dataclass(frozen=True, slots=True)
class AccountsConfig:
    """Settings of the accounts client. ``client_secret=None`` means a public (PKCE) client."""

    client_id: str
    client_secret: str | None = None
    accounts_url: str = "https://accounts.spotify.com"
    #: Extra attempts after the first for network errors, 5xx and unreadable replies.
    retries: int = 2
    #: First backoff delay in seconds; doubles each attempt, with full jitter.
    backoff: float = 0.2
    #: Longest ``Retry-After`` (seconds) a caller on the request path waits out.
    retry_after_cap: float = 5.0

    def __repr__(self) -> str:
        secret = "None" if self.client_secret is None else "'***'"
        return (
            f"AccountsConfig(client_id={self.client_id!r}, client_secret={secret}, "
            f"accounts_url={self.accounts_url!r})"
        )

    @property
    def is_public(self) -> bool:
        return self.client_secret is None


class AccountsClient:
    """Talks to ``/authorize`` and ``/api/token`` for one app.

    ``http`` is the app's pooled client, shared; this class never closes it. It may be set
    after construction (the extension opens it when the app starts serving).
    """

    def __init__(
        self,
        config: AccountsConfig,
        http: httpx.AsyncClient | None,
        *,
        clock: Callable[[], float] = time.time,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self.config = config
        self.http = http
        self.clock = clock
        self._sleep = sleep
        self._token_url = config.accounts_url.rstrip("/") + "/api/token"
        pair = f"{config.client_id}:{config.client_secret or ''}".encode()
        self._basic = "Basic " + base64.b64encode(pair).decode("ascii")

    def __repr__(self) -> str:
        return f"AccountsClient({self.config!r})"

    def authorize_url(
        self,
        *,
        redirect_uri: str,
        state: str,
        scopes: Iterable[str] = (),
        challenge: str | None = None,
        show_dialog: bool = False,
    ) -> str:
        """The URL to send the browser to (no trailing slash on ``/authorize``)."""
        params = {
            "client_id": self.config.client_id,
            "response_type": "code",
            "redirect_uri": redirect_uri,
            "state": state,
        }
        scope = " ".join(scopes)
        if scope:
            params["scope"] = scope
        if challenge is not None:
            params["code_challenge_method"] = "S256"
            params["code_challenge"] = challenge
        if show_dialog:
            params["show_dialog"] = "true"
        return f"{self.config.accounts_url.rstrip('/')}/authorize?{urlencode(params)}"

    async def exchange_code(
        self, code: str, *, redirect_uri: str, code_verifier: str | None
    ) -> TokenRecord:
        """Trade an authorization code for the user's tokens (one attempt per fault policy;
        a rejected code is :class:`InvalidCallback`)."""
        data = {"grant_type": "authorization_code", "code": code, "redirect_uri": redirect_uri}
        if code_verifier is not None:
            data["code_verifier"] = code_verifier
        body = await self._token_request(data, max_wait=None, rejected=_code_rejected)
        now = self.clock()
        return _record(body, now=now, authorized_at=now)

    async def refresh(self, record: TokenRecord, *, max_wait: float | None = None) -> TokenRecord:
        """Renew ``record``. Returns the next record (old refresh token kept when Spotify sends
        none). ``invalid_grant`` raises :class:`ReauthorizationRequired` and is never retried.
        ``max_wait`` is the longest ``Retry-After`` to wait out (default: the configured cap;
        background renewal passes the time left on the token)."""
        if record.refresh_token is None:
            raise ReauthorizationRequired()
        data = {"grant_type": "refresh_token", "refresh_token": record.refresh_token}
        body = await self._token_request(data, max_wait=max_wait, rejected=_refresh_rejected)
        return record.renewed(_record(body, now=self.clock(), authorized_at=record.authorized_at))

    async def client_credentials(self, *, max_wait: float | None = None) -> TokenRecord:
        """An app-only token for catalogue calls (needs a client secret)."""
        if self.config.is_public:
            raise InvalidClient(
                "The client-credentials grant needs SPOTIFY_CLIENT_SECRET; a public (PKCE) "
                "client cannot get an app token."
            )
        data = {"grant_type": "client_credentials"}
        body = await self._token_request(data, max_wait=max_wait, rejected=_app_rejected)
        now = self.clock()
        return _record(body, now=now, authorized_at=now)

    async def _token_request(
        self,
        data: dict[str, str],
        *,
        max_wait: float | None,
        rejected: Callable[[str, str], SpotifyAuthError],
    ) -> dict[str, Any]:
        headers: dict[str, str] = {}
        if self.config.client_secret is None:
            data = {**data, "client_id": self.config.client_id}
        else:
            headers["Authorization"] = self._basic
        if self.http is None:
            raise RuntimeError("AccountsClient.http is not set: the app has not started serving.")
        if max_wait is None:
            max_wait = self.config.retry_after_cap
        attempts = self.config.retries + 1
        failure: SpotifyAuthError = SpotifyUnavailable()
        attempt = 0
        while attempt < attempts:
            if attempt:
                await self._sleep(backoff_delay(self.config.backoff, attempt))
            attempt += 1
            try:
                reply = await self.http.post(self._token_url, data=data, headers=headers)
            except httpx.TransportError as exc:
                logger.warning("Spotify token request failed: %s", type(exc).__name__)
                failure = SpotifyUnavailable(
                    f"Spotify's accounts service could not be reached ({type(exc).__name__}). "
                    "Try again shortly."
                )
                continue
            if reply.status_code == 429:
                wait = retry_after_seconds(reply)
                if wait <= max_wait and attempt < attempts:
                    logger.warning("Spotify asked to wait %s s (429)", wait)
                    await self._sleep(wait)
                    continue
                raise SpotifyUnavailable(
                    "Spotify is rate-limiting this app (429). Try again later.",
                    retry_after=int(wait),
                )
            if reply.status_code >= 500:
                logger.warning("Spotify token endpoint answered %s", reply.status_code)
                failure = SpotifyUnavailable(
                    f"Spotify's accounts service failed (HTTP {reply.status_code}). "
                    "Try again shortly."
                )
                continue
            try:
                body = reply.json()
            except ValueError:
                body = None
            if not isinstance(body, dict):
                logger.warning("Spotify token endpoint sent an unreadable reply")
                failure = SpotifyBadResponse(
                    f"Spotify's accounts service sent an unreadable reply (HTTP "
                    f"{reply.status_code}, {reply.headers.get('content-type', 'no type')})."
                )
                continue
            if reply.status_code == 200:
                return body
            raise _error_for(body, rejected)
        raise failure


def backoff_delay(base: float, attempt: int) -> float:
    """Exponential backoff with full jitter: up to ``base * 2**attempt`` seconds."""
    return float(base * 2**attempt * random.random())  # noqa: S311 - jitter, not a secret


#: Longest lifetime or wait taken from Spotify's numbers; anything longer is clamped.
MAX_SECONDS = 86400.0


def retry_after_seconds(reply: httpx.Response) -> float:
    """Seconds to wait from a 429's ``Retry-After`` (1 when absent or unreadable, clamped to
    ``MAX_SECONDS``)."""
    try:
        wait = float(reply.headers.get("retry-after", "1"))
    except ValueError:
        return 1.0
    return min(max(wait, 0.0), MAX_SECONDS) if not math.isnan(wait) else 1.0


def _error_for(
    body: dict[str, Any], rejected: Callable[[str, str], SpotifyAuthError]
) -> SpotifyAuthError:
    error = str(body.get("error", "unknown_error"))
    description = str(body.get("error_description") or "no description")
    logger.warning("Spotify token endpoint refused: %s (%s)", error, description)
    if error == "invalid_client":
        return InvalidClient(
            f"Spotify rejected this app's client credentials (invalid_client: {description}). "
            "Check SPOTIFY_CLIENT_ID and SPOTIFY_CLIENT_SECRET against the Spotify developer "
            "dashboard."
        )
    return rejected(error, description)


def _code_rejected(error: str, description: str) -> SpotifyAuthError:
    return InvalidCallback(
        f"Spotify rejected the authorization code ({error}: {description}). Codes are single "
        "use and expire within minutes, and the redirect URI must match the one used to log "
        "in. Start the login again."
    )


def _refresh_rejected(error: str, description: str) -> SpotifyAuthError:
    if error == "invalid_grant":
        return ReauthorizationRequired()
    return SpotifyBadResponse(f"Spotify refused to renew the token ({error}: {description}).")


def _app_rejected(error: str, description: str) -> SpotifyAuthError:
    return SpotifyBadResponse(f"Spotify refused an app token ({error}: {description}).")


def _finite(number: float) -> bool:
    try:
        return math.isfinite(number)
    except OverflowError:  # an integer too large for a float
        return False


def _record(body: dict[str, Any], *, now: float, authorized_at: float) -> TokenRecord:
    access = body.get("access_token")
    expires_in = body.get("expires_in")
    token_type = body.get("token_type", "Bearer")
    scope = body.get("scope") or ""
    refresh = body.get("refresh_token")
    if (
        not isinstance(access, str)
        or not access
        or isinstance(expires_in, bool)
        or not isinstance(expires_in, int | float)
        or not _finite(expires_in)
        or expires_in <= 0
        or not isinstance(token_type, str)
        or token_type.lower() != "bearer"
        or not isinstance(scope, str)
        or not (refresh is None or isinstance(refresh, str))
    ):
        raise SpotifyBadResponse("Spotify's token reply is missing fields or has the wrong types.")
    return TokenRecord(
        access_token=access,
        refresh_token=refresh or None,
        expires_at=now + min(float(expires_in), MAX_SECONDS),
        issued_at=now,
        scopes=frozenset(scope.split()),
        authorized_at=authorized_at,
    )
