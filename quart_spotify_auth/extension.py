"""The Quart extension: find the app, session, request and identity; the core does the rest."""

from __future__ import annotations

import inspect
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

import httpx
from quart import Quart, current_app, request, session
from quart.sessions import SecureCookieSessionInterface

from .core import EXTENSION_KEY, Core, build_core
from .errors import LoginRequired
from .renewal import TokenManager
from .stores import TokenStore
from .tokens import AccessToken, TokenRecord
from .webapi import WebAPI

__all__ = ["EXTENSION_KEY", "SpotifyAuth"]

#: The :class:`SpotifyAuth` set up on the app (for the guards in :mod:`.routes`).
INSTANCE_KEY = "QUART_SPOTIFY_AUTH_INSTANCE"

#: An app's own user id for the current request, or ``None`` (then the browser is the key).
Identity = Callable[[], Awaitable[str | None] | str | None]


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
        store: where tokens live (default: per ``SPOTIFY_TOKEN_STORE``, in memory or Redis).
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
        app.extensions[EXTENSION_KEY] = build_core(
            app.config,
            self._config,
            secret_key=app.secret_key,
            default_sessions=isinstance(app.session_interface, SecureCookieSessionInterface),
            store=self._store,
            transport=self._transport,
            clock=self._clock,
            reauth_hooks=self._reauth_hooks,
        )
        app.extensions[INSTANCE_KEY] = self
        app.before_serving(_start)
        app.after_serving(_stop)

    # -- the four verbs -------------------------------------------------------------------

    async def get_user(
        self,
        *,
        scopes: str | Iterable[str] | None = None,
        show_dialog: bool | None = None,
        next_url: str | None = None,
    ) -> str:
        """The Spotify authorize URL for this browser; redirect to it to log in.

        A fresh ``state`` (and PKCE verifier) is remembered server-side for this browser,
        single use, for ``SPOTIFY_LOGIN_TTL`` seconds; several logins may be pending at once.
        ``scopes`` replaces the configured scopes for this login; ``next_url`` is kept with it
        and given back by :meth:`complete_login`.
        """
        return await _core().begin_login(
            session, scopes=scopes, show_dialog=show_dialog, next_url=next_url
        )

    async def get_user_token(self, code: str | None = None) -> AccessToken:
        """Finish the login in the callback route and return this user's token.

        Reads ``state`` and ``error`` from the current request itself: a denied consent raises
        :class:`AuthorizationDenied`; a missing, forged, replayed or expired ``state``, or a
        code Spotify rejects, raises :class:`InvalidCallback` (400) and stores nothing.
        """
        token, _ = await self.complete_login(code)
        return token

    async def complete_login(self, code: str | None = None) -> tuple[AccessToken, str | None]:
        """:meth:`get_user_token`, also giving the ``next_url`` the login was started with."""
        return await _core().finish_login(session, request.args, code, await self._identity_id())

    async def get_access_token(self) -> AccessToken:
        """This user's valid access token, refreshed first if it has expired (one token
        request however many callers wait). Raises :class:`LoginRequired` (401) when not
        logged in and :class:`ReauthorizationRequired` (401) when Spotify no longer accepts
        the login."""
        core = _core()
        return await core.access_token(await self._key(core))

    async def force_renewal(self) -> None:
        """Refresh this user's token now (joining a refresh already in flight)."""
        core = _core()
        await core.force_renewal(await self._key(core))

    async def get_app_token(self) -> AccessToken:
        """The app-only token (client credentials) for catalogue calls that need no user:
        cached and renewed like user tokens. Needs ``SPOTIFY_CLIENT_SECRET``."""
        return await _core().app_token()

    async def web_api(self) -> WebAPI:
        """A Web API client for this user (bearer set, one refresh on 401, bounded 429
        waits, 5xx retries), through the app's pool: ``await (await spotify.web_api()).get("/me")``.
        """
        core = _core()
        key = await self._key(core)
        if key is None:
            raise LoginRequired()
        return core.web_api(key)

    def app_web_api(self) -> WebAPI:
        """A Web API client with the app-only token, for catalogue calls."""
        return _core().web_api(None)

    # -- the rest a login needs -----------------------------------------------------------

    async def is_logged_in(self) -> bool:
        """Whether this browser (or identity) has Spotify tokens."""
        return await self.token_record() is not None

    async def logout(self) -> None:
        """Forget this user's tokens and this browser's login id."""
        core = _core()
        await core.logout(session, await self._key(core))

    async def token_record(self) -> TokenRecord | None:
        """This user's stored record (for showing consent time, expiry...), not refreshed."""
        core = _core()
        return await core.record(await self._key(core))

    def on_reauthorization_required(
        self, hook: Callable[[str], Awaitable[None] | None]
    ) -> Callable[[str], Awaitable[None] | None]:
        """Register ``hook(key)``, called when Spotify stops accepting a user's refresh token
        (the tokens were dropped; the user must log in again). Usable as a decorator."""
        self._reauth_hooks.append(hook)
        return hook

    def manager(self, app: Quart | None = None) -> TokenManager:
        """The :class:`TokenManager` of ``app`` (default: the current app)."""
        return _core(app).manager

    async def _key(self, core: Core) -> str | None:
        return core.key(session, await self._identity_id())

    async def _identity_id(self) -> str | None:
        if self._identity is None:
            return None
        result = self._identity()
        if inspect.isawaitable(result):
            result = await result
        return None if result is None else str(result)


def _core(app: Quart | None = None) -> Core:
    target = app if app is not None else current_app
    try:
        core: Core = target.extensions[EXTENSION_KEY]
    except KeyError:
        raise RuntimeError(
            "SpotifyAuth is not set up on this app: call SpotifyAuth(app) or init_app(app)."
        ) from None
    return core


async def _start() -> None:
    await _core().start()


async def _stop() -> None:
    await _core().stop()
