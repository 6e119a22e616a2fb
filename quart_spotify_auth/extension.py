"""The Quart extension: configuration, lifecycle, sessions and the four verbs."""

from __future__ import annotations

import hashlib
import inspect
import secrets
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any

import httpx
from quart import Quart, current_app, request, session
from quart.sessions import SecureCookieSessionInterface

from .accounts import AccountsClient, code_challenge, new_code_verifier, new_state, parse_scopes
from .config import Settings, load_settings
from .errors import AuthorizationDenied, ConfigurationError, InvalidCallback, LoginRequired
from .renewal import RenewalPolicy, TokenManager
from .stores import MemoryTokenStore, TokenStore
from .tokens import AccessToken, PendingLogin, TokenRecord

__all__ = ["EXTENSION_KEY", "SpotifyAuth"]

#: Where the per-app state lives: ``app.extensions[EXTENSION_KEY]``.
EXTENSION_KEY = "QUART_SPOTIFY_AUTH"

#: An app's own user id for the current request, or ``None`` (then the browser is the key).
Identity = Callable[[], Awaitable[str | None] | str | None]

#: Logins a browser may have started and not finished at once (oldest dropped first).
MAX_PENDING = 5

NO_PENDING_LOGIN = (
    "No Spotify login is pending for this browser. This usually means the app was opened on a "
    "different host than SPOTIFY_REDIRECT_URI (for example localhost instead of 127.0.0.1), so "
    "the browser did not send its session cookie back, or cookies are blocked. Open the app on "
    "the redirect URI's host and start the login again."
)


@dataclass(slots=True)
class _AppState:
    """Everything one app needs, kept in ``app.extensions``; never on the extension object."""

    settings: Settings
    store: TokenStore
    manager: TokenManager
    http: httpx.AsyncClient | None
    transport: httpx.AsyncBaseTransport | None


