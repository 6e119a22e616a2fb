"""What the Quart extension and the Flask shim share: the constructor and its options, the
reauthorization hooks, template globals and the seed's names. Each adapter adds only how it
finds the current session, request and identity, and how it runs the core's coroutines.
"""

from __future__ import annotations

import inspect
import logging
import sys
import time
import warnings
from collections.abc import Awaitable, Callable, Mapping
from typing import Any
from urllib.parse import urlsplit

import httpx
from itsdangerous import BadSignature
from werkzeug.exceptions import HTTPException
from werkzeug.routing import RequestRedirect

from . import signals
from .config import DEFAULTS
from .core import COOKIE_ABSENT, COOKIE_FOREIGN, COOKIE_UNKNOWN, COOKIE_VALID, Core, build_core
from .refresh import Refresher
from .stores import TokenStore

__all__ = ["BaseSpotifyAuth", "Identity", "ReauthHook", "session_cookie_status"]

logger = logging.getLogger("quart_spotify_auth")

#: The Flask-Spotify-Auth names already logged as deprecated in this process.
_SEED_NAMES_SAID: set[str] = set()

#: The app's own user id for the current request (a ``str`` or ``int``), or ``None`` or another
#: falsy value for a visitor the app does not know (then the browser is the key).
Identity = Callable[[], Awaitable[str | int | None] | str | int | None]
#: Called with the store key when Spotify stops accepting that user's refresh token.
ReauthHook = Callable[[str], Awaitable[None] | None]


def session_cookie_status(app: Any, cookies: Mapping[str, str]) -> str:
    """Whether the request brought the app's session cookie, and whether the app's secret
    key reads it: ``"absent"``, ``"valid"``, ``"foreign"`` (signed with another key), or
    ``"?"`` for a session interface that does not sign cookies the framework's way. Asked only
    when a login cannot be found, to name the cause."""
    value = cookies.get(app.config.get("SESSION_COOKIE_NAME") or "session")
    if not value:
        return COOKIE_ABSENT
    signing = getattr(app.session_interface, "get_signing_serializer", None)
    serializer = signing(app) if callable(signing) else None
    if serializer is None:
        return COOKIE_UNKNOWN
    try:
        serializer.loads(value)  # no max_age: an expired cookie is still this app's
    except BadSignature:
        return COOKIE_FOREIGN
    except Exception:  # a cookie the serializer cannot even parse: not ours to judge
        return COOKIE_UNKNOWN
    return COOKIE_VALID


