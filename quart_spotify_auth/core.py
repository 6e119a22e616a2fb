"""What the Quart extension and the Flask shim share: one app's state and the login flow.

:class:`Core` holds one app's settings, store, token manager and pooled HTTP client, and runs
the flow on plain values: the browser's session is any mutable mapping (Quart's or Flask's
session object), the callback's query any mapping. The adapters only find the current session,
request and identity, and call in.

The session holds an opaque login id and short digests of this browser's pending ``state``
values, never a token, code or verifier: ``{"login": "...", "pending": ["...", ...]}``.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from collections.abc import Callable, Iterable, Mapping, MutableMapping
from typing import Any

import httpx

from .accounts import AccountsClient, code_challenge, new_code_verifier, new_state, parse_scopes
from .config import Settings, load_settings
from .errors import AuthorizationDenied, ConfigurationError, InvalidCallback, LoginRequired
from .renewal import APP_KEY, ReauthHook, RenewalPolicy, TokenManager
from .stores import MemoryTokenStore, TokenStore
from .tokens import AccessToken, PendingLogin, TokenRecord
from .webapi import SpotifyBearer, WebAPI

__all__ = ["EXTENSION_KEY", "MAX_PENDING", "NO_PENDING_LOGIN", "Core", "build_core"]

Session = MutableMapping[str, Any]

#: Where each adapter keeps an app's state: ``app.extensions[EXTENSION_KEY]``.
EXTENSION_KEY = "QUART_SPOTIFY_AUTH"

#: Logins a browser may have started and not finished at once (oldest dropped first).
MAX_PENDING = 5

NO_PENDING_LOGIN = (
    "No Spotify login is pending for this browser. This usually means the app was opened on a "
    "different host than SPOTIFY_REDIRECT_URI (for example localhost instead of 127.0.0.1), so "
    "the browser did not send its session cookie back, or cookies are blocked. Open the app on "
    "the redirect URI's host and start the login again."
)


class Core:
    """One app's Spotify login, framework-free."""

    def __init__(
        self,
        settings: Settings,
        store: TokenStore,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        clock: Callable[[], float] = time.time,
        reauth_hooks: list[ReauthHook] | None = None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.transport = transport
        self.http: httpx.AsyncClient | None = None  # opened by start() or on first use
        policy = RenewalPolicy(
            margin=settings.refresh_margin,
            concurrency=settings.renew_concurrency,
            keep_warm=settings.keep_warm,
            forget_after=settings.idle_ttl,
            enabled=settings.auto_renew,
            join_timeout=settings.http_timeout * (settings.retries + 1) + settings.retry_after_cap,
        )
        accounts = AccountsClient(settings.accounts_config(), None, clock=clock)
        self.manager = TokenManager(store, accounts, policy=policy, clock=clock)
        if reauth_hooks is not None:
            self.manager.reauth_hooks = reauth_hooks

    def __repr__(self) -> str:
        return f"Core({self.settings!r}, {self.store!r})"

    # -- lifecycle --------------------------------------------------------------------------

    def accounts(self) -> AccountsClient:
        """The accounts client, with the pooled HTTP client opened if need be."""
        accounts = self.manager.accounts
        if self.http is None:
            self.http = httpx.AsyncClient(
                timeout=httpx.Timeout(self.settings.http_timeout),
                transport=self.transport,
                limits=httpx.Limits(max_connections=100, max_keepalive_connections=20),
                headers={"User-Agent": "quart-spotify-auth"},
            )
            accounts.http = self.http
        return accounts

    async def start(self) -> None:
        """Open the store and the HTTP pool; start the renewer. On the serving loop."""
        await self.store.open()
        self.accounts()
        self.manager.start()

    async def stop(self) -> None:
        """Stop the renewer (letting refreshes in flight land); close the store and pool."""
        await self.manager.stop()
        await self.store.close()
        if self.http is not None:
            http, self.http = self.http, None
            await http.aclose()

    # -- the flow ---------------------------------------------------------------------------

    def key(self, session: Session, identity: str | None) -> str | None:
        """Where this user's tokens are stored: the app's identity, else the browser's login
        id, else ``None`` (not logged in)."""
        if identity is not None:
            return f"user:{identity}"
        login = _data(session, self.settings).get("login")
        return f"browser:{login}" if isinstance(login, str) and login else None

    async def begin_login(
        self,
        session: Session,
        *,
        scopes: str | Iterable[str] | None = None,
        show_dialog: bool | None = None,
        next_url: str | None = None,
    ) -> str:
        """Remember a fresh state (and PKCE verifier, and where to go next) for this browser;
        the authorize URL."""
        settings = self.settings
        verifier = new_code_verifier() if settings.use_pkce else None
        value = new_state()
        pending = PendingLogin(verifier, settings.redirect_uri, time.time(), next_url)
        await self.store.add_pending(value, pending, settings.login_ttl)
        data = _data(session, settings)
        data["pending"] = [*_pending(data), _digest(value)][-MAX_PENDING:]
        session[settings.session_key] = data
        return self.manager.accounts.authorize_url(
            redirect_uri=settings.redirect_uri,
            state=value,
            scopes=parse_scopes(scopes) if scopes is not None else settings.scopes,
            challenge=code_challenge(verifier) if verifier is not None else None,
            show_dialog=settings.show_dialog if show_dialog is None else show_dialog,
        )

    async def finish_login(
        self,
        session: Session,
        args: Mapping[str, str],
        code: str | None,
        identity: str | None,
    ) -> tuple[AccessToken, str | None]:
        """Check the callback against this browser's pending logins, exchange the code, store
        the tokens under a fresh login id (or the identity). Returns the user's token and the
        ``next_url`` the login was started with."""
        settings = self.settings
        value = args.get("state")
        error = args.get("error")
        # The state must be one this browser started (its session lists it) and still be
        # pending server-side; either check failing leaves everything as it was.
        data = _data(session, settings)
        known = value is not None and _digest(value) in _pending(data)
        if known and value is not None:
            data["pending"] = [d for d in _pending(data) if d != _digest(value)]
            session[settings.session_key] = data
        pending = await self.store.pop_pending(value) if known and value is not None else None
        if error is not None:
            if error == "access_denied":
                raise AuthorizationDenied()
            raise InvalidCallback(
                f"Spotify ended the login with an error ({error[:64]!r}). Start the login again."
            )
        if not value:
            raise InvalidCallback(
                "The login callback has no state parameter, so it cannot be checked. Start the "
                "login again from this app."
            )
        if not known:
            raise InvalidCallback(
                NO_PENDING_LOGIN
                if not data
                else "This login callback was not started in this browser, or was already used. "
                "Start the login again here."
            )
        if pending is None:
            raise InvalidCallback(
                "This login callback is unknown, already used, or expired (a login must finish "
                f"within {int(settings.login_ttl)} seconds). Start the login again."
            )
        code = code if code is not None else args.get("code")
        if not code:
            raise InvalidCallback("The login callback has no code. Start the login again.")
        record = await self.accounts().exchange_code(
            code, redirect_uri=pending.redirect_uri, code_verifier=pending.code_verifier
        )
        old_key = self.key(session, identity)
        data = _data(session, settings)
        data["login"] = secrets.token_urlsafe(24)  # a fresh opaque id: no session fixation
        session[settings.session_key] = data
        key = self.key(session, identity)
        assert key is not None
        if old_key is not None and old_key != key and old_key.startswith("browser:"):
            await self.manager.logout(old_key)
        stored = await self.manager.login(key, record)
        return stored.to_access_token(self.manager.clock()), pending.next_url

    async def access_token(self, key: str | None) -> AccessToken:
        if key is None:
            raise LoginRequired()
        self.accounts()
        record = await self.manager.current(key)
        return record.to_access_token(self.manager.clock())

    async def force_renewal(self, key: str | None) -> None:
        if key is None:
            raise LoginRequired()
        self.accounts()
        await self.manager.refresh(key)

    async def app_token(self) -> AccessToken:
        self.accounts()
        record = await self.manager.app_token()
        return record.to_access_token(self.manager.clock())

    def web_api(self, key: str | None) -> WebAPI:
        """A Web API client for ``key``'s user (``None``: the app-only token)."""
        settings = self.settings

        async def token() -> AccessToken:
            return await (self.app_token() if key is None else self.access_token(key))

        async def refresh(sent: str) -> AccessToken:
            if key is None:
                record = await self.manager.refresh(APP_KEY)
            else:
                current = await self.store.get(key, fresh=True)
                if current is None:
                    raise LoginRequired()
                # Refresh only if nobody did since this token was sent (single-flight).
                record = (
                    current
                    if current.access_token != sent
                    else await self.manager.refresh(key, current)
                )
            return record.to_access_token(self.manager.clock())

        auth = SpotifyBearer(
            token, refresh, retries=settings.retries, retry_after_cap=settings.retry_after_cap
        )
        self.accounts()
        assert self.http is not None
        return WebAPI(self.http, settings.api_url, auth, retries=settings.retries)

    async def record(self, key: str | None) -> TokenRecord | None:
        return None if key is None else await self.store.get(key)

    async def logout(self, session: Session, key: str | None) -> None:
        if key is not None:
            await self.manager.logout(key)
        session.pop(self.settings.session_key, None)


def build_core(
    config: Mapping[str, Any],
    overrides: Mapping[str, Any],
    *,
    secret_key: object,
    default_sessions: bool,
    store: TokenStore | None,
    transport: httpx.AsyncBaseTransport | None,
    clock: Callable[[], float],
    reauth_hooks: list[ReauthHook],
) -> Core:
    """Check the configuration (raising :class:`ConfigurationError` with the fix) and build
    one app's :class:`Core`. Shared by ``init_app`` of the Quart extension and the Flask shim.
    """
    unknown = [k for k in overrides if not k.startswith("SPOTIFY_")]
    if unknown:
        raise ConfigurationError(f"Unknown SpotifyAuth options: {', '.join(unknown)}.")
    settings = load_settings(config, overrides)
    if secret_key is None and default_sessions:
        raise ConfigurationError(
            "app.secret_key is not set. quart-spotify-auth keeps an opaque login id in the "
            "session cookie, which the framework signs with it: set app.secret_key (or "
            "app.config['SECRET_KEY']) to a long random string, e.g. secrets.token_hex(32)."
        )
    if store is None:
        store = _make_store(settings, clock)
    return Core(settings, store, transport=transport, clock=clock, reauth_hooks=reauth_hooks)


def _make_store(settings: Settings, clock: Callable[[], float]) -> TokenStore:
    """The store ``SPOTIFY_TOKEN_STORE`` names: Redis for a URL, else in memory."""
    if settings.token_store is None:
        return MemoryTokenStore()
    try:
        from .stores.redis import RedisTokenStore
    except ImportError:
        raise ConfigurationError(
            "SPOTIFY_TOKEN_STORE is a Redis URL but redis is not installed: "
            "pip install 'quart-spotify-auth[redis]'."
        ) from None
    return RedisTokenStore(
        settings.token_store,
        prefix=settings.store_prefix,
        idle_ttl=settings.idle_ttl,
        encryption_keys=settings.encryption_keys,
        max_connections=settings.redis_max_connections,
        timeout=min(settings.http_timeout, 5.0),
        clock=clock,
    )


def _data(session: Session, settings: Settings) -> dict[str, Any]:
    data = session.get(settings.session_key)
    return dict(data) if isinstance(data, dict) else {}


def _pending(data: dict[str, Any]) -> list[str]:
    pending = data.get("pending")
    return [p for p in pending if isinstance(p, str)] if isinstance(pending, list) else []


def _digest(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()[:24]
