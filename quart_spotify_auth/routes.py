"""Ready routes and guards for Quart apps (all opt-in; "Building on it" in the docs shows them
in use). The guards need the blueprint registered: they send the browser to its login route.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Awaitable, Callable
from functools import wraps
from typing import Any, ParamSpec, Protocol, TypeVar, cast, overload
from urllib.parse import quote, unquote, urlencode, urlsplit

from quart import (
    Blueprint,
    Quart,
    Response,
    current_app,
    jsonify,
    redirect,
    request,
    session,
    url_for,
)

from .adapter import no_store
from .errors import CrossSiteRequest, ScopesNotAllowed, ScopesNotGranted
from .extension import SpotifyAuth, current_caller, current_core
from .scopes import parse_scopes
from .states import MAX_NEXT

__all__ = [
    "ScopesNotGranted",
    "install_template_globals",
    "login_required",
    "safe_next",
    "same_origin_only",
    "scopes_required",
    "spotify_blueprint",
]

P = ParamSpec("P")
T = TypeVar("T")

BLUEPRINT = "spotify_auth"
_ASKED = "spotify_auth_asked_scopes"  # scopes a guard sent the browser to ask for
_CONTROL = re.compile(r"[\x00-\x1f\x7f\\]")
_URI_SAFE = "/?#[]@!$&'()*+,;=:%~"  # RFC 3986's reserved characters, and % (kept encoded)
#: A guarded view's attribute: the scopes it asks for (a login may ask for those of its app).
_SCOPES = "spotify_auth_scopes"


def safe_next(value: str | None, default: str = "/") -> str:
    """``value`` if it is a same-site path (``/...``), else ``default``: no absolute or
    scheme-relative URL, backslash or control character, also when percent-encoded. What is
    not ASCII, a space or a C1 control is percent-encoded (a ``Location`` is ASCII)."""
    if not value or len(value) > MAX_NEXT:
        return default
    decoded = value
    for _ in range(3):  # decode nested encodings (%252F...) a few levels deep
        decoded = unquote(decoded)
    for candidate in (value, decoded):
        # A path, so no scheme and no host (urlsplit would drop a tab or newline: refused).
        if candidate[:1] != "/" or candidate[:2] == "//" or _CONTROL.search(candidate):
            return default
    try:
        sent = quote(value, safe=_URI_SAFE)
    except UnicodeEncodeError:  # a lone surrogate: no path
        return default
    return sent if len(sent) <= MAX_NEXT else default


def spotify_blueprint(spotify: SpotifyAuth, *, url_prefix: str = "/spotify") -> Blueprint:
    """Routes for the whole login: ``login`` (``?next=/path``, ``?scope=...``), the callback
    (at ``SPOTIFY_REDIRECT_URI``'s path), ``logout`` (POST) and ``token`` (for the Web
    Playback SDK: ``{"access_token", "expires_in"}``, never cached)."""
    blueprint = Blueprint(BLUEPRINT, __name__, url_prefix=url_prefix)

    @blueprint.route("/login")
    async def login() -> Any:
        scopes = parse_scopes(request.args.get("scope")) or None  # empty: the configured ones
        if scopes is not None:
            await _check_scopes(scopes)
        url = await spotify.get_user(scopes=scopes, next_url=safe_next(request.args.get("next")))
        return redirect(url)

    async def callback() -> Any:
        _, next_url = await spotify.complete_login(request.args.get("code"))
        return redirect(safe_next(next_url))

    @blueprint.route("/logout", methods=["POST"])
    @same_origin_only
    async def logout() -> Any:
        await spotify.logout()
        return redirect(safe_next(request.args.get("next")))

    @blueprint.route("/token")
    async def token() -> Any:
        access = await spotify.get_access_token()
        return no_store(jsonify(access_token=access.access_token, expires_in=access.expires_in))

    @blueprint.record_once
    def register_callback(state: Any) -> None:
        app: Quart = state.app
        path = urlsplit(current_core(app).settings.redirect_uri).path or "/"
        app.add_url_rule(path, f"{BLUEPRINT}.callback", callback)

    return blueprint


class _Guard(Protocol):
    @overload
    def __call__(self, func: Callable[P, Awaitable[T]]) -> Callable[P, Awaitable[T]]: ...
    @overload
    def __call__(self, func: Callable[P, T]) -> Callable[P, Awaitable[T]]: ...


@overload
def login_required(func: Callable[P, Awaitable[T]]) -> Callable[P, Awaitable[T]]: ...
@overload
def login_required(func: Callable[P, T]) -> Callable[P, Awaitable[T]]: ...
def login_required(func: Callable[P, Any]) -> Callable[P, Awaitable[Any]]:
    """Send a browser that is not logged in to the blueprint's login, and back here after."""

    @wraps(func)
    async def wrapper(*args: P.args, **kwargs: P.kwargs) -> Any:
        if await current_core().token_record(await current_caller()) is None:
            return _to_login()
        return await current_app.ensure_async(func)(*args, **kwargs)

    return wrapper


