"""One app's Spotify login, framework-free: the flow both adapters call for a :class:`Caller`.

The session holds an opaque login id and short digests of this browser's pending ``state``
values, never a token, code or verifier: ``{"login": "...", "pending": ["...", ...]}``.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from collections.abc import Callable, Iterable, Mapping, MutableMapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from . import signals
from .accounts import POOL_CONNECTIONS, AccountsClient, code_challenge
from .config import Settings
from .diagnostics import FOREIGN_SESSION_COOKIE, NO_PENDING_LOGIN
from .errors import AuthorizationDenied, InvalidCallback, LoginRequired, StoreUnavailable
from .grants import APP_KEY
from .http import Transport, choose
from .renewer import renewal
from .scopes import parse_scopes
from .states import LoginStates
from .stores import TokenStore
from .tokens import AccessToken, TokenRecord
from .webapi import SpotifyBearer, WebAPI
from .wire import lean_transport_for

if TYPE_CHECKING:
    import httpx

__all__ = ["EXTENSION_KEY", "MAX_PENDING", "Caller", "Core"]

#: Where each adapter keeps an app's :class:`Core`: ``app.extensions[EXTENSION_KEY]``.
EXTENSION_KEY = "QUART_SPOTIFY_AUTH"

#: Logins a browser may have started and not finished at once (oldest dropped first).
MAX_PENDING = 5


@dataclass(slots=True)
class Caller:
    """Who is asking: this browser's session, the app's id for its user (if it keys tokens by
    one), and whether the browser's session cookie was signed with another key."""

    session: MutableMapping[str, Any]
    identity: str | None = None
    foreign_cookie: Callable[[], bool] = lambda: False