class SpotifyAuth:
    """Spotify login for a Quart app.

    .. code-block:: python

        app = Quart(__name__)
        app.secret_key = "..."
        app.config["SPOTIFY_CLIENT_ID"] = "..."
        spotify = SpotifyAuth(app)

    Arguments:
        app: the app to set up now; or call :meth:`init_app` later (one instance can serve
            several apps).
        store: where tokens live (default: a :class:`MemoryTokenStore` per app).
        identity: returns the app's own user id for the current request (sync or async), to
            key tokens by it instead of by browser; return a constant for a single-account app.
        transport: an httpx transport for the accounts client (tests:
            ``httpx.ASGITransport(app=FakeSpotify())``).
        clock: the time source for token expiry (tests can pass a ``FakeClock``).
        config: ``SPOTIFY_*`` keys that take precedence over ``app.config``.
    """

    def __init__(
        self,
        app: Quart | None = None,
        *,
        store: TokenStore | None = None,
        identity: Identity | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        clock: Callable[[], float] = time.time,
        **config: Any,
    ) -> None:
        self._store = store
        self._identity = identity
        self._transport = transport
        self._clock = clock
        self._config = config
        self._reauth_hooks: list[Callable[[str], Awaitable[None] | None]] = []
        if app is not None:
            self.init_app(app)

    def __repr__(self) -> str:
        return f"SpotifyAuth(identity={'custom' if self._identity else 'browser'})"

    def init_app(self, app: Quart) -> None:
        """Read and check the configuration, and hook the app's serving lifecycle.

        Raises :class:`ConfigurationError` with the fix when the configuration cannot work.
        """
        unknown = [k for k in self._config if not k.startswith("SPOTIFY_")]
        if unknown:
            raise ConfigurationError(f"Unknown SpotifyAuth options: {', '.join(unknown)}.")
        settings = load_settings(app.config, self._config)
        if app.secret_key is None and isinstance(
            app.session_interface, SecureCookieSessionInterface
        ):
            raise ConfigurationError(
                "app.secret_key is not set. quart-spotify-auth keeps an opaque login id in the "
                "session cookie, which Quart signs with it: set app.secret_key (or "
                "app.config['SECRET_KEY']) to a long random string, e.g. "
                "secrets.token_hex(32)."
            )
        store = self._store if self._store is not None else _make_store(settings, self._clock)
        policy = RenewalPolicy(
            margin=settings.refresh_margin,
            concurrency=settings.renew_concurrency,
            keep_warm=settings.keep_warm,
            forget_after=settings.idle_ttl,
            enabled=settings.auto_renew,
            join_timeout=settings.http_timeout * (settings.retries + 1) + settings.retry_after_cap,
        )
        # The pooled HTTP client is opened in before_serving (or on first use, see _accounts).
        accounts = AccountsClient(settings.accounts_config(), None, clock=self._clock)
        manager = TokenManager(store, accounts, policy=policy, clock=self._clock)
        manager.reauth_hooks = self._reauth_hooks
        app.extensions[EXTENSION_KEY] = _AppState(settings, store, manager, None, self._transport)
        app.before_serving(_start)
        app.after_serving(_stop)

    # -- the four verbs -------------------------------------------------------------------

    async def get_user(
        self, *, scopes: str | Iterable[str] | None = None, show_dialog: bool | None = None
    ) -> str:
        """The Spotify authorize URL for this browser; redirect to it to log in.

        A fresh ``state`` (and PKCE verifier) is remembered server-side for this browser,
        single use, for ``SPOTIFY_LOGIN_TTL`` seconds; several logins may be pending at once.
        ``scopes`` replaces the configured scopes for this login.
        """
        state = _state()
        settings = state.settings
        verifier = new_code_verifier() if settings.use_pkce else None
        value = new_state()
        pending = PendingLogin(verifier, settings.redirect_uri, time.time())
        await state.store.add_pending(value, pending, settings.login_ttl)
        _remember_pending(value)
        return state.manager.accounts.authorize_url(
            redirect_uri=settings.redirect_uri,
            state=value,
            scopes=parse_scopes(scopes) if scopes is not None else settings.scopes,
            challenge=code_challenge(verifier) if verifier is not None else None,
            show_dialog=settings.show_dialog if show_dialog is None else show_dialog,
        )

    async def get_user_token(self, code: str | None = None) -> AccessToken:
        """Finish the login in the callback route and return this user's token.

        Reads ``state`` and ``error`` from the current request itself: a denied consent raises
        :class:`AuthorizationDenied`; a missing, forged, replayed or expired ``state``, or a
        code Spotify rejects, raises :class:`InvalidCallback` (400) and stores nothing.
        """
        state = _state()
        args = request.args
        value = args.get("state")
        error = args.get("error")
        # The state must be one this browser started (its session lists it) and still be
        # pending server-side; either check failing leaves everything as it was.
        known = value is not None and _take_pending(value)
        pending = await state.store.pop_pending(value) if known and value is not None else None
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
                if not _session_data()
                else "This login callback was not started in this browser, or was already used. "
                "Start the login again here."
            )
        if pending is None:
            raise InvalidCallback(
                "This login callback is unknown, already used, or expired (a login must finish "
                f"within {int(state.settings.login_ttl)} seconds). Start the login again."
            )
        code = code if code is not None else args.get("code")
        if not code:
            raise InvalidCallback("The login callback has no code. Start the login again.")
        accounts = _accounts(state)
        record = await accounts.exchange_code(
            code, redirect_uri=pending.redirect_uri, code_verifier=pending.code_verifier
        )
        old_key = await self._key(state)
        _new_login_id()  # a fresh opaque id on login: no session fixation
        key = await self._key(state)
        assert key is not None
        if old_key is not None and old_key != key and old_key.startswith("browser:"):
            await state.manager.logout(old_key)
        stored = await state.manager.login(key, record)
        return stored.to_access_token(state.manager.clock())

    async def get_access_token(self) -> AccessToken:
        """This user's valid access token, refreshed first if it has expired (one token
        request however many callers wait). Raises :class:`LoginRequired` (401) when not
        logged in and :class:`ReauthorizationRequired` (401) when Spotify no longer accepts
        the login."""
        state = _state()
        key = await self._key(state)
        if key is None:
            raise LoginRequired()
        _accounts(state)
        record = await state.manager.current(key)
        return record.to_access_token(state.manager.clock())

    async def force_renewal(self) -> None:
        """Refresh this user's token now (joining a refresh already in flight)."""
        state = _state()
        key = await self._key(state)
        if key is None:
            raise LoginRequired()
        _accounts(state)
        await state.manager.refresh(key)

    async def get_app_token(self) -> AccessToken:
        """The app-only token (client credentials) for catalogue calls that need no user:
        cached and renewed like user tokens. Needs ``SPOTIFY_CLIENT_SECRET``."""
        state = _state()
        _accounts(state)
        record = await state.manager.app_token()
        return record.to_access_token(state.manager.clock())

    # -- the rest a login needs -----------------------------------------------------------

    async def is_logged_in(self) -> bool:
        """Whether this browser (or identity) has Spotify tokens."""
        state = _state()
        key = await self._key(state)
        return key is not None and await state.store.get(key) is not None

    async def logout(self) -> None:
        """Forget this user's tokens and this browser's login id."""
        state = _state()
        key = await self._key(state)
        if key is not None:
            await state.manager.logout(key)
        session.pop(state.settings.session_key, None)

    async def token_record(self) -> TokenRecord | None:
        """This user's stored record (for showing consent time, expiry...), not refreshed."""
        state = _state()
        key = await self._key(state)
        return None if key is None else await state.store.get(key)

    def on_reauthorization_required(
        self, hook: Callable[[str], Awaitable[None] | None]
    ) -> Callable[[str], Awaitable[None] | None]:
        """Register ``hook(key)``, called when Spotify stops accepting a user's refresh token
        (the tokens were dropped; the user must log in again). Usable as a decorator."""
        self._reauth_hooks.append(hook)
        return hook

    def manager(self, app: Quart | None = None) -> TokenManager:
        """The :class:`TokenManager` of ``app`` (default: the current app)."""
        return _state(app).manager

    async def _key(self, state: _AppState) -> str | None:
        if self._identity is not None:
            result = self._identity()
            if inspect.isawaitable(result):
                result = await result
            if result is not None:
                return f"user:{result}"
        login = _session_data().get("login")
        return f"browser:{login}" if isinstance(login, str) and login else None


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


