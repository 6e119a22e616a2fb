"""The Flask shim: the same extension for sync Flask apps.

.. code-block:: python

    from quart_spotify_auth.flask import SpotifyAuth

    spotify = SpotifyAuth(app)
    url = spotify.get_user()
    token = spotify.get_user_token(request.args.get("code"))
    token = spotify.get_access_token()

The async core runs on one long-lived event loop in a daemon thread per process, started on
first use and started again in a forked child (gunicorn ``--preload``); the pooled HTTP client,
the single-flight refreshes and the background renewer live on it. Each method hands its work
to that loop and waits, so threaded servers (werkzeug, gunicorn gthread) share one refresh per
token; a token this process already holds, still valid, is returned without that hop. Never an
event loop per request. The methods also work inside Flask ``async def`` views.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import threading
import weakref
from collections.abc import Callable, Iterable
from typing import Any

import httpx
from flask import Flask, after_this_request, current_app, g, request, session

from .adapter import BaseSpotifyAuth, session_cookie_status
from .core import EXTENSION_KEY, Caller, Core, identity_of, registered
from .loopthread import run
from .loopthread import stop as stop_loop
from .stores import TokenStore
from .tokens import AccessToken, TokenRecord
from .webapi import Verbs, WebAPI

__all__ = ["SpotifyAuth", "SyncWebAPI", "run"]


_STATES: weakref.WeakSet[_AppState] = weakref.WeakSet()


class _AppState:
    """One Flask app's core, started on the loop thread; built again in a forked child (the
    parent's is bound to the parent's loop), keeping the store."""

    def __init__(
        self, build: Callable[[TokenStore | None], Core], check: Callable[[Core], None]
    ) -> None:
        self._build = build
        self._check = check
        self._core = build(None)
        self._pid = os.getpid()
        self._started = False
        self._lock = threading.Lock()
        _STATES.add(self)

    def core(self) -> Core:
        if self._started and self._pid == os.getpid():
            return self._core
        with self._lock:
            if self._pid != os.getpid():
                self._core = self._build(self._core.store)
                self._pid = os.getpid()
                self._started = False
            if not self._started:
                self._check(self._core)
                run(self._core.start())
                self._started = True
            return self._core

    def stop(self) -> None:
        with self._lock:
            if self._started and self._pid == os.getpid():
                self._started = False
                run(self._core.stop(), timeout=30)


def _stop_all() -> None:
    """Stop every app's renewer and connections in this process (started again on use)."""
    for state in list(_STATES):
        with contextlib.suppress(Exception):  # never let this break an exit or a fork
            state.stop()


@atexit.register
def _shutdown() -> None:
    _stop_all()
    stop_loop()


# Before this process forks (gunicorn --preload forks its workers from a master that may have
# used the shim at import time): the master keeps no renewer it would never use, and the
# children inherit no task in flight. The parent starts again on its next use.
os.register_at_fork(before=_stop_all)