class Core:
    """One app's Spotify login: settings, store, HTTP pool, refresher, renewer, and the flow."""

    def __init__(
        self,
        settings: Settings,
        store: TokenStore,
        secret_key: str | bytes | Callable[[], object],
        *,
        transport: Transport | None = None,
        clock: Callable[[], float] = time.time,
        identity: Callable[[], Any] | None = None,
        sender: Any = None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.clock = clock
        #: The app's identity hook, called by the adapter (sync or async there).
        self.identity = identity
        #: The sender of this app's signals (the app).
        self.sender = sender
        self._transport = transport
        self.http = self._pool()  # the Web API's; token requests have a pool of their own
        self.accounts = AccountsClient(settings, self._pool(tokens=True), clock=clock)
        self.refresher, self.renewer = renewal(self.accounts, store, settings, clock, sender)
        #: The ``SPOTIFY_*`` part of the app's configuration when it was read.
        self.seen_config: dict[str, Any] = {}
        self.states = LoginStates(secret_key, settings, clock)

    def __repr__(self) -> str:
        return f"Core({self.settings!r}, {self.store!r})"

    def _pool(self, *, tokens: bool = False) -> httpx.AsyncClient:
        """An HTTP client of the app's library; for ``tokens`` (the accounts service's) on
        :mod:`.wire`'s transport unless the app gave one or a proxy is set."""
        lib = choose(self.settings.http_library, self._transport)  # a ConfigurationError first
        transport = self._transport
        if tokens and transport is None:
            transport = lean_transport_for(
                lib, self.settings.accounts_url, max_connections=POOL_CONNECTIONS, keepalive=20
            )
        return lib.AsyncClient(  # type: ignore[no-any-return]
            timeout=lib.Timeout(self.settings.http_timeout),
            transport=transport,
            limits=lib.Limits(max_connections=POOL_CONNECTIONS, max_keepalive_connections=20),
            headers={"User-Agent": "quart-spotify-auth"},
        )

    async def start(self) -> None:
        """Open the store and start the renewer, on the loop that serves the app."""
        await self.store.open()
        self.renewer.start()

    async def stop(self) -> None:
        """Stop the renewer (letting refreshes in flight land), close the store and the HTTP
        pools; new ones are ready should the app serve again."""
        await self.renewer.stop()
        await self.store.close()
        pools = self.http, self.accounts.http
        self.http, self.accounts.http = self._pool(), self._pool(tokens=True)
        for pool in pools:
            await pool.aclose()

    def key(self, caller: Caller) -> str | None:
        """Where this user's tokens are stored: the app's identity, else the browser's login
        id, else ``None`` (not logged in)."""
        identity = caller.identity
        if identity:  # "" is no identity: the browser is the key, as for None
            try:
                identity.encode()
            except UnicodeEncodeError:  # not text (a lone surrogate): a key of its bytes
                return "user!" + identity.encode("utf-8", "surrogatepass").hex()
            return f"user:{identity}"
        data = caller.session.get(self.settings.session_key)
        login = data.get("login") if isinstance(data, dict) else None
        return f"browser:{login}" if isinstance(login, str) and login else None

    def _key_or_401(self, caller: Caller) -> str:
        key = self.key(caller)
        if key is None:
            if caller.identity is None and caller.foreign_cookie():
                raise LoginRequired(FOREIGN_SESSION_COOKIE)
            raise LoginRequired()
        return key

    async def begin_login(
        self,
        caller: Caller,
        *,
        scopes: str | Iterable[str] | None = None,
        show_dialog: bool | None = None,
        next_url: str | None = None,
    ) -> str:
        """A fresh signed state (with its PKCE verifier, and where to go next), listed in this
        browser's session; the authorize URL."""
        settings = self.settings
        value, pending = self.states.issue(next_url)
        data = self._data(caller.session)
        data["pending"] = [*_pending(data), _digest(value)][-MAX_PENDING:]
        caller.session[settings.session_key] = data
        return self.accounts.authorize_url(
            redirect_uri=settings.redirect_uri,
            state=value,
            scopes=parse_scopes(scopes) if scopes is not None else settings.scopes,
            challenge=code_challenge(pending.code_verifier) if pending.code_verifier else None,
            show_dialog=settings.show_dialog if show_dialog is None else show_dialog,
        )

    async def complete_login(
        self, caller: Caller, args: Mapping[str, str], code: str | None = None
    ) -> tuple[AccessToken, str | None]:
        """Check the callback against this browser's pending logins, exchange the code, store
        the tokens under a fresh login id (or the identity); the token and ``next_url``."""
        settings = self.settings
        value, error = args.get("state"), args.get("error")
        # A state this browser started (its session lists it) is crossed off at once.
        data = self._data(caller.session)
        known = value is not None and _digest(value) in _pending(data)
        if known and value is not None:
            data["pending"] = [d for d in _pending(data) if d != _digest(value)]
            caller.session[settings.session_key] = data
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
            if data:
                raise InvalidCallback(
                    "This login callback was not started in this browser, or was already "
                    "used. Start the login again here."
                )
            raise InvalidCallback(
                FOREIGN_SESSION_COOKIE if caller.foreign_cookie() else NO_PENDING_LOGIN
            )
        pending = self.states.open(value)
        code = code if code is not None else args.get("code")
        if not code:
            raise InvalidCallback("The login callback has no code. Start the login again.")
        # Used once whichever cookie comes with it, in every process, before the code is spent.
        ttl = pending.expires - self.clock() + 60  # its life left, and a minute of clock skew
        try:
            if await self.store.claim(f"state:{pending.nonce}", ttl, secrets.token_hex(8)) is None:
                raise InvalidCallback("This login callback was already used. Log in again.")
            record = await self.accounts.exchange_code(
                code, redirect_uri=pending.redirect_uri, code_verifier=pending.code_verifier
            )
            old_key = self.key(caller)
            data["login"] = secrets.token_urlsafe(24)  # a fresh opaque id: no session fixation
            caller.session[settings.session_key] = data
            key = self._key_or_401(caller)
            if old_key is not None and old_key != key and old_key.startswith("browser:"):
                await self.refresher.logout(old_key)
            stored = await self.refresher.login(key, record)
        except StoreUnavailable as exc:  # its notes, for the log, kept
            exc.description = "Your Spotify login could not be saved: log in again in a moment."
            raise
        await signals.send(signals.logged_in, self.sender, key=key, scopes=stored.scopes)
        return stored.to_access_token(self.clock()), pending.next_url

    async def logout(self, caller: Caller) -> None:
        """Forget this user's tokens and this browser's login id."""
        key = self.key(caller)
        if key is not None:
            await self.forget(key)
        caller.session.pop(self.settings.session_key, None)

    async def forget(self, key: str) -> bool:
        """Forget the login stored under ``key``, in every worker: whether there was one."""
        forgotten = await self.refresher.logout(key)
        if forgotten:
            await signals.send(signals.logged_out, self.sender, key=key)
        return forgotten

    def cached_token(self, caller: Caller) -> AccessToken | None:
        """This user's token if this process holds a current copy; never waits."""
        key = self.key(caller)
        record = None if key is None else self.refresher.cached(key)
        return None if record is None else record.to_access_token(self.clock())

    async def access_token(self, caller: Caller) -> AccessToken:
        token = self.cached_token(caller)
        if token is None:
            record = await self.refresher.current(self._key_or_401(caller))
            token = record.to_access_token(self.clock())
        return token

    async def force_renewal(self, caller: Caller) -> None:
        await self.refresher.refresh(self._key_or_401(caller))

    async def token_record(self, caller: Caller) -> TokenRecord | None:
        key = self.key(caller)
        return None if key is None else await self.store.get(key)

    async def app_token(self) -> AccessToken:
        record = await self.refresher.current(APP_KEY)
        return record.to_access_token(self.clock())

    def web_api(self, caller: Caller | None) -> WebAPI:
        """A Web API client for this user (``None``: with the app-only token)."""
        key = APP_KEY if caller is None else self._key_or_401(caller)
        auth = SpotifyBearer(
            lambda: self.refresher.current(key),
            lambda seen: self.refresher.refresh(key, seen),
            self.settings.retry,
        )
        return WebAPI(self.http, self.settings.api_url, auth, self.settings.retry)

    def _data(self, session: MutableMapping[str, Any]) -> dict[str, Any]:
        data = session.get(self.settings.session_key)
        return dict(data) if isinstance(data, dict) else {}


def _pending(data: dict[str, Any]) -> list[str]:
    pending = data.get("pending")
    return [p for p in pending if isinstance(p, str)] if isinstance(pending, list) else []


def _digest(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()[:24]
