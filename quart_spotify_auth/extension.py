"""The Quart extension: the four verbs as async methods, on the shared base (:mod:`.adapter`)."""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Iterable
from typing import Any, cast

from quart import Quart, after_this_request, current_app, g, request, session
from quart.signals import before_render_template

from .adapter import BaseSpotifyAuth, Context, Job, P, T, User, registered
from .core import EXTENSION_KEY, Caller, Core
from .diagnostics import check_serving
from .logins import Login, logins
from .tokens import AccessToken, TokenRecord
from .webapi import WebAPI

__all__ = ["EXTENSION_KEY", "SpotifyAuth", "current_caller", "current_core"]

QUART = Context(current_app, request, session, g, after_this_request, before_render_template)


def current_core(app: Quart | None = None) -> Core:
    """The :class:`~.core.Core` of ``app`` (default: the current app)."""
    return cast(Core, registered(app if app is not None else QUART.current_app()))


class SpotifyAuth(BaseSpotifyAuth):
    """Spotify login for a Quart app.

    .. code-block:: python

        app = Quart(__name__)
        app.secret_key = "..."
        app.config["SPOTIFY_CLIENT_ID"] = "..."
        spotify = SpotifyAuth(app)

    Arguments:
        app: the app to set up now, or call :meth:`init_app` later (for one app or several).
        store: where tokens live (default: per ``SPOTIFY_TOKEN_STORE``).
        identity: returns the app's own user id for the current request (sync or async), to
            key tokens by it instead of by browser; return a constant for a single-account app.
        transport: an httpx transport for Spotify (tests: ``ASGITransport(app=FakeSpotify())``).
        clock: the time source for token expiry (tests can pass a ``FakeClock``).
        config: ``SPOTIFY_*`` keys that take precedence over ``app.config``.
    """

    def _register(self, app: Quart) -> Core:
        core = self._build(app)

        async def start() -> None:
            check_serving(app, core)
            await core.start()

        app.before_serving(start)
        app.after_serving(core.stop)
        return core

    async def get_user(
        self,
        *,
        scopes: str | Iterable[str] | None = None,
        show_dialog: bool | None = None,
        next_url: str | None = None,
    ) -> str:
        """The authorize URL to redirect this browser to (its own single-use ``state`` and PKCE).
        ``scopes`` replaces the configured ones; :meth:`complete_login` gives back ``next_url``."""
        return await self._call(
            Core.begin_login, scopes=scopes, show_dialog=show_dialog, next_url=next_url
        )

    async def get_user_token(self, code: str | None = None) -> AccessToken:
        """Finish the login in the callback route (reading ``state`` and ``error`` from the
        request) and return the token. Consent denied: :class:`AuthorizationDenied`; a bad
        ``state`` or code: :class:`InvalidCallback` (400)."""
        return (await self.complete_login(code))[0]

    async def get_access_token(self) -> AccessToken:
        """This user's valid access token, refreshed first if it has expired (one token
        request however many wait). :class:`LoginRequired` (401) when not logged in."""
        return await self._call(Core.access_token)

    async def force_renewal(self) -> None:
        """Refresh this user's token now (joining a refresh already in flight)."""
        await self._call(Core.force_renewal)

    async def complete_login(self, code: str | None = None) -> tuple[AccessToken, str | None]:
        """:meth:`get_user_token`, also giving the ``next_url`` the login was started with."""
        return await self._call(Core.complete_login, request.args, code)

    async def is_logged_in(self) -> bool:
        """Whether this browser (or identity) has Spotify tokens."""
        return await self.token_record() is not None

    async def logout(self) -> None:
        """Forget this user's tokens and this browser's login id."""
        await self._call(Core.logout)

    async def token_record(self) -> TokenRecord | None:
        """This user's stored record (consent time, expiry...), not refreshed."""
        return await self._call(Core.token_record)

    async def get_app_token(self) -> AccessToken:
        """The app-only (client credentials) token, cached and renewed; needs a secret."""
        return await current_core().app_token()

    async def web_api(self) -> WebAPI:
        """A Web API client for this user: ``await (await spotify.web_api()).get("/me")``."""
        return current_core().web_api(await current_caller())

    def app_web_api(self) -> WebAPI:
        """A Web API client with the app-only token, for catalogue calls."""
        return current_core().web_api(None)

    def for_user(self, user_id: str | int, *, app: Quart | None = None) -> User:
        """One of the app's users by the id the ``identity`` hook gives, for a job, a bot or a
        websocket: ``await spotify.for_user(42).get_access_token()``. In an app context, or
        pass ``app``; a job outside a served app calls :meth:`close` when done."""
        return User(current_core(app), user_id)

    def logins(self, *, app: Quart | None = None) -> AsyncIterator[Login]:
        """Every stored login as an admin may see it (never a token):
        ``async for login in spotify.logins(): ...``."""
        return logins(current_core(app).store)

    core = staticmethod(current_core)

    async def close(self, app: Quart | None = None) -> None:
        """Stop ``app``'s renewer and close its connections now (``after_serving`` does it)."""
        await current_core(app).stop()

    async def _call(self, job: Job[P, T], *a: P.args, **k: P.kwargs) -> T:
        core = current_core()
        return await job(core, await current_caller(core), *a, **k)

    async def _rendering(self, _app: Quart, **_: Any) -> None:  # awaited: no thread per page
        super()._rendering(_app)

    _context = QUART


async def current_caller(core: Core | None = None) -> Caller:
    """The current request's session and identity."""
    hook = (core or current_core()).identity
    identity = None if hook is None else hook()
    if inspect.isawaitable(identity):
        identity = await identity
    return QUART.caller(identity)
