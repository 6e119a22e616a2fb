"""What both adapters share (Authlib's integration shape): building an app's core, identity
lookup, template globals and hooks. Each adapter adds its context locals and how it runs."""

from __future__ import annotations

import asyncio
import inspect
import threading
import time
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any, Concatenate, ParamSpec, TypeVar, cast

from . import signals
from .config import DEFAULTS, load_settings, unknown_keys, warn_user
from .core import EXTENSION_KEY, Caller, Core
from .diagnostics import foreign_session_cookie
from .errors import ConfigurationError, LoginRequired, SpotifyAuthError
from .seed import SeedNames
from .states import signing_key
from .stores import TokenStore, open_store
from .stores.cache import bounded_insert
from .tokens import AccessToken, TokenRecord
from .webapi import WebAPI

if TYPE_CHECKING:
    from .http import Transport

__all__ = [
    "BaseSpotifyAuth",
    "Context",
    "User",
    "build_core",
    "identity_of",
    "no_store",
    "registered",
]

from .signals import logger

LOG_EVERY = 5.0  # seconds in which the same 503 (its text and notes) is logged once
_logged: dict[str, float] = {}  # each 503's text: when it was last logged (monotonic)
_logging = threading.Lock()

P = ParamSpec("P")
T = TypeVar("T")
#: What an adapter's ``_call`` runs: a coroutine method of :class:`Core` for the caller.
Job = Callable[Concatenate[Core, Caller, P], Coroutine[Any, Any, T]]

#: The app's own user id for the current request, or a falsy value (then the browser is the key).
Identity = Callable[[], Awaitable[str | int | None] | str | int | None]
#: Called with the store key when Spotify stops accepting that user's refresh token.
ReauthHook = Callable[[str], Awaitable[None] | None]


def build_core(
    config: Mapping[str, Any],
    overrides: Mapping[str, Any],
    *,
    secret_key: str | bytes | Callable[[], object],
    store: TokenStore | None = None,
    transport: Transport | None = None,
    clock: Callable[[], float] = time.time,
    identity: Callable[[], Any] | None = None,
    sender: Any = None,
    instance_path: str = "instance",
) -> Core:
    """Check the configuration (raising :class:`ConfigurationError` with the fix) and build
    one app's :class:`Core`."""
    unknown = [k for k in overrides if k not in DEFAULTS]
    if unknown:
        raise ConfigurationError(
            f"Unknown SpotifyAuth options: {', '.join(unknown)}. The options are the "
            "SPOTIFY_* settings (see the configuration table) and store, identity, transport "
            "and clock."
        )
    for warning in unknown_keys({**config, **overrides}):
        warn_user(warning)  # at the user's SpotifyAuth(app) / init_app(app) line
    settings = load_settings(config, overrides)
    signing_key(secret_key() if callable(secret_key) else secret_key)  # unset: say so now
    store = store if store is not None else open_store(settings, clock, instance_path)
    options = {"transport": transport, "clock": clock, "identity": identity, "sender": sender}
    return Core(settings, store, secret_key, **options)


def registered(app: Any) -> Any:
    """What the adapter put in ``app.extensions`` (the Quart core, the Flask shim's state)."""
    try:
        return app.extensions[EXTENSION_KEY]
    except KeyError:
        raise RuntimeError(
            "SpotifyAuth is not set up on this app: call SpotifyAuth(app) or init_app(app)."
        ) from None


def identity_of(value: object) -> str | None:
    """What an ``identity`` hook returned, as the user id: ``None`` for any falsy or blank
    value, the text of a ``str`` or ``int``, else a :class:`TypeError` that names the fix."""
    if not value or (isinstance(value, str) and not value.strip()):
        return None
    if isinstance(value, bool) or not isinstance(value, str | int):
        text = repr(value)
        raise TypeError(
            f"The identity hook returned {type(value).__name__} "
            f"{text if len(text) <= 40 else text[:37] + '...'}; it must return "
            "the user's id as a str or int, or None (or another falsy value) for a visitor "
            "who is not logged in to the app."
        )
    return str(value)


