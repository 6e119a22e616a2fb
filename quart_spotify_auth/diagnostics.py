"""Naming the classic setup traps: a late setting, no callback route, a session cookie the app
cannot read, a callback from another host. Used by both adapters and by :mod:`.core`."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from itsdangerous import BadSignature
from werkzeug.exceptions import HTTPException
from werkzeug.routing import RequestRedirect

from .config import DEFAULTS
from .signals import logger

if TYPE_CHECKING:
    from .core import Core

__all__ = ["FOREIGN_SESSION_COOKIE", "NO_PENDING_LOGIN", "check_serving", "foreign_session_cookie"]

NO_PENDING_LOGIN = (
    "No Spotify login is pending for this browser. This usually means the app was opened on a "
    "different host than SPOTIFY_REDIRECT_URI (for example localhost instead of 127.0.0.1), so "
    "the browser did not send its session cookie back, or cookies are blocked. Open the app on "
    "the redirect URI's host and start the login again."
)

FOREIGN_SESSION_COOKIE = (
    "This browser sent a session cookie signed with a different secret key than this app's, "
    "so its Spotify login cannot be read. The usual cause: the secret key is made at random "
    "in each worker process or at each start (for example secrets.token_hex(32) in the app's "
    "code), so workers and restarts disagree. Give every worker one fixed key: "
    "app.secret_key = instance_secret_key(app) keeps one in the instance folder for all the "
    "workers of a host, or set SECRET_KEY to the same long random string everywhere. Then "
    "log in again."
)


def foreign_session_cookie(app: Any, request: Any) -> bool:
    """Whether ``request`` brought a session cookie signed with another key than the app's
    (asked only when a login cannot be found, so its cookies are parsed only then); ``False``
    when the session interface does not sign cookies the framework's way."""
    value = request.cookies.get(app.config.get("SESSION_COOKIE_NAME") or "session")
    signing = getattr(app.session_interface, "get_signing_serializer", None)
    serializer = signing(app) if value and callable(signing) else None
    if serializer is None:
        return False
    try:
        serializer.loads(value)  # no max_age: an expired cookie is still this app's
    except Exception as exc:  # a cookie it cannot even parse is not ours to judge
        return isinstance(exc, BadSignature)
    return False


def check_serving(app: Any, core: Core) -> None:
    """At the app's first serving, log settings changed after ``init_app`` (not used) and a
    missing route at the redirect URI's path (users would land on a 404 after consent)."""
    if changed := [k for k in DEFAULTS if app.config.get(k) != core.seen_config.get(k)]:
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
    from .routes import BLUEPRINT  # routes imports the extension, which imports this

    endpoints = sorted(
        {
            rule.endpoint
            for rule in app.url_map.iter_rules()
            if rule.rule == path
            and "GET" in (rule.methods or ())
            and not getattr(rule, "websocket", False)  # Quart's: a websocket is no GET
            and not rule.host
            and not rule.subdomain
        }
    )
    callback = f"{BLUEPRINT}.callback"
    if callback in endpoints and len(endpoints) > 1:  # the first registered answers
        others = ", ".join(e for e in endpoints if e != callback)
        logger.warning(
            "GET %s, the path of SPOTIFY_REDIRECT_URI, is also a route of this app (%s): one "
            "of them never answers. Give the redirect URI a path no other route has.",
            path,
            others,
        )
