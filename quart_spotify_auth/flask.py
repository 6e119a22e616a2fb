"""The Flask shim: the Quart extension's verbs as sync methods. Each hands its work to the
process's loop thread (:mod:`.loopthread`) and waits, but a valid token held here needs no hop."""

from __future__ import annotations

import atexit
import contextlib
import os
import threading
import weakref
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any, cast

from flask import Flask, after_this_request, current_app, g, request, session
from flask.signals import before_render_template

from .adapter import BaseSpotifyAuth, Context, Job, P, T, User, registered
from .core import Caller, Core
from .diagnostics import check_serving
from .logins import Login, logins
from .loopthread import block_on
from .loopthread import stop as stop_loop
from .tokens import AccessToken, TokenRecord
from .webapi import Verbs, WebAPI

if TYPE_CHECKING:
    import httpx

__all__ = ["SpotifyAuth", "SyncUser", "SyncWebAPI", "block_on"]

FLASK = Context(current_app, request, session, g, after_this_request, before_render_template)


_STATES: weakref.WeakSet[_AppState] = weakref.WeakSet()


class _AppState:
    """One Flask app's core, started on the loop thread; built again in a forked child (the
    parent's is bound to the parent's loop), keeping the store."""

    def __init__(self, spotify: SpotifyAuth, app: Flask) -> None:
        self._spotify = spotify
        self._app = app
        self._core = spotify._build(app)
        self._pid = os.getpid()
        self._started = False
        self._lock = threading.Lock()
        _STATES.add(self)

    def core(self) -> Core:
        if self._started and self._pid == os.getpid():
            return self._core
        with self._lock:
            if self._pid != os.getpid():
                self._core = self._spotify._build(self._app, self._core.store)
                self._pid = os.getpid()
                self._started = False
            if not self._started:
                check_serving(self._app, self._core)
                block_on(self._core.start())
                self._started = True
            return self._core

    def stop(self) -> None:
        with self._lock:
            if self._started and self._pid == os.getpid():
                self._started = False
                block_on(self._core.stop(), timeout=30)


def _stop_all() -> None:
    """Stop every app's renewer and connections in this process (started again on use)."""
    for state in list(_STATES):
        with contextlib.suppress(Exception):  # never let this break an exit or a fork
            state.stop()


@atexit.register
def _shutdown() -> None:
    _stop_all()
    stop_loop()


# Before a fork (gunicorn --preload): no renewer kept in the master, no task in flight inherited.
os.register_at_fork(before=_stop_all)


def current_core(app: Flask | None = None) -> Core:
    """The started :class:`~.core.Core` of ``app`` (default: the current app)."""
    return cast(_AppState, registered(app if app is not None else FLASK.current_app())).core()


class SpotifyAuth(BaseSpotifyAuth):
    """Spotify login for a Flask app: the same keys, verbs, tokens, errors and signals as the
    Quart extension, as plain sync methods. Arguments are those of
    :class:`quart_spotify_auth.SpotifyAuth`; ``identity`` is a plain function here."""

    def _register(self, app: Flask) -> _AppState:
        return _AppState(self, app)

    def get_user(
        self,
        *,
        scopes: str | Iterable[str] | None = None,
        show_dialog: bool | None = None,
        next_url: str | None = None,
    ) -> str:
        """The Spotify authorize URL for this browser; redirect to it to log in."""
        return self._call(
            Core.begin_login, scopes=scopes, show_dialog=show_dialog, next_url=next_url
        )

    def get_user_token(self, code: str | None = None) -> AccessToken:
        """Finish the login in the callback route and return this user's token."""
        return self.complete_login(code)[0]

    def get_access_token(self) -> AccessToken:
        """This user's valid access token, refreshed first if it has expired."""
        core = current_core()
        caller = current_caller(core)
        return core.cached_token(caller) or block_on(core.access_token(caller))

    def force_renewal(self) -> None:
        """Refresh this user's token now."""
        self._call(Core.force_renewal)

    def complete_login(self, code: str | None = None) -> tuple[AccessToken, str | None]:
        """:meth:`get_user_token`, also giving the ``next_url`` the login was started with."""
        return self._call(Core.complete_login, request.args.to_dict(), code)

    def is_logged_in(self) -> bool:
        """Whether this browser (or identity) has Spotify tokens."""
        return self.token_record() is not None

    def logout(self) -> None:
        """Forget this user's tokens and this browser's login id."""
        self._call(Core.logout)

    def token_record(self) -> TokenRecord | None:
        """This user's stored record, not refreshed."""
        return self._call(Core.token_record)

    def get_app_token(self) -> AccessToken:
        """The app-only (client credentials) token, cached and renewed."""
        return block_on(current_core().app_token())

    def web_api(self) -> SyncWebAPI:
        """A Web API client for this user, its calls run on the shim's loop."""
        return SyncWebAPI(current_core().web_api(current_caller()))

    def app_web_api(self) -> SyncWebAPI:
        """A Web API client with the app-only token, for catalogue calls."""
        return SyncWebAPI(current_core().web_api(None))

    def for_user(self, user_id: str | int, *, app: Flask | None = None) -> SyncUser:
        """One of the app's users by the id the ``identity`` hook gives, for a job or a bot:
        ``spotify.for_user(42).get_access_token()``. In an app context, or pass ``app``."""
        return SyncUser(User(current_core(app), user_id))

    def logins(self, *, app: Flask | None = None) -> Iterator[Login]:
        """Every stored login as an admin may see it (never a token)."""
        found = logins(current_core(app).store)

        async def following() -> Login | None:
            return await anext(found, None)

        while (login := block_on(following())) is not None:
            yield login

    core = staticmethod(current_core)

    def close(self, app: Flask | None = None) -> None:
        """Stop ``app``'s renewer and close its connections now (also done at exit)."""
        registered(app or current_app).stop()

    def _call(self, job: Job[P, T], *a: P.args, **k: P.kwargs) -> T:
        core = current_core()
        return block_on(job(core, current_caller(core), *a, **k))

    _context = FLASK


class SyncUser:
    """:class:`~.adapter.User` for sync code: each verb runs on the shim's loop."""

    def __init__(self, user: User) -> None:
        self.user = user

    def __repr__(self) -> str:
        return f"Sync{self.user!r}"

    def get_access_token(self) -> AccessToken:
        """This user's valid token, refreshed first if stale."""
        return block_on(self.user.get_access_token())

    def force_renewal(self) -> None:
        """Refresh this user's token now."""
        block_on(self.user.force_renewal())

    def logout(self) -> None:
        """Forget this user's tokens, in every worker."""
        block_on(self.user.logout())

    def token_record(self) -> TokenRecord | None:
        """This user's stored record, not refreshed."""
        return block_on(self.user.token_record())

    def is_logged_in(self) -> bool:
        """Whether this user has Spotify tokens."""
        return self.token_record() is not None

    def web_api(self) -> SyncWebAPI:
        """A Web API client for this user, its calls run on the shim's loop."""
        return SyncWebAPI(block_on(self.user.web_api()))


class SyncWebAPI(Verbs["httpx.Response"]):
    """:class:`~.webapi.WebAPI` for sync code: each call runs on the shim's loop."""

    def __init__(self, api: WebAPI) -> None:
        self.api = api

    def __repr__(self) -> str:
        return f"Sync{self.api!r}"

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        return block_on(self.api.request(method, path, **kwargs))


def current_caller(core: Core | None = None) -> Caller:
    """The current request's session and identity."""
    hook = (core or current_core()).identity
    return FLASK.caller(None if hook is None else hook())
