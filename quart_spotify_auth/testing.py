"""A fake Spotify for tests, demos and benchmarks.

`FakeSpotify` is an ASGI app that behaves like ``accounts.spotify.com`` plus ``GET /v1/me`` of
``api.spotify.com``: ``GET``/``POST /authorize`` (consent page and its form), ``POST /api/token``
(authorization code with or without PKCE, refresh, client credentials, with Spotify's error
strings) and ``GET /v1/me``. Use it in-process or serve it with hypercorn:

.. code-block:: python

    fake = make_fake(clock=FakeClock())
    http = httpx.AsyncClient(transport=httpx.ASGITransport(app=fake), base_url="http://fake")

Switches (faults, rotation, TTLs, the clock) are plain attributes and methods; when the fake
runs in another process, ``GET /_fake/state`` and ``POST /_fake/control`` reach them.
"""

from __future__ import annotations

import asyncio
import base64
import collections
import hashlib
import html
import json
import secrets
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

from quart import Quart, Response, request

__all__ = [
    "SCOPES",
    "FakeAuthorizeError",
    "FakeClient",
    "FakeClock",
    "FakeSpotify",
    "FakeUser",
    "make_fake",
]

#: Every scope Spotify accepts at /authorize (reference section 6).
SCOPES = frozenset(
    "ugc-image-upload user-read-playback-state user-modify-playback-state "  # noqa: SIM905
    "user-read-currently-playing app-remote-control streaming playlist-read-private "
    "playlist-read-collaborative playlist-modify-private playlist-modify-public "
    "user-follow-modify user-follow-read user-read-playback-position user-top-read "
    "user-read-recently-played user-library-modify user-library-read user-read-email "
    "user-read-private user-soa-link user-soa-unlink soa-manage-entitlements "
    "soa-manage-partner soa-create-partner".split()
)

_LOOPBACK = frozenset({"127.0.0.1", "::1"})
_FORM = "application/x-www-form-urlencoded"
_JSON = "application/json"
_NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}
_CONTROL_KEYS = frozenset(
    "fail_next fail_status rate_limit_next retry_after quota garbage_next "  # noqa: SIM905
    "slow access_ttl rotate_confidential auto_approve dev_mode revoke expire_codes "
    "expire_access_tokens advance reset_counters".split()
)


class FakeClock:
    """A clock that only moves when told to; pass it as ``FakeSpotify(clock=...)``."""

    def __init__(self, start: float | None = None) -> None:
        self.now = time.time() if start is None else float(start)

    def __call__(self) -> float:
        """Return the current fake time in seconds since the epoch."""
        return self.now

    def advance(self, seconds: float) -> None:
        """Move the clock forward by ``seconds``."""
        self.now += seconds


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


class _OAuthError(Exception):
    def __init__(self, error: str, description: str | None = None) -> None:
        super().__init__(error)
        self.body = {"error": error}
        if description is not None:
            self.body["error_description"] = description