class SpotifyAuth(BaseSpotifyAuth):
    """Spotify login for a Flask app: the same keys, verbs, tokens, errors and signals as the
    Quart extension, as plain sync methods. Arguments are those of
    :class:`quart_spotify_auth.SpotifyAuth`; ``identity`` is a plain function here."""

    def init_app(self, app: Flask) -> None:
        """Read and check the configuration (``ConfigurationError`` with the fix), and give
        templates ``spotify_access_token()``, ``spotify_logged_in()`` and ``spotify_user()``."""
        app.extensions[EXTENSION_KEY] = _AppState(
            lambda store: self._build(app, store), lambda core: self._check_serving(app, core)
        )
        self._install_template_globals(app)

    # -- the four verbs -------------------------------------------------------------------

    def get_user(
        self,
        *,
        scopes: str | Iterable[str] | None = None,
        show_dialog: bool | None = None,
        next_url: str | None = None,
    ) -> str:
        """The Spotify authorize URL for this browser; redirect to it to log in.

        As :meth:`quart_spotify_auth.SpotifyAuth.get_user`: the ``state`` is signed with the
        app's secret key, not stored server-side; this browser's session lists a digest of
        it, so only this browser can finish the login, once."""
        core, caller = current_core(), current_caller()
        return run(
            core.begin_login(caller, scopes=scopes, show_dialog=show_dialog, next_url=next_url)
        )

    def get_user_token(self, code: str | None = None) -> AccessToken:
        """Finish the login in the callback route (reads ``state``/``error`` from the request
        itself) and return this user's token."""
        return self.complete_login(code)[0]

    def get_access_token(self) -> AccessToken:
        """This user's valid access token, refreshed first if it has expired."""
        core = current_core()
        caller = current_caller(core)
        token = core.held_token(caller)
        return token if token is not None else run(core.access_token(caller))

    def force_renewal(self) -> None:
        """Refresh this user's token now."""
        run(current_core().force_renewal(current_caller()))

    # -- the rest a login needs -----------------------------------------------------------

    def complete_login(self, code: str | None = None) -> tuple[AccessToken, str | None]:
        """:meth:`get_user_token`, also giving the ``next_url`` the login was started with."""
        args = request.args.to_dict()
        return run(current_core().complete_login(current_caller(), args, code))

    def is_logged_in(self) -> bool:
        """Whether this browser (or identity) has Spotify tokens."""
        return self.token_record() is not None

    def logout(self) -> None:
        """Forget this user's tokens and this browser's login id."""
        run(current_core().logout(current_caller()))

    def token_record(self) -> TokenRecord | None:
        """This user's stored record, not refreshed."""
        return run(current_core().token_record(current_caller()))

    def get_app_token(self) -> AccessToken:
        """The app-only (client credentials) token, cached and renewed."""
        return run(current_core().app_token())

    def web_api(self) -> SyncWebAPI:
        """A Web API client for this user, its calls run on the shim's loop."""
        return SyncWebAPI(current_core().web_api(current_caller()))

    def app_web_api(self) -> SyncWebAPI:
        """A Web API client with the app-only token, for catalogue calls."""
        return SyncWebAPI(current_core().web_api(None))

    def core(self, app: Flask | None = None) -> Core:
        """The :class:`~.core.Core` of ``app`` (default: the current app), started."""
        return current_core(app)

    def close(self, app: Flask | None = None) -> None:
        """Stop ``app``'s renewer and close its connections now (also done at exit); the
        next use starts them again."""
        _state(app).stop()

    def _template_token(self) -> str | None:
        after_this_request(self._no_store)  # a page that renders a token is never cached
        return run(current_core().token_or_none(current_caller()))

    def _template_user(self) -> dict[str, Any] | None:
        if "_spotify_user" not in g:
            g._spotify_user = run(current_core().profile(current_caller()))
        user: dict[str, Any] | None = g._spotify_user
        return user


class SyncWebAPI(Verbs[httpx.Response]):
    """:class:`~.webapi.WebAPI` for sync code: each call runs on the shim's loop."""

    def __init__(self, api: WebAPI) -> None:
        self.api = api

    def __repr__(self) -> str:
        return f"Sync{self.api!r}"

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        return run(self.api.request(method, path, **kwargs))


def _state(app: Flask | None = None) -> _AppState:
    state: _AppState = registered(app if app is not None else current_app)
    return state


def current_core(app: Flask | None = None) -> Core:
    """The started :class:`~.core.Core` of ``app`` (default: the current app)."""
    return _state(app).core()


def current_caller(core: Core | None = None) -> Caller:
    """The current request's session and identity. The real session object, not the proxy:
    the core runs on the loop thread while this one waits, and the proxy only resolves here."""
    hook = (core or current_core()).identity
    identity = identity_of(None if hook is None else hook())
    real = session._get_current_object()  # type: ignore[attr-defined]
    app, cookies = current_app._get_current_object(), request.cookies  # type: ignore[attr-defined]
    return Caller(real, identity, lambda: session_cookie_status(app, cookies))
