"""The fake accounts service's state and rules, without HTTP: registered apps and users,
consent, codes, and the three grants with Spotify's error strings (reference section 8).

:class:`~.fake.FakeSpotify` puts HTTP in front of it; tests can also call :meth:`decide` and
:meth:`token_for` directly.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, TypedDict
from urllib.parse import parse_qsl, urlencode, urlsplit

from ..scopes import KNOWN_SCOPES
from .models import (
    FakeAuthorizeError,
    FakeClient,
    FakeUser,
    OAuthError,
    _Access,
    _AuthRequest,
    _Code,
    _Refresh,
)

__all__ = [
    "SCOPES",
    "AccountsOptions",
    "FakeAccounts",
    "FakeAuthorizeError",
    "FakeClient",
    "FakeUser",
    "OAuthError",
]

#: Every scope Spotify accepts at /authorize (reference section 6).
SCOPES = KNOWN_SCOPES

_LOOPBACK = frozenset({"127.0.0.1", "::1"})


def _s256(verifier: str) -> str:
    digest = hashlib.sha256(verifier.encode()).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def _insecure(uri: str) -> bool:
    parts = urlsplit(uri)
    host = (parts.hostname or "").rstrip(".")
    if parts.scheme in ("http", "https") and (host == "localhost" or host.endswith(".localhost")):
        return True
    return parts.scheme == "http" and host not in _LOOPBACK


def _registered(uri: str, registered: Sequence[str]) -> bool:
    if uri in registered:
        return True
    parts = urlsplit(uri)
    if parts.scheme != "http" or parts.hostname not in _LOOPBACK:
        return False
    for candidate in registered:
        reg = urlsplit(candidate)
        if (
            reg.scheme == "http"
            and reg.hostname == parts.hostname
            and reg.port is None
            and (reg.path, reg.query, reg.fragment) == (parts.path, parts.query, parts.fragment)
        ):
            return True
    return False


def _with_query(uri: str, params: list[tuple[str, str]]) -> str:
    """Append ``params`` to ``uri``, keeping its existing query exactly as written."""
    base, hash_mark, fragment = uri.partition("#")
    separator = "&" if "?" in base else "?"
    if base.endswith(("?", "&")):
        separator = ""
    return f"{base}{separator}{urlencode(params)}{hash_mark}{fragment}"


def _parse_basic(header: str) -> tuple[str, str]:
    scheme, _, value = header.strip().partition(" ")
    if scheme.lower() != "basic":
        raise OAuthError("invalid_client")
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode()
    except ValueError:  # binascii.Error and UnicodeDecodeError are both ValueErrors
        raise OAuthError("invalid_client") from None
    client_id, colon, secret = decoded.partition(":")
    if not colon or not client_id:
        raise OAuthError("invalid_client")
    return client_id, secret


class AccountsOptions(TypedDict, total=False):
    """The keyword arguments of :class:`FakeAccounts` (and so of ``FakeSpotify``)."""

    clock: Callable[[], float] | None
    access_ttl: float
    code_ttl: float
    refresh_lifetime: float
    rotate_confidential: bool


class FakeAccounts:
    """Apps, users, consent and the grants of Spotify's accounts service, in memory.

    Switch attributes (``access_ttl``, ``code_ttl``, ``refresh_lifetime``,
    ``rotate_confidential``) can be changed at any time.
    """

    def __init__(
        self,
        *,
        clock: Callable[[], float] | None = None,
        access_ttl: float = 3600,
        code_ttl: float = 600,
        refresh_lifetime: float = 183 * 86400,
        rotate_confidential: bool = False,
    ) -> None:
        self.clock: Callable[[], float] = clock if clock is not None else time.time
        self.access_ttl = access_ttl
        self.code_ttl = code_ttl
        self.refresh_lifetime = refresh_lifetime
        self.rotate_confidential = rotate_confidential
        self.clients: dict[str, FakeClient] = {}
        self.users: dict[str, FakeUser] = {}
        self._codes: dict[str, _Code] = {}
        self._access: dict[str, _Access] = {}
        self._refresh: dict[str, _Refresh] = {}
        self._prune_at = 4096
        self._grants = {
            "authorization_code": self._grant_code,
            "refresh_token": self._grant_refresh,
            "client_credentials": self._grant_client_credentials,
        }

    def add_client(
        self,
        client_id: str,
        client_secret: str | None = None,
        redirect_uris: Sequence[str] = ("http://127.0.0.1:5000/callback/",),
    ) -> FakeClient:
        """Register an app; without a secret it is a public (PKCE-only) client."""
        client = FakeClient(client_id, client_secret, list(redirect_uris))
        self.clients[client_id] = client
        return client

    def add_user(self, id: str, **fields: Any) -> FakeUser:
        """Register a user; ``fields`` are the other `FakeUser` attributes."""
        user = FakeUser(id=id, **fields)
        self.users[id] = user
        return user

    def revoke(self, user_id: str) -> None:
        """Kill every refresh and access token of ``user_id`` (the user removed the app)."""
        for refresh in self._refresh.values():
            if refresh.user_id == user_id:
                refresh.alive = False
        for token in [t for t, a in self._access.items() if a.user_id == user_id]:
            del self._access[token]

    def expire_codes(self) -> None:
        """Make every outstanding authorization code count as expired."""
        for code in self._codes.values():
            code.expires_at = float("-inf")

    def expire_access_tokens(self) -> None:
        """Make every issued access token count as expired on /v1."""
        self._access.clear()

    def decide(self, authorize_url: str, *, user: str | None = None, approve: bool = True) -> str:
        """Play the consent step in-process and return the redirect ``Location``.

        The query is validated as ``GET /authorize`` would; Spotify's error pages are raised
        as `FakeAuthorizeError`. ``user`` defaults to the first registered user.
        """
        params: dict[str, str] = {}
        for key, value in parse_qsl(urlsplit(authorize_url).query, keep_blank_values=True):
            params.setdefault(key, value)
        auth = self.validate(params)
        return self.approve(auth, user) if approve else self.deny(auth)

    def token_for(self, user_id: str, client_id: str, scopes: Iterable[str] = ()) -> dict[str, Any]:
        """Mint a token response as /api/token would after a consent, without any flow."""
        if user_id not in self.users:
            raise KeyError(f"unknown user {user_id!r}")
        client = self.clients[client_id]
        granted = tuple(dict.fromkeys(scopes))
        if unknown := set(granted) - SCOPES:
            raise ValueError(f"unknown scopes: {sorted(unknown)}")
        pkce = client.client_secret is None
        return self._issue(user_id, client, granted, self.clock(), pkce=pkce, refresh=True)

    # -- /authorize -------------------------------------------------------------------------

    def validate(self, params: Mapping[str, str]) -> _AuthRequest:
        client = self.clients.get(params.get("client_id", ""))
        if client is None:
            raise FakeAuthorizeError("INVALID_CLIENT: Invalid client")
        redirect_uri = params.get("redirect_uri", "")
        if _insecure(redirect_uri):
            raise FakeAuthorizeError("INVALID_CLIENT: Insecure redirect URI")
        if not _registered(redirect_uri, client.redirect_uris):
            raise FakeAuthorizeError("INVALID_CLIENT: Invalid redirect URI")
        if params.get("response_type") != "code":
            raise FakeAuthorizeError("unsupported_response_type: response_type must be code")
        scopes = tuple(dict.fromkeys(params.get("scope", "").split()))
        if any(scope not in SCOPES for scope in scopes):
            raise FakeAuthorizeError("Illegal scope")
        challenge = params.get("code_challenge") or None
        if challenge is not None and params.get("code_challenge_method") != "S256":
            raise FakeAuthorizeError("INVALID_REQUEST: code_challenge_method must be S256")
        return _AuthRequest(client, redirect_uri, scopes, params.get("state"), challenge)

    def approve(self, auth: _AuthRequest, user_id: str | None) -> str:
        if user_id is None:
            if not self.users:
                raise FakeAuthorizeError("No users registered")
            user_id = next(iter(self.users))
        elif user_id not in self.users:
            raise FakeAuthorizeError(f"Unknown user: {user_id}")
        code = secrets.token_urlsafe(32)
        self._codes[code] = _Code(
            auth.client.client_id,
            auth.redirect_uri,
            user_id,
            auth.scopes,
            auth.challenge,
            self.clock() + self.code_ttl,
        )
        return self._back(auth, [("code", code)])

    def deny(self, auth: _AuthRequest) -> str:
        return self._back(auth, [("error", "access_denied")])

    @staticmethod
    def _back(auth: _AuthRequest, params: list[tuple[str, str]]) -> str:
        if auth.state is not None:
            params.append(("state", auth.state))
        return _with_query(auth.redirect_uri, params)

    # -- /api/token -------------------------------------------------------------------------

    def grant(self, form: Mapping[str, str], header: str | None) -> dict[str, Any]:
        """Answer a token request (its form and ``Authorization`` header) as Spotify would;
        :class:`OAuthError` carries a refusal."""
        grant = form.get("grant_type", "")
        handler = self._grants.get(grant)
        if handler is None:
            raise OAuthError(
                "unsupported_grant_type",
                "grant_type must be client_credentials, authorization_code or refresh_token"
                if grant
                else "grant_type parameter is missing",
            )
        return handler(form, header)

    def _authenticate(self, form: Mapping[str, str], header: str | None) -> tuple[FakeClient, bool]:
        """Return the client and whether it proved its secret (False: client_id only, PKCE)."""
        secret: str | None
        if header is not None:
            client_id, secret = _parse_basic(header)
        else:
            client_id, secret = form.get("client_id", ""), form.get("client_secret") or None
            if not client_id:
                raise OAuthError("invalid_client")
        client = self.clients.get(client_id)
        if client is None:
            raise OAuthError("invalid_client", "Invalid client")
        if secret is None:
            return client, False
        known = client.client_secret
        if known is None or not secrets.compare_digest(secret.encode(), known.encode()):
            raise OAuthError("invalid_client", "Invalid client secret")
        return client, True

    def _new_access(self, user_id: str | None, client: FakeClient, scopes: Iterable[str]) -> str:
        now = self.clock()
        if len(self._access) >= self._prune_at:  # forget expired tokens now and then
            self._access = {k: v for k, v in self._access.items() if v.expires_at > now}
            self._prune_at = max(4096, 2 * len(self._access))
        token = secrets.token_urlsafe(32)
        self._access[token] = _Access(
            user_id, client.client_id, frozenset(scopes), now + self.access_ttl
        )
        return token

    def _issue(
        self,
        user_id: str,
        client: FakeClient,
        scopes: tuple[str, ...],
        authorized_at: float,
        *,
        pkce: bool,
        refresh: bool,
    ) -> dict[str, Any]:
        body: dict[str, Any] = {
            "access_token": self._new_access(user_id, client, scopes),
            "token_type": "Bearer",
            "scope": " ".join(scopes),
            "expires_in": max(1, int(self.access_ttl)),
        }
        if refresh:
            token = secrets.token_urlsafe(32)
            self._refresh[token] = _Refresh(user_id, client.client_id, scopes, authorized_at, pkce)
            body["refresh_token"] = token
        return body

    def _grant_code(self, form: Mapping[str, str], header: str | None) -> dict[str, Any]:
        client, authenticated = self._authenticate(form, header)
        key = form.get("code", "")
        code = self._codes.get(key)
        if code is None or code.client_id != client.client_id:
            raise OAuthError("invalid_grant", "Invalid authorization code")
        if not authenticated and code.challenge is None:
            raise OAuthError("invalid_client")
        del self._codes[key]  # single use: consumed before any reply, even a failing one
        if self.clock() >= code.expires_at:
            raise OAuthError("invalid_grant", "Authorization code expired")
        if form.get("redirect_uri") != code.redirect_uri:
            raise OAuthError("invalid_grant", "Invalid redirect URI")
        pkce = code.challenge is not None
        if pkce:
            verifier = form.get("code_verifier")
            if not verifier:
                raise OAuthError("invalid_request", "code_verifier required")
            if _s256(verifier) != code.challenge:
                raise OAuthError("invalid_grant", "code_verifier was incorrect")
        return self._issue(code.user_id, client, code.scopes, self.clock(), pkce=pkce, refresh=True)

    def _grant_refresh(self, form: Mapping[str, str], header: str | None) -> dict[str, Any]:
        client, authenticated = self._authenticate(form, header)
        old = self._refresh.get(form.get("refresh_token", ""))
        if old is None or old.client_id != client.client_id:
            raise OAuthError("invalid_grant", "Invalid refresh token")
        if not authenticated and not old.pkce:
            raise OAuthError("invalid_client")
        if not old.alive or self.clock() >= old.authorized_at + self.refresh_lifetime:
            raise OAuthError("invalid_grant", "Refresh token revoked")
        rotate = not authenticated or self.rotate_confidential
        if rotate:
            old.alive = False
        return self._issue(
            old.user_id, client, old.scopes, old.authorized_at, pkce=old.pkce, refresh=rotate
        )

    def _grant_client_credentials(
        self, form: Mapping[str, str], header: str | None
    ) -> dict[str, Any]:
        client, authenticated = self._authenticate(form, header)
        if not authenticated:
            raise OAuthError("invalid_client")
        access = self._new_access(None, client, ())
        expires_in = max(1, int(self.access_ttl))
        return {"access_token": access, "token_type": "bearer", "expires_in": expires_in}

    def access(self, header: str) -> _Access | None:
        """The live access token an ``Authorization: Bearer ...`` header carries, if any."""
        scheme, _, token = header.partition(" ")
        token = token.strip()
        record = self._access.get(token) if scheme.lower() == "bearer" else None
        if record is not None and self.clock() >= record.expires_at:
            del self._access[token]
            record = None
        return record
