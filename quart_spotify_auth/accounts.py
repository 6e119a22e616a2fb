"""Spotify's accounts protocol, framework-free: the authorize URL, PKCE, the code exchange,
refresh and client credentials, Spotify's errors mapped to the exception family."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import sys
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, TypeGuard
from urllib.parse import urlencode

from .config import Settings
from .errors import (
    InvalidCallback,
    InvalidClient,
    ReauthorizationRequired,
    SpotifyAuthError,
    SpotifyBadResponse,
    SpotifyUnavailable,
)
from .http import choose
from .retry import MAX_SECONDS, Retry, retry_after, whole_seconds
from .tasks import PerLoop
from .tokens import TokenRecord

if TYPE_CHECKING:
    import httpx

__all__ = ["EXCHANGES", "POOL_CONNECTIONS", "AccountsClient", "code_challenge"]

from .signals import logger

#: Each token request must be answered within this many ``SPOTIFY_HTTP_TIMEOUT``s in all.
DEADLINE_FACTOR = 3

#: Connections in an app's HTTP pool. Code exchanges may hold at most ``EXCHANGES`` of them at
#: once, so a flood of login callbacks cannot starve refreshes and app tokens of the rest.
POOL_CONNECTIONS = 100
EXCHANGES = POOL_CONNECTIONS // 2


def code_challenge(verifier: str) -> str:
    """The S256 challenge of ``verifier``: base64url of its SHA-256, without padding."""
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


class AccountsClient:
    """Talks to ``/authorize`` and ``/api/token`` for one app, through its pooled ``http``
    client (never closed here)."""

    def __init__(
        self,
        settings: Settings,
        http: httpx.AsyncClient,
        *,
        clock: Callable[[], float] = time.time,
        retry: Retry | None = None,
    ) -> None:
        self.settings = settings
        self.http = http
        self.clock = clock
        self.retry = retry or settings.retry
        self._token_url = settings.accounts_url + "/api/token"
        secret, self._lib = settings.client_secret, (lib := choose(None, http))  # its library
        #: HTTP Basic for a confidential client; a public one sends its id in the body.
        self._auth = lib.Auth() if secret is None else lib.BasicAuth(settings.client_id, secret)
        #: Code exchanges in flight at once, and the longest a callback waits for one of them
        #: to end before a :class:`SpotifyUnavailable`.
        self.exchanges, self.exchange_wait = EXCHANGES, settings.http_timeout
        #: The bound on code exchanges, one per event loop (the Flask shim's is its thread's).
        self._slots = PerLoop(lambda: asyncio.Semaphore(self.exchanges))

    def __repr__(self) -> str:
        return f"AccountsClient({self.settings!r})"

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
            "client_id": self.settings.client_id,
            "response_type": "code",
            "redirect_uri": redirect_uri,
            "state": state,
        }
        scope = " ".join(scopes)
        if scope:
            params["scope"] = scope
        if challenge is not None:
            params |= {"code_challenge_method": "S256", "code_challenge": challenge}
        if show_dialog:
            params["show_dialog"] = "true"
        return f"{self.settings.accounts_url}/authorize?{urlencode(params)}"

    async def exchange_code(
        self, code: str, *, redirect_uri: str, code_verifier: str | None
    ) -> TokenRecord:
        """Trade an authorization code for the user's tokens; a rejected code is
        :class:`InvalidCallback`."""
        data = {"grant_type": "authorization_code", "code": code, "redirect_uri": redirect_uri}
        if code_verifier is not None:
            data["code_verifier"] = code_verifier
        slots = self._slots.get()
        try:
            async with asyncio.timeout(self.exchange_wait):
                await slots.acquire()
        except TimeoutError:
            raise SpotifyUnavailable(
                "Too many logins in progress; start the login again shortly."
            ) from None
        try:
            body = await self._token_request(data, rejected=_code_rejected, resend=False)
        finally:
            slots.release()
        return _record(body, now=self.clock())

    async def refresh(self, record: TokenRecord, *, max_wait: float | None = None) -> TokenRecord:
        """Renew ``record``; ``invalid_grant`` is :class:`ReauthorizationRequired`, never retried.
        ``max_wait`` is the longest ``Retry-After`` to wait out (default: the configured cap)."""
        if record.refresh_token is None:
            raise ReauthorizationRequired()
        data = {"grant_type": "refresh_token", "refresh_token": record.refresh_token}
        body = await self._token_request(data, max_wait=max_wait, rejected=_refresh_rejected)
        return record.renewed(_record(body, now=self.clock(), authorized_at=record.authorized_at))

    async def client_credentials(self, *, max_wait: float | None = None) -> TokenRecord:
        """An app-only token for catalogue calls (needs a client secret)."""
        if self.settings.client_secret is None:
            raise InvalidClient(
                "The client-credentials grant needs SPOTIFY_CLIENT_SECRET; a public (PKCE) "
                "client cannot get an app token."
            )
        data = {"grant_type": "client_credentials"}
        body = await self._token_request(data, max_wait=max_wait, rejected=_app_rejected)
        return _record(body, now=self.clock())

    async def _token_request(
        self,
        data: dict[str, str],
        *,
        max_wait: float | None = None,
        rejected: Callable[[str, str, bool], SpotifyAuthError],
        resend: bool = True,
    ) -> dict[str, Any]:
        """POST a grant to ``/api/token`` and return its JSON reply, retrying transient
        faults; one that may have reached Spotify is sent again only when ``resend`` (never a
        code, which Spotify accepts once). Each attempt has a deadline of its own."""
        if self.settings.client_secret is None:
            data = {**data, "client_id": self.settings.client_id}
        attempts = self.retry.attempts(max_wait)
        lost = False  # a reply that may have done its work was lost, and the grant sent again
        # What to do about a failure: a code is spent once sent, so a login starts again.
        again = "Try again" if resend else "Start the login again"
        while True:
            try:
                async with asyncio.timeout(self.settings.http_timeout * DEADLINE_FACTOR):
                    reply = await self.http.post(self._token_url, data=data, auth=self._auth)
            except (self._lib.TransportError, TimeoutError) as exc:
                name, lib = type(exc).__name__, self._lib
                logger.warning("Spotify token request failed: %s", name)
                unsent = isinstance(exc, lib.ConnectError | lib.ConnectTimeout | lib.PoolTimeout)
                if not unsent and not resend:
                    raise SpotifyUnavailable(
                        f"Spotify's accounts service did not answer ({name}) after receiving "
                        "the login, which cannot be sent twice. Start the login again."
                    ) from None
                if await attempts.backoff():
                    lost = lost or not unsent
                    continue
                failed = "could not be reached" if unsent else "did not answer"
                raise SpotifyUnavailable(
                    f"Spotify's accounts service {failed} ({name}). {again} shortly."
                ) from None
            if reply.status_code == 429:  # refused unread: even a code may be sent again
                if await attempts.retry_after(reply):
                    logger.warning("Spotify asked to wait %s s (429)", attempts.wait)
                    continue
                raise SpotifyUnavailable(
                    f"Spotify is rate-limiting this app (429). {again} later.",
                    retry_after=whole_seconds(attempts.wait or retry_after(reply)),
                )
            body = _json_object(reply)
            if reply.status_code >= 500 or body is None:
                logger.warning("Spotify token endpoint answered %s", reply.status_code)
                if resend and await attempts.backoff():
                    lost = True
                    continue
                raise _unreadable(reply, again)
            if reply.status_code == 200:
                return body
            error = _said(body.get("error"), "unknown_error")
            description = _said(body.get("error_description"), "no description")
            logger.warning("Spotify token endpoint refused: %s (%s)", error, description)
            if error == "invalid_client":
                raise InvalidClient(
                    "Spotify rejected this app's client credentials (invalid_client: "
                    f"{description}). Check SPOTIFY_CLIENT_ID and SPOTIFY_CLIENT_SECRET against "
                    "the Spotify developer dashboard."
                )
            raise rejected(error, description, lost)


#: The most of Spotify's own words (an error's description) a page or a log line repeats.
SAID_LIMIT = 200


def _said(value: object, missing: str) -> str:
    """Spotify's ``error`` or ``error_description`` as a page and a log line may repeat it:
    text only, one line (a newline would forge a log line), at most ``SAID_LIMIT`` characters."""
    if not isinstance(value, str) or not value.strip():
        return missing
    text = "".join(c if c.isprintable() else " " for c in value.strip())
    return text if len(text) <= SAID_LIMIT else text[: SAID_LIMIT - 1] + "…"


#: The longest token taken from Spotify (its own are a few hundred characters).
TOKEN_LIMIT = 4096


def _token_text(value: object) -> TypeGuard[str]:
    """Whether ``value`` can be a token: text that can go in an ``Authorization`` header
    (printable ASCII, no space), of a sane length."""
    return (
        isinstance(value, str)
        and 0 < len(value) <= TOKEN_LIMIT
        and value.isascii()
        and value.isprintable()
        and " " not in value
    )


def _json_object(reply: httpx.Response) -> dict[str, Any] | None:
    try:
        body = reply.json()
    except ValueError:
        return None
    return body if isinstance(body, dict) else None


def _unreadable(reply: httpx.Response, again: str) -> SpotifyAuthError:
    if reply.status_code >= 500:
        return SpotifyUnavailable(
            f"Spotify's accounts service failed (HTTP {reply.status_code}). {again} shortly."
        )
    return SpotifyBadResponse(
        f"Spotify's accounts service sent an unreadable reply (HTTP {reply.status_code}, "
        f"{reply.headers.get('content-type', 'no type')}). {again} shortly."
    )


def _code_rejected(error: str, description: str, lost: bool) -> SpotifyAuthError:
    return InvalidCallback(
        f"Spotify rejected the authorization code ({error}: {description}). Codes are single "
        "use and expire within minutes, and the redirect URI must match the one used to log "
        "in. Start the login again."
    )


def _refresh_rejected(error: str, description: str, lost: bool) -> SpotifyAuthError:
    if error == "invalid_grant" and lost:  # maybe about the refresh token the lost reply rotated
        return SpotifyUnavailable(
            "Spotify refused a renewal sent again after its first reply was lost; the login "
            "is kept and renewed later. Try again shortly."
        )
    if error == "invalid_grant":
        return ReauthorizationRequired()
    return SpotifyBadResponse(f"Spotify refused to renew the token ({error}: {description}).")


def _app_rejected(error: str, description: str, lost: bool) -> SpotifyAuthError:
    return SpotifyBadResponse(f"Spotify refused an app token ({error}: {description}).")


def _record(body: dict[str, Any], *, now: float, authorized_at: float | None = None) -> TokenRecord:
    access = body.get("access_token")
    expires_in = body.get("expires_in")
    token_type = body.get("token_type", "Bearer")
    scope = body.get("scope") or ""
    refresh = body.get("refresh_token")
    if (
        not _token_text(access)
        or isinstance(expires_in, bool)
        or not isinstance(expires_in, int | float)
        or not 0 < expires_in <= sys.float_info.max  # not NaN, inf, nor an int beyond floats
        or not isinstance(token_type, str)
        or token_type.lower() != "bearer"
        or not isinstance(scope, str)
        or not (refresh is None or refresh == "" or _token_text(refresh))
    ):
        raise SpotifyBadResponse(
            "Spotify's token reply is missing fields, or has one of the wrong type or form."
        )
    return TokenRecord(
        access_token=access,
        refresh_token=refresh or None,
        expires_at=now + min(float(expires_in), MAX_SECONDS),
        issued_at=now,
        scopes=frozenset(scope.split()),
        authorized_at=now if authorized_at is None else authorized_at,
    )