def _json(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(json.dumps(data), status=status, headers=headers, content_type=_JSON)


def _redirect(location: str) -> Response:
    return Response("", status=302, headers={"Location": location})


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
        raise _OAuthError("invalid_client")
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode()
    except ValueError:  # binascii.Error and UnicodeDecodeError are both ValueErrors
        raise _OAuthError("invalid_client") from None
    client_id, colon, secret = decoded.partition(":")
    if not colon or not client_id:
        raise _OAuthError("invalid_client")
    return client_id, secret


def _error_page(message: str) -> Response:
    body = (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        "<title>Error - Spotify (fake)</title></head>"
        '<body style="font-family:sans-serif;background:#121212;color:#fff;padding:3em">'
        "<h1>Oops! Something went wrong, please try again or check out our help area.</h1>"
        f'<p id="error">{html.escape(message)}</p></body></html>'
    )
    return Response(body, status=400, content_type="text/html; charset=utf-8")


_PAGE_STYLE = (
    "body{font-family:system-ui,sans-serif;background:#121212;color:#fff;display:flex;"
    "justify-content:center;padding:3em 1em}main{background:#181818;border-radius:8px;"
    "padding:2em;max-width:28em;width:100%}h1{font-size:1.5em}code{color:#1ed760}"
    "select,button{font-size:1em;padding:.6em 1.2em;border-radius:2em;margin:.3em .3em 0 0}"
    "#agree{background:#1ed760;border:0;font-weight:bold}#cancel{background:none;color:#fff;"
    "border:1px solid #888}"
)


class FakeSpotify:
    """ASGI app faking accounts.spotify.com and /v1/me, with switches for tests.

    Switch attributes (``access_ttl``, ``code_ttl``, ``refresh_lifetime``, ``rotate_confidential``,
    ``auto_approve``, ``dev_mode``, ``api_error_message``, ``slow``) can be changed at any time.
    """

    def __init__(
        self,
        *,
        clock: Callable[[], float] | None = None,
        access_ttl: float = 3600,
        code_ttl: float = 600,
        refresh_lifetime: float = 183 * 86400,
        rotate_confidential: bool = False,
        auto_approve: str | None = None,
        dev_mode: bool = False,
        api_error_message: str = "The access token expired",
    ) -> None:
        self.clock: Callable[[], float] = clock if clock is not None else time.time
        self.access_ttl = access_ttl
        self.code_ttl = code_ttl
        self.refresh_lifetime = refresh_lifetime
        self.rotate_confidential = rotate_confidential
        self.auto_approve = auto_approve
        self.dev_mode = dev_mode
        self.api_error_message = api_error_message
        self.slow = 0.0
        self.clients: dict[str, FakeClient] = {}
        self.users: dict[str, FakeUser] = {}
        self.requests: collections.Counter[str] = collections.Counter()
        self._codes: dict[str, _Code] = {}
        self._access: dict[str, _Access] = {}
        self._refresh: dict[str, _Refresh] = {}
        self._fail, self._fail_status = 0, 503
        self._rate, self._retry_after, self._quota = 0, 1, False
        self._garbage = 0
        self._prune_at = 4096
        self._grants = {
            "authorization_code": self._grant_code,
            "refresh_token": self._grant_refresh,
            "client_credentials": self._grant_client_credentials,
        }
        self.app = Quart(__name__)
        route = self.app.add_url_rule
        route("/authorize", view_func=self._authorize_get, methods=["GET"])
        route("/authorize", view_func=self._authorize_post, methods=["POST"])
        route("/api/token", view_func=self._token, methods=["POST"])
        route("/v1/me", view_func=self._me, methods=["GET"])
        route("/_fake/state", view_func=self._state, methods=["GET"])
        route("/_fake/control", view_func=self._control, methods=["POST"])

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        """ASGI entry point: delegates to the inner Quart app."""
        await self.app(scope, receive, send)

    # -- setup and test hooks -------------------------------------------------------------

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

    def fail_next(self, n: int, status: int = 503) -> None:
        """Answer the next ``n`` /api/token requests with ``status``."""
        self._fail, self._fail_status = n, status

    def rate_limit_next(self, n: int, retry_after: int = 1, quota: bool = False) -> None:
        """Answer the next ``n`` /api/token or /v1 requests with 429 and ``Retry-After``."""
        self._rate, self._retry_after, self._quota = n, retry_after, quota

    def garbage_next(self, n: int) -> None:
        """Answer the next ``n`` /api/token requests with 200 and an HTML (non-JSON) body."""
        self._garbage = n

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

    def reset_counters(self) -> None:
        """Zero the ``requests`` counters."""
        self.requests.clear()

    def snapshot(self) -> dict[str, Any]:
        """Counters and switches as a JSON-able dict (also served at ``GET /_fake/state``)."""
        return {
            "requests": dict(self.requests),
            "now": self.clock(),
            "access_ttl": self.access_ttl,
            "code_ttl": self.code_ttl,
            "refresh_lifetime": self.refresh_lifetime,
            "rotate_confidential": self.rotate_confidential,
            "auto_approve": self.auto_approve,
            "dev_mode": self.dev_mode,
            "slow": self.slow,
            "fail_next": self._fail,
            "fail_status": self._fail_status,
            "rate_limit_next": self._rate,
            "retry_after": self._retry_after,
            "quota": self._quota,
            "garbage_next": self._garbage,
            "clients": list(self.clients),
            "users": list(self.users),
        }

    def decide(self, authorize_url: str, *, user: str | None = None, approve: bool = True) -> str:
        """Play the consent step in-process and return the redirect ``Location``.

        The query is validated as ``GET /authorize`` would; Spotify's error pages are raised
        as `FakeAuthorizeError`. ``user`` defaults to the first registered user.
        """
        params: dict[str, str] = {}
        for key, value in parse_qsl(urlsplit(authorize_url).query, keep_blank_values=True):
            params.setdefault(key, value)
        auth = self._validate(params)
        return self._approve(auth, user) if approve else self._deny(auth)

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

    def _validate(self, params: Mapping[str, str]) -> _AuthRequest:
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

    def _approve(self, auth: _AuthRequest, user_id: str | None) -> str:
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

    def _deny(self, auth: _AuthRequest) -> str:
        return self._back(auth, [("error", "access_denied")])

    @staticmethod
    def _back(auth: _AuthRequest, params: list[tuple[str, str]]) -> str:
        if auth.state is not None:
            params.append(("state", auth.state))
        return _with_query(auth.redirect_uri, params)

    async def _authorize_get(self) -> Response:
        self.requests["authorize"] += 1
        try:
            auth = self._validate(request.args)
            if self.auto_approve is not None:
                return _redirect(self._approve(auth, self.auto_approve))
        except FakeAuthorizeError as exc:
            return _error_page(str(exc))
        page = self._consent_page(auth, request.args.items(multi=True))
        return Response(page, status=200, content_type="text/html; charset=utf-8")

    async def _authorize_post(self) -> Response:
        self.requests["consent"] += 1
        form = await request.form
        try:
            auth = self._validate(form)
            if form.get("action") == "deny":
                return _redirect(self._deny(auth))
            return _redirect(self._approve(auth, form.get("user") or None))
        except FakeAuthorizeError as exc:
            return _error_page(str(exc))

    def _consent_page(self, auth: _AuthRequest, params: Iterable[tuple[str, str]]) -> str:
        esc = html.escape
        hidden = "".join(
            f'<input type="hidden" name="{esc(k)}" value="{esc(v)}">'
            for k, v in params
            if k not in ("user", "action")
        )
        options = "".join(
            f'<option value="{esc(u.id)}">{esc(u.display_name or u.id)} ({esc(u.id)})</option>'
            for u in self.users.values()
        )
        scopes = "".join(f"<li><code>{esc(s)}</code></li>" for s in auth.scopes)
        scopes = scopes or "<li>Your public profile only</li>"
        return (
            '<!doctype html><html lang="en"><head><meta charset="utf-8">'
            '<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>Log in to Spotify (fake)</title><style>{_PAGE_STYLE}</style></head><body>"
            "<main><h1>Log in to Spotify (fake)</h1>"
            f'<p>The app <strong id="client-id">{esc(auth.client.client_id)}</strong> '
            "would like to:</p>"
            f'<ul id="scopes">{scopes}</ul>'
            f'<form method="post" action="/authorize">{hidden}'
            f'<p><label for="user">Continue as </label><select id="user" name="user">{options}'
            "</select></p>"
            '<button type="submit" id="agree" name="action" value="approve">Agree</button>'
            '<button type="submit" id="cancel" name="action" value="deny">Cancel</button>'
            "</form></main></body></html>"
        )

    # -- /api/token -------------------------------------------------------------------------

    async def _token(self) -> Response:
        self.requests["token"] += 1
        if self._fail > 0:
            self._fail -= 1
            error = "server_error" if self._fail_status >= 500 else "invalid_request"
            return _json({"error": error}, status=self._fail_status)
        if self._rate > 0:
            return self._rate_limited()
        if self._garbage > 0:
            self._garbage -= 1
            return Response("<html>oops</html>", status=200, content_type="text/html")
        if self.slow > 0:
            await asyncio.sleep(self.slow)
        form = await request.form if request.mimetype == _FORM else {}
        grant = form.get("grant_type", "")
        handler = self._grants.get(grant)
        if handler is None:
            description = (
                "grant_type must be client_credentials, authorization_code or refresh_token"
                if grant
                else "grant_type parameter is missing"
            )
            return _json({"error": "unsupported_grant_type", "error_description": description}, 400)
        self.requests[f"token:{grant}"] += 1
        try:
            body = handler(form, request.headers.get("Authorization"))
        except _OAuthError as exc:
            return _json(exc.body, status=400, headers=_NO_STORE)
        return _json(body, headers=_NO_STORE)

    def _authenticate(self, form: Mapping[str, str], header: str | None) -> tuple[FakeClient, bool]:
        """Return the client and whether it proved its secret (False: client_id only, PKCE)."""
        secret: str | None
        if header is not None:
            client_id, secret = _parse_basic(header)
        else:
            client_id, secret = form.get("client_id", ""), form.get("client_secret") or None
            if not client_id:
                raise _OAuthError("invalid_client")
        client = self.clients.get(client_id)
        if client is None:
            raise _OAuthError("invalid_client", "Invalid client")
        if secret is None:
            return client, False
        known = client.client_secret
        if known is None or not secrets.compare_digest(secret.encode(), known.encode()):
            raise _OAuthError("invalid_client", "Invalid client secret")
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
            raise _OAuthError("invalid_grant", "Invalid authorization code")
        if not authenticated and code.challenge is None:
            raise _OAuthError("invalid_client")
        del self._codes[key]  # single use: consumed before any reply, even a failing one
        if self.clock() >= code.expires_at:
            raise _OAuthError("invalid_grant", "Authorization code expired")
        if form.get("redirect_uri") != code.redirect_uri:
            raise _OAuthError("invalid_grant", "Invalid redirect URI")
        pkce = code.challenge is not None
        if pkce:
            verifier = form.get("code_verifier")
            if not verifier:
                raise _OAuthError("invalid_request", "code_verifier required")
            if _s256(verifier) != code.challenge:
                raise _OAuthError("invalid_grant", "code_verifier was incorrect")
        return self._issue(code.user_id, client, code.scopes, self.clock(), pkce=pkce, refresh=True)

    def _grant_refresh(self, form: Mapping[str, str], header: str | None) -> dict[str, Any]:
        client, authenticated = self._authenticate(form, header)
        old = self._refresh.get(form.get("refresh_token", ""))
        if old is None or old.client_id != client.client_id:
            raise _OAuthError("invalid_grant", "Invalid refresh token")
        if not authenticated and not old.pkce:
            raise _OAuthError("invalid_client")
        if not old.alive or self.clock() >= old.authorized_at + self.refresh_lifetime:
            raise _OAuthError("invalid_grant", "Refresh token revoked")
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
            raise _OAuthError("invalid_client")
        access = self._new_access(None, client, ())
        expires_in = max(1, int(self.access_ttl))
        return {"access_token": access, "token_type": "bearer", "expires_in": expires_in}

    def _rate_limited(self) -> Response:
        self._rate -= 1
        error: dict[str, Any] = {"status": 429, "message": "API rate limit exceeded"}
        if self._quota:
            error = {"status": 429, "message": "Too many requests", "reason": "QUOTA_EXCEEDED"}
        headers = {"Retry-After": str(self._retry_after)}
        return _json({"error": error}, status=429, headers=headers)

    # -- /v1/me -----------------------------------------------------------------------------

    async def _me(self) -> Response:
        self.requests["me"] += 1
        if self._rate > 0:
            return self._rate_limited()
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        token = token.strip()
        record = self._access.get(token) if scheme.lower() == "bearer" else None
        if record is not None and self.clock() >= record.expires_at:
            del self._access[token]
            record = None
        if record is None:
            return _api_error(401, self.api_error_message)
        if record.user_id is None:
            return _api_error(403, "Forbidden")  # an app (client credentials) token
        user = self.users.get(record.user_id)
        if user is None:
            return _api_error(401, self.api_error_message)
        client = self.clients.get(record.client_id)
        allowlist = client.allowlist if client is not None else None
        if self.dev_mode and allowlist is not None and user.id not in allowlist:
            return _api_error(403, "User not registered in the Developer Dashboard")
        return _json(self._user_object(user, record.scopes))

    def _user_object(self, user: FakeUser, scopes: frozenset[str]) -> dict[str, Any]:
        body: dict[str, Any] = {
            "id": user.id,
            "account_id": user.account_id,
            "display_name": user.display_name,
            "uri": f"spotify:user:{user.id}",
            "href": f"https://api.spotify.com/v1/users/{user.id}",
            "type": "user",
            "external_urls": {"spotify": f"https://open.spotify.com/user/{user.id}"},
            "images": [],
        }
        if self.dev_mode:
            return body
        body["followers"] = {"href": None, "total": 0}
        if "user-read-email" in scopes:
            body["email"] = user.email
        if "user-read-private" in scopes:
            body["country"] = user.country
            body["product"] = user.product
            body["explicit_content"] = {"filter_enabled": False, "filter_locked": False}
        return body

    # -- control endpoints ------------------------------------------------------------------

    async def _state(self) -> Response:
        return _json(self.snapshot())

    async def _control(self) -> Response:
        data = await request.get_json(force=True, silent=True)
        if not isinstance(data, dict):
            return _json({"error": "expected a JSON object"}, status=400)
        if unknown := sorted(set(data) - _CONTROL_KEYS):
            return _json({"error": f"unknown keys: {', '.join(unknown)}"}, status=400)
        if "advance" in data and not isinstance(self.clock, FakeClock):
            return _json({"error": "advance needs a FakeClock"}, status=400)
        try:
            self._apply(data)
        except (TypeError, ValueError) as exc:
            return _json({"error": f"bad value: {exc}"}, status=400)
        return _json(self.snapshot())

    def _apply(self, data: dict[str, Any]) -> None:
        if "fail_next" in data:
            self.fail_next(int(data["fail_next"]), int(data.get("fail_status", 503)))
        if "rate_limit_next" in data:
            n, retry_after = int(data["rate_limit_next"]), int(data.get("retry_after", 1))
            self.rate_limit_next(n, retry_after, bool(data.get("quota", False)))
        if "garbage_next" in data:
            self.garbage_next(int(data["garbage_next"]))
        for name in ("slow", "access_ttl"):
            if name in data:
                setattr(self, name, float(data[name]))
        for name in ("rotate_confidential", "dev_mode"):
            if name in data:
                setattr(self, name, bool(data[name]))
        if "auto_approve" in data:
            user = data["auto_approve"]
            self.auto_approve = None if user is None else str(user)
        if "revoke" in data:
            self.revoke(str(data["revoke"]))
        if data.get("expire_codes"):
            self.expire_codes()
        if data.get("expire_access_tokens"):
            self.expire_access_tokens()
        if "advance" in data and isinstance(self.clock, FakeClock):
            self.clock.advance(float(data["advance"]))
        if data.get("reset_counters"):
            self.reset_counters()


def _api_error(status: int, message: str) -> Response:
    return _json({"error": {"status": status, "message": message}}, status=status)


def make_fake(
    *,
    client_id: str = "test-client",
    client_secret: str | None = "test-secret",  # noqa: S107 - a fixture value, not a password
    redirect_uri: str = "http://127.0.0.1:5000/callback/",
    users: Iterable[str] = ("alice", "bob"),
    **kwargs: Any,
) -> FakeSpotify:
    """Build a `FakeSpotify` with one client and users named after their ids ("Alice", ...)."""
    fake = FakeSpotify(**kwargs)
    fake.add_client(client_id, client_secret, [redirect_uri])
    for user_id in users:
        fake.add_user(user_id, display_name=user_id.capitalize(), email=f"{user_id}@example.com")
    return fake