class BaseSpotifyAuth:
    """The options both adapters take; see :class:`quart_spotify_auth.SpotifyAuth`."""

    def __init__(
        self,
        app: Any = None,
        *,
        store: TokenStore | None = None,
        identity: Identity | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        clock: Callable[[], float] = time.time,
        **config: Any,
    ) -> None:
        self._options: dict[str, Any] = {
            "identity": identity,
            "transport": transport,
            "clock": clock,
        }
        self._store = store
        self._config = config
        self._reauth_hooks: list[ReauthHook] = []
        if app is not None:
            self.init_app(app)

    def __repr__(self) -> str:
        name = type(self).__module__.rsplit(".", 1)[-1]
        prefix = "flask." if name == "flask" else ""
        identity = "custom" if self._options["identity"] else "browser"
        return f"{prefix}SpotifyAuth(identity={identity})"

    def init_app(self, app: Any) -> None:  # pragma: no cover - each adapter has its own
        raise NotImplementedError

    def _build(self, app: Any, store: TokenStore | None = None) -> Core:
        """Check the configuration and build ``app``'s core; connect the hooks and install
        the template globals."""
        core = build_core(
            app.config,
            self._config,
            secret_key=app.secret_key,
            store=store if store is not None else self._store,
            sender=app,
            instance_path=app.instance_path,
            **self._options,
        )
        signals.reauthorization_required.connect(self._reauthorized, sender=app, weak=False)
        core.seen_config = {key: app.config.get(key) for key in DEFAULTS}
        return core

    @staticmethod
    def _check_serving(app: Any, core: Core) -> None:
        """When the app starts serving, say what would otherwise show only as a failure later:
        settings changed after ``init_app`` (they are not used), and no route at the redirect
        URI's path (users would land on a 404 after consent)."""
        changed = [k for k in DEFAULTS if app.config.get(k) != core.seen_config.get(k)]
        if changed:
            logger.warning(
                "%s changed after SpotifyAuth(app) / init_app(app) read the configuration, and "
                "is not used: set the configuration before init_app.",
                ", ".join(changed),
            )
        path = urlsplit(core.settings.redirect_uri).path or "/"
        try:
            app.url_map.bind("127.0.0.1").match(path, method="GET")
        except RequestRedirect:
            pass  # e.g. a missing trailing slash: the browser follows it with the query
        except HTTPException:
            logger.warning(
                "No route of this app answers GET %s, the path of SPOTIFY_REDIRECT_URI: after "
                "consent Spotify sends users there, to a 404. Register spotify_blueprint(spotify) "
                "or a route there that calls get_user_token().",
                path,
            )

    def _install_template_globals(self, app: Any) -> None:
        """``spotify_access_token()``, ``spotify_logged_in()`` and ``spotify_user()``; a page
        that renders the token is sent with ``Cache-Control: no-store``."""
        app.add_template_global(self._template_token, "spotify_access_token")
        app.add_template_global(self.is_logged_in, "spotify_logged_in")
        app.add_template_global(self._template_user, "spotify_user")

    def on_reauthorization_required(self, hook: ReauthHook) -> ReauthHook:
        """Register ``hook(key)`` (sync or async), called when Spotify stops accepting a
        user's refresh token (the tokens were dropped; the user must log in again). Usable as
        a decorator. The same as connecting to
        :data:`quart_spotify_auth.signals.reauthorization_required`."""
        self._reauth_hooks.append(hook)
        return hook

    async def _reauthorized(self, sender: Any, *, key: str, **_: Any) -> None:
        for hook in list(self._reauth_hooks):
            try:
                result = hook(key)
                if inspect.isawaitable(result):
                    await result
            except Exception:
                logger.exception("A reauthorization hook failed")

    # -- Flask-Spotify-Auth's names, deprecated ---------------------------------------------

    def getUser(self) -> Any:  # noqa: N802 - the seed's name
        """Deprecated: use ``get_user()``."""
        return self._seed("getUser", "get_user")()

    def getUserToken(self, code: str | None = None) -> Any:  # noqa: N802
        """Deprecated: use ``get_user_token(code)``."""
        return self._seed("getUserToken", "get_user_token")(code)

    def getAccessToken(self) -> Any:  # noqa: N802
        """Deprecated: use ``get_access_token()``."""
        return self._seed("getAccessToken", "get_access_token")()

    def forceRenewal(self) -> Any:  # noqa: N802
        """Deprecated: use ``force_renewal()``."""
        return self._seed("forceRenewal", "force_renewal")()

    def manager(self, app: Any = None) -> Refresher:
        """Deprecated: ``core(app).refresher`` (reading and refreshing tokens) and
        ``core(app).renewer``; for what happened, the signals of :mod:`.signals`."""
        warnings.warn(
            "SpotifyAuth.manager() is deprecated: use core(app).refresher, and the signals in "
            "quart_spotify_auth.signals instead of its stats.",
            DeprecationWarning,
            stacklevel=2,
        )
        refresher: Refresher = self.core(app).refresher
        return refresher

    def _seed(self, old: str, new: str) -> Callable[..., Any]:
        """The method ``new`` that ``old`` became, saying so: a ``DeprecationWarning`` (for
        test suites and ``-W error``), and once per name and process a log line at WARNING,
        which ``flask run``, hypercorn and a plain ``python app.py`` all show (Python hides a
        ``DeprecationWarning`` raised outside ``__main__`` by default)."""
        message = f"SpotifyAuth.{old}() is Flask-Spotify-Auth's name; use {new}()."
        warnings.warn(message, DeprecationWarning, stacklevel=3)
        if old not in _SEED_NAMES_SAID:
            _SEED_NAMES_SAID.add(old)
            caller = sys._getframe(2)
            logger.warning(
                "%s:%d: %s It goes in 0.3; the migration page of the docs maps "
                "every Flask-Spotify-Auth name to its new one.",
                caller.f_code.co_filename,
                caller.f_lineno,
                message,
            )
        method: Callable[..., Any] = getattr(self, new)
        return method

    @staticmethod
    def _no_store(response: Any) -> Any:
        """For a response that carries a token: never cached."""
        response.headers["Cache-Control"] = "no-store"
        response.headers["Pragma"] = "no-cache"
        return response

    # Each adapter defines these (async in Quart, sync in Flask).
    core: Callable[[Any], Core]
    is_logged_in: Callable[[], Any]
    _template_token: Callable[[], Any]
    _template_user: Callable[[], Any]