class User:
    """One of the app's users outside a request (a job, a bot, a websocket), by the id the
    ``identity`` hook gives: ``spotify.for_user(user_id)``. The request verbs, for that user;
    a refresh here and one in a request are the same single flight."""

    def __init__(self, core: Core, user_id: str | int) -> None:
        if core.identity is None:
            raise ConfigurationError(
                "for_user() finds a user by the id your identity hook gives, and this app has "
                "none: its logins are kept per browser. Pass SpotifyAuth(app, identity=...)."
            )
        identity = identity_of(user_id)
        if identity is None:
            raise ValueError(f"for_user() needs the user's id, not {user_id!r}.")
        self._core, self._caller = core, Caller({}, identity)

    def __repr__(self) -> str:
        return f"User({self._caller.identity!r})"

    async def get_access_token(self) -> AccessToken:
        """This user's valid token, refreshed first if stale; :class:`LoginRequired` if none."""
        return await self._core.access_token(self._caller)

    async def force_renewal(self) -> None:
        """Refresh this user's token now (joining a refresh already in flight)."""
        await self._core.force_renewal(self._caller)

    async def logout(self) -> None:
        """Forget this user's tokens, in every worker."""
        await self._core.logout(self._caller)

    async def token_record(self) -> TokenRecord | None:
        """This user's stored record (consent time, expiry...), not refreshed."""
        return await self._core.token_record(self._caller)

    async def is_logged_in(self) -> bool:
        """Whether this user has Spotify tokens."""
        return await self.token_record() is not None

    async def web_api(self) -> WebAPI:
        """A Web API client for this user."""
        return self._core.web_api(self._caller)


@dataclass(frozen=True, slots=True)
class Context:
    """One framework's context locals, through which its adapter reads the current request."""

    app: Any
    request: Any
    session: Any
    g: Any
    after_this_request: Callable[[Any], Any]
    before_render_template: Any

    def current_app(self) -> Any:
        """The current app itself, not the proxy (an attribute read through a proxy costs
        several times a lookup of the object; this is on every token's path)."""
        return self.app._get_current_object()

    def caller(self, identity: object) -> Caller:
        """The request's :class:`Caller`, given what the ``identity`` hook returned. It holds
        the real session, not the proxy: the Flask shim's core runs on another thread. The
        request's cookies are read only if the login check asks (a parse and a proxy read
        less on each token's path)."""
        request = self.request._get_current_object()
        foreign = partial(foreign_session_cookie, self.current_app(), request)
        return Caller(self.session._get_current_object(), identity_of(identity), foreign)


