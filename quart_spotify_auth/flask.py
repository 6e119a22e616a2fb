"""The Flask shim: the same extension for sync Flask apps.

.. code-block:: python

    from quart_spotify_auth.flask import SpotifyAuth

    spotify = SpotifyAuth(app)
    url = spotify.get_user()
    token = spotify.get_user_token(request.args.get("code"))
    token = spotify.get_access_token()

The async core runs on one long-lived event loop in a daemon thread per process, started on
first use and started again in a forked child (gunicorn ``--preload``); the pooled HTTP client,
the locks and the background renewer live on it. Each sync method hands its work to that loop
and waits, so threaded servers (werkzeug, gunicorn gthread) share one single-flight refresh.
Never an event loop per request. The methods also work inside Flask ``async def`` views (they
wait on the shim's loop, not the view's).
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import os
import threading
import time
import warnings
import weakref
from collections.abc import Callable, Coroutine, Iterable
from typing import Any, TypeVar

import httpx
from flask import Flask, current_app, request, session
from flask.sessions import SecureCookieSessionInterface

from .core import EXTENSION_KEY, Core, build_core
from .errors import LoginRequired
from .stores import TokenStore
from .tokens import AccessToken, TokenRecord

__all__ = ["SpotifyAuth"]

T = TypeVar("T")


class _LoopThread:
    """One event loop in a daemon thread, per process."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._pid = 0

    def loop(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._loop is None or self._pid != os.getpid():
                # New process (first use, or a fork: threads do not survive it): a new loop.
                self._loop = asyncio.new_event_loop()
                self._pid = os.getpid()
                thread = threading.Thread(
                    target=self._loop.run_forever, name="quart-spotify-auth", daemon=True
                )
                thread.start()
            return self._loop

    def run(self, work: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        """Run ``work`` on the loop thread and wait for its result."""
        loop = self.loop()
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            work.close()
            raise RuntimeError(
                "quart_spotify_auth.flask methods are synchronous and cannot be called from "
                "the shim's own event loop (for example from a reauthorization hook); use the "
                "async core there, or call them from a view."
            )
        return asyncio.run_coroutine_threadsafe(work, loop).result(timeout)

    def stop(self) -> None:
        with self._lock:
            if self._loop is not None and self._pid == os.getpid():
                self._loop.call_soon_threadsafe(self._loop.stop)
            self._loop = None


_LOOP = _LoopThread()
_CORES: weakref.WeakSet[_AppState] = weakref.WeakSet()


class _AppState:
    """One Flask app's core, rebuilt in a forked child (the parent's is bound to its loop)."""

    def __init__(self, build: Callable[[TokenStore | None], Core]) -> None:
        self._build = build
        self._core = build(None)
        self._pid = os.getpid()
        self._started = False
        self._lock = threading.Lock()
        _CORES.add(self)

    def core(self) -> Core:
        with self._lock:
            if self._pid != os.getpid():
                store = self._core.store
                store.forked()
                self._core = self._build(store)  # keeps the store (and what it holds)
                self._pid = os.getpid()
                self._started = False
            if not self._started:
                self._started = True
                _LOOP.run(self._core.start())
            return self._core

    def stop(self) -> None:
        if self._started and self._pid == os.getpid():
            self._started = False
            _LOOP.run(self._core.stop(), timeout=30)


@atexit.register
def _shutdown() -> None:
    for state in list(_CORES):
        with contextlib.suppress(Exception):  # at exit, nothing is left to tell
            state.stop()
    _LOOP.stop()


class SpotifyAuth:
    """Spotify login for a Flask app: the same keys, verbs, tokens and errors as the Quart
    extension, as plain sync methods.

    Arguments are those of :class:`quart_spotify_auth.SpotifyAuth`; ``identity`` must be a
    plain (sync) function here.
    """

    def __init__(
        self,
        app: Flask | None = None,
        *,
        store: TokenStore | None = None,
        identity: Callable[[], str | None] | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        clock: Callable[[], float] = time.time,
        **config: Any,
    ) -> None:
        self._store = store
        self._identity = identity
        self._transport = transport
        self._clock = clock
        self._config = config
        self._reauth_hooks: list[Callable[[str], Any]] = []
        if app is not None:
            self.init_app(app)

    def __repr__(self) -> str:
        return f"flask.SpotifyAuth(identity={'custom' if self._identity else 'browser'})"

    def init_app(self, app: Flask) -> None:
        """Read and check the configuration (``ConfigurationError`` with the fix), and give
        templates ``spotify_access_token()``."""

        def build(store: TokenStore | None) -> Core:
            return build_core(
                app.config,
                self._config,
                secret_key=app.secret_key,
                default_sessions=isinstance(app.session_interface, SecureCookieSessionInterface),
                store=store if store is not None else self._store,
                transport=self._transport,
                clock=self._clock,
                reauth_hooks=self._reauth_hooks,
            )

        app.extensions[EXTENSION_KEY] = _AppState(build)
        app.add_template_global(self._template_token, "spotify_access_token")

    # -- the four verbs -------------------------------------------------------------------

    def get_user(
        self, *, scopes: str | Iterable[str] | None = None, show_dialog: bool | None = None
    ) -> str:
        """The Spotify authorize URL for this browser; redirect to it to log in."""
        core = _core()
        return _LOOP.run(core.begin_login(_session(), scopes=scopes, show_dialog=show_dialog))

    def get_user_token(self, code: str | None = None) -> AccessToken:
        """Finish the login in the callback route (reads ``state``/``error`` from the request
        itself) and return this user's token."""
        core = _core()
        args = request.args.to_dict()
        token, _ = _LOOP.run(core.finish_login(_session(), args, code, self._identity_id()))
        return token

    def get_access_token(self) -> AccessToken:
        """This user's valid access token, refreshed first if it has expired."""
        core = _core()
        return _LOOP.run(core.access_token(self._key(core)))

    def force_renewal(self) -> None:
        """Refresh this user's token now."""
        core = _core()
        _LOOP.run(core.force_renewal(self._key(core)))

    def get_app_token(self) -> AccessToken:
        """The app-only (client credentials) token, cached and renewed."""
        return _LOOP.run(_core().app_token())

    # -- the rest a login needs -----------------------------------------------------------

    def is_logged_in(self) -> bool:
        """Whether this browser (or identity) has Spotify tokens."""
        return self.token_record() is not None

    def logout(self) -> None:
        """Forget this user's tokens and this browser's login id."""
        core = _core()
        _LOOP.run(core.logout(_session(), self._key(core)))

    def token_record(self) -> TokenRecord | None:
        """This user's stored record, not refreshed."""
        core = _core()
        return _LOOP.run(core.record(self._key(core)))

    def on_reauthorization_required(self, hook: Callable[[str], Any]) -> Callable[[str], Any]:
        """Register ``hook(key)`` (run on the shim's loop thread) for when Spotify stops
        accepting a user's refresh token."""
        self._reauth_hooks.append(hook)
        return hook

    def run(self, work: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        """Run a coroutine on the shim's loop (for tests and advanced use)."""
        return _LOOP.run(work, timeout)

    def close(self, app: Flask | None = None) -> None:
        """Stop ``app``'s renewer and close its connections now (also done at exit); the
        next use starts them again."""
        target = app if app is not None else current_app
        state: _AppState = target.extensions[EXTENSION_KEY]
        state.stop()

    def core(self, app: Flask | None = None) -> Core:
        """The :class:`Core` of ``app`` (default: the current app), started."""
        return _core(app)

    # -- Flask-Spotify-Auth's names, deprecated ---------------------------------------------

    def getUser(self) -> str:  # noqa: N802 - the seed's name
        """Deprecated: use :meth:`get_user`."""
        _deprecated("getUser", "get_user")
        return self.get_user()

    def getUserToken(self, code: str | None = None) -> AccessToken:  # noqa: N802
        """Deprecated: use :meth:`get_user_token`."""
        _deprecated("getUserToken", "get_user_token")
        return self.get_user_token(code)

    def getAccessToken(self) -> AccessToken:  # noqa: N802
        """Deprecated: use :meth:`get_access_token`."""
        _deprecated("getAccessToken", "get_access_token")
        return self.get_access_token()

    def forceRenewal(self) -> None:  # noqa: N802
        """Deprecated: use :meth:`force_renewal`."""
        _deprecated("forceRenewal", "force_renewal")
        self.force_renewal()

    # -- helpers ----------------------------------------------------------------------------

    def _identity_id(self) -> str | None:
        if self._identity is None:
            return None
        result = self._identity()
        return None if result is None else str(result)

    def _key(self, core: Core) -> str | None:
        return core.key(_session(), self._identity_id())

    def _template_token(self) -> str | None:
        """``{{ spotify_access_token() }}``: the user's access token, or ``None`` when not
        logged in (for the Web Playback SDK's ``getOAuthToken``)."""
        try:
            return self.get_access_token().access_token
        except LoginRequired:
            return None


def _core(app: Flask | None = None) -> Core:
    target = app if app is not None else current_app
    try:
        state: _AppState = target.extensions[EXTENSION_KEY]
    except KeyError:
        raise RuntimeError(
            "SpotifyAuth is not set up on this app: call SpotifyAuth(app) or init_app(app)."
        ) from None
    return state.core()


def _session() -> Any:
    """The real session object (not the proxy): the core runs on another thread while this
    one waits, and the proxy only resolves on this one."""
    return session._get_current_object()  # type: ignore[attr-defined]


def _deprecated(old: str, new: str) -> None:
    warnings.warn(
        f"SpotifyAuth.{old}() is Flask-Spotify-Auth's name; use {new}().",
        DeprecationWarning,
        stacklevel=3,
    )