def scopes_required(*scopes: str) -> _Guard:
    """Like :func:`login_required`, and ask Spotify once for the ``scopes`` the user has not
    granted (keeping the others); still missing after that: :class:`ScopesNotGranted` (403)."""
    needed = frozenset(scopes)

    def decorator(func: Callable[P, Any]) -> Callable[P, Awaitable[Any]]:
        @wraps(func)
        async def wrapper(*args: P.args, **kwargs: P.kwargs) -> Any:
            record = await current_core().token_record(await current_caller())
            if record is None:
                return _to_login(needed)
            missing = needed - record.scopes
            asked = session.get(_ASKED)
            if missing:
                if isinstance(asked, list) and missing <= set(asked):
                    session.pop(_ASKED, None)
                    raise ScopesNotGranted(
                        "Spotify did not grant the permissions this page needs: "
                        f"{', '.join(sorted(missing))}. Log in again and accept them."
                    )
                session[_ASKED] = sorted(missing)
                return _to_login(record.scopes | needed)
            session.pop(_ASKED, None)
            return await current_app.ensure_async(func)(*args, **kwargs)

        wrapper.__dict__[_SCOPES] = needed | getattr(func, _SCOPES, frozenset())
        return wrapper

    return cast(_Guard, decorator)


def install_template_globals(app: Quart, spotify: SpotifyAuth) -> None:
    """Deprecated: ``init_app`` gives templates ``spotify_access_token()``,
    ``spotify_logged_in()`` and ``spotify_user()`` itself, as the Flask shim does."""
    warnings.warn(
        "install_template_globals() is no longer needed: SpotifyAuth(app) installs the "
        "template globals itself.",
        DeprecationWarning,
        stacklevel=2,
    )


def same_origin_only(func: Callable[P, Awaitable[T]]) -> Callable[P, Awaitable[T]]:
    """Refuse the request (:class:`CrossSiteRequest`, 403) when a browser says it comes from
    another site (``Sec-Fetch-Site``, else ``Origin``): for POST views that change state."""

    @wraps(func)
    async def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
        site = request.headers.get("Sec-Fetch-Site")
        origin = request.headers.get("Origin")
        if site is not None:
            cross = site not in ("same-origin", "none")
        else:
            cross = origin is not None and urlsplit(origin).netloc != request.host
        if cross:
            raise CrossSiteRequest()
        return await func(*args, **kwargs)

    return wrapper


async def _check_scopes(asked: tuple[str, ...]) -> None:
    """A login link may ask for configured, granted, or this app's guarded scopes; else 400."""
    core = current_core()
    extra = set(asked) - set(core.settings.scopes)
    if extra:  # this app's guarded scopes
        views = current_app.view_functions.values()
        extra = extra.difference(*(getattr(view, _SCOPES, ()) for view in views))
    if extra:
        record = await core.token_record(await current_caller())
        extra -= record.scopes if record is not None else set()
    if extra:
        raise ScopesNotAllowed(
            f"This login asks for scopes this app does not use: {', '.join(sorted(extra))}. "
            "Add them to SPOTIFY_SCOPES or to a scopes_required guard if the app needs them."
        )


def _to_login(scopes: frozenset[str] | None = None) -> Response:
    query: dict[str, str] = {"next": request.full_path.rstrip("?")}
    if scopes:
        query["scope"] = " ".join(sorted(scopes))
    return redirect(url_for(f"{BLUEPRINT}.login") + "?" + urlencode(query))  # type: ignore[return-value]