class BaseSpotifyAuth(SeedNames):
    """The options both adapters take; see :class:`quart_spotify_auth.SpotifyAuth`."""

    def __init__(
        self,
        app: Any = None,
        *,
        store: TokenStore | None = None,
        identity: Identity | None = None,
        transport: Transport | None = None,
        clock: Callable[[], float] = time.time,
        **config: Any,
    ) -> None:
        self._options: dict[str, Any] = dict(identity=identity, transport=transport, clock=clock)
        self._store = store
        self._config = config
        self._reauth_hooks: list[ReauthHook] = []
        if app is not None:
            self.init_app(app)

    def __repr__(self) -> str:
        prefix = "flask." if type(self).__module__.endswith(".flask") else ""
        identity = "custom" if self._options["identity"] else "browser"
        return f"{prefix}SpotifyAuth(identity={identity})"

    def init_app(self, app: Any) -> None:
        """Check the configuration (:class:`ConfigurationError`), start and stop with the app, and
        give templates ``spotify_access_token()``, ``spotify_logged_in()``, ``spotify_user()``."""
        app.extensions[EXTENSION_KEY] = self._register(app)
        app.add_template_global(self._template_token, "spotify_access_token")
        app.add_template_global(self.is_logged_in, "spotify_logged_in")
        app.add_template_global(self._template_user, "spotify_user")
        self._context.before_render_template.connect(self._rendering, sender=app, weak=False)
        # Before the app's error handler or the default page. The error comes last: Quart 0.23
        # passes the request context first, Quart 0.22 and Flask pass the error alone.
        handle = app.handle_http_exception
        app.handle_http_exception = lambda *args: handle(*args[:-1], logged(args[-1]))

    def _build(self, app: Any, store: TokenStore | None = None) -> Core:
        """Build ``app``'s core and connect the reauthorization hooks."""
        core = build_core(
            app.config,
            self._config,
            secret_key=lambda: app.secret_key,  # read at each use: a later key counts
            store=store if store is not None else self._store,
            sender=app,
            instance_path=app.instance_path,
            **self._options,
        )
        signals.reauthorization_required.connect(self._reauthorized, sender=app, weak=False)
        core.seen_config = {key: app.config.get(key) for key in DEFAULTS}
        return core

    def on_reauthorization_required(self, hook: ReauthHook) -> ReauthHook:
        """Register ``hook(key)`` (sync or async, usable as a decorator), called when Spotify
        stops accepting a user's refresh token: :data:`.signals.reauthorization_required`."""
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

    def _template_token(self) -> Any:
        self._context.after_this_request(no_store)  # a page that renders a token: not cached
        return self._call(_token_or_none)

    def _rendering(self, _app: Any, **_: Any) -> Any:
        if self._context.request:  # streamed, a page may render the token after its headers left
            self._context.after_this_request(_no_store_if_streamed)

    def _template_user(self) -> Any:
        """This user's ``/v1/me`` profile, fetched once per request."""
        g = self._context.g
        if "_spotify_user" not in g:
            user = self._call(_profile)
            # Quart's is a coroutine: kept as a task, which each call in a template can await.
            g._spotify_user = asyncio.ensure_future(user) if inspect.iscoroutine(user) else user
        return g._spotify_user

    # Each adapter sets these: its context locals, what it keeps in ``app.extensions``, and
    # (async in Quart, sync in Flask) how it runs ``job(core, caller, *args)``.
    _context: Context
    _register: Callable[[Any], Any]
    _call: Callable[..., Any]
    is_logged_in: Callable[[], Any]


async def _token_or_none(core: Core, caller: Caller) -> str | None:
    try:
        return (await core.access_token(caller)).access_token
    except LoginRequired:
        return None


async def _profile(core: Core, caller: Caller) -> dict[str, Any] | None:
    try:
        reply = await core.web_api(caller).get("/me")
    except LoginRequired:
        return None
    return cast("dict[str, Any] | None", reply.json() if reply.status_code == 200 else None)


def _no_store_if_streamed(response: Any) -> Any:
    streamed = getattr(response, "is_streamed", None)  # Flask's; Quart streams an IterableBody
    return no_store(response) if streamed or hasattr(response.response, "iter") else response


def logged(error: Any) -> Any:
    """``error``; one of this extension's 503s is logged with its text and notes (where, what the
    store said), the same at most once per ``LOG_EVERY`` seconds."""
    if isinstance(error, SpotifyAuthError) and error.code == 503:
        detail = "; ".join([str(error.description), *getattr(error, "__notes__", ())])
        with _logging:  # the Flask shim's request threads too
            if time.monotonic() - _logged.get(detail, float("-inf")) >= LOG_EVERY:
                bounded_insert(_logged, detail, time.monotonic(), 1000)
                logger.warning("503: %s", detail)
    return error


def no_store(response: Any) -> Any:
    """For a response that carries a token: never cached."""
    response.headers["Cache-Control"] = "no-store"
    response.headers["Pragma"] = "no-cache"
    return response