def _state(app: Quart | None = None) -> _AppState:
    target = app if app is not None else current_app
    try:
        state: _AppState = target.extensions[EXTENSION_KEY]
    except KeyError:
        raise RuntimeError(
            "SpotifyAuth is not set up on this app: call SpotifyAuth(app) or init_app(app)."
        ) from None
    return state


# The session holds only an opaque login id and short digests of this browser's pending
# states (never a token, code or verifier): {"login": "...", "pending": ["...", ...]}.


def _session_data() -> dict[str, Any]:
    data = session.get(_state().settings.session_key)
    return dict(data) if isinstance(data, dict) else {}


def _save_session(data: dict[str, Any]) -> None:
    session[_state().settings.session_key] = data


def _digest(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()[:24]


def _pending_states() -> list[str]:
    pending = _session_data().get("pending")
    return [p for p in pending if isinstance(p, str)] if isinstance(pending, list) else []


def _remember_pending(value: str) -> None:
    data = _session_data()
    data["pending"] = [*_pending_states(), _digest(value)][-MAX_PENDING:]
    _save_session(data)


def _take_pending(value: str) -> bool:
    pending = _pending_states()
    digest = _digest(value)
    if digest not in pending:
        return False
    pending.remove(digest)
    data = _session_data()
    data["pending"] = pending
    _save_session(data)
    return True


def _new_login_id() -> None:
    data = _session_data()
    data["login"] = secrets.token_urlsafe(24)
    _save_session(data)


def _accounts(state: _AppState) -> AccountsClient:
    """The accounts client, with the pooled HTTP client opened if serving has not done it
    (for example a test client used without ``app.test_app()``)."""
    accounts = state.manager.accounts
    if state.http is None:
        state.http = _open_client(state)
        accounts.http = state.http
    return accounts


def _open_client(state: _AppState) -> httpx.AsyncClient:
    settings = state.settings
    return httpx.AsyncClient(
        timeout=httpx.Timeout(settings.http_timeout),
        transport=state.transport,
        limits=httpx.Limits(max_connections=100, max_keepalive_connections=20),
        headers={"User-Agent": "quart-spotify-auth"},
    )


async def _start() -> None:
    state = _state()
    await state.store.open()
    _accounts(state)
    state.manager.start()


async def _stop() -> None:
    state = _state()
    await state.manager.stop()
    await state.store.close()
    if state.http is not None:
        await state.http.aclose()
        state.http = None
