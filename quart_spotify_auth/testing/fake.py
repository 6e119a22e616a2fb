"""FakeSpotify: an ASGI app that behaves like ``accounts.spotify.com`` plus the Web API calls
this package and its examples make, with switches for faults.

Routes: ``GET``/``POST /authorize`` (the consent page and its form), ``POST /api/token`` (the
three grants, :class:`~.accounts.FakeAccounts`), the Web API calls of :mod:`.webapi`
(``/v1/me``, top tracks and artists, the player); and for a fake served in another process,
``GET /_fake/state`` and ``POST /_fake/control`` (the switches as JSON).
"""

from __future__ import annotations

import asyncio
import collections
import json
from collections.abc import AsyncIterator
from typing import Any, Unpack

from quart import Quart, Response, request

from .accounts import AccountsOptions, FakeAccounts, FakeAuthorizeError, OAuthError
from .clock import FakeClock
from .pages import consent_page, error_page
from .webapi import WebAPIRoutes
from .webapi import json_reply as _json

__all__ = ["FakeSpotify"]

_FORM = "application/x-www-form-urlencoded"
_NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}
_CONTROL_KEYS = frozenset(
    "fail_next fail_status rate_limit_next retry_after quota garbage_next "  # noqa: SIM905
    "slow reply_delay trickle access_ttl rotate_confidential auto_approve dev_mode revoke "
    "expire_codes expire_access_tokens advance reset_counters".split()
)


class FakeSpotify(FakeAccounts):
    """ASGI app faking accounts.spotify.com and the Web API, with switches for tests.

    Switch attributes (``access_ttl``, ``code_ttl``, ``refresh_lifetime``, ``rotate_confidential``,
    ``auto_approve``, ``dev_mode``, ``api_error_message``, ``slow`` (before the grant is done),
    ``reply_delay`` (after it), ``trickle`` (the reply's body sent over that many seconds)) can be
    changed at any time. ``held[grant_type]``, an :class:`asyncio.Event`, holds that grant's
    token requests (counted already, not yet answered) until it is set.
    ``requests["refused:<error>"]`` counts the grants it refused.
    ``requests`` counts what it was asked (``"token"``, ``"token:refresh_token"``, ``"me"``...);
    ``max_in_flight["token"]`` is the most token requests it was answering at once.
    """

    def __init__(
        self,
        *,
        auto_approve: str | None = None,
        dev_mode: bool = False,
        api_error_message: str = "The access token expired",
        **options: Unpack[AccountsOptions],
    ) -> None:
        super().__init__(**options)
        self.auto_approve = auto_approve
        self.dev_mode = dev_mode
        self.api_error_message = api_error_message
        self.slow = 0.0
        #: Seconds to hold a token reply back after the grant was done.
        self.reply_delay = 0.0
        #: Seconds over which a token reply's body is sent, after its headers went at once.
        self.trickle = 0.0
        #: Grant types whose token requests wait for their event before being answered.
        self.held: dict[str, asyncio.Event] = {}
        #: Where it is served, when it is (the pytest plugin's ``spotify_fake`` sets it).
        self.url: str | None = None
        self.requests: collections.Counter[str] = collections.Counter()
        self.max_in_flight: collections.Counter[str] = collections.Counter()
        self._in_flight: collections.Counter[str] = collections.Counter()
        self._fail, self._fail_status = 0, 503
        self._rate, self._retry_after, self._quota = 0, 1, False
        self._garbage = 0
        self.app = Quart(__name__)
        route = self.app.add_url_rule
        route("/authorize", view_func=self._authorize_get, methods=["GET"])
        route("/authorize", view_func=self._authorize_post, methods=["POST"])
        route("/api/token", view_func=self._token, methods=["POST"])
        route("/_fake/state", view_func=self._state, methods=["GET"])
        route("/_fake/control", view_func=self._control, methods=["POST"])
        #: The Web API calls it answers (``/v1/me``, top items, the player).
        self.web_api = WebAPIRoutes(self)

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        """ASGI entry point: delegates to the inner Quart app."""
        await self.app(scope, receive, send)

    def app_config(self, url: str | None = None, *, client_id: str | None = None) -> dict[str, Any]:
        """The settings that point an app at this fake served at ``url`` (by default where it
        is served, :attr:`url`; any URL will do when the app reaches it in-process through
        ``httpx.ASGITransport``): the id and secret
        of its registered app (the first one, or ``client_id``), ``SPOTIFY_ACCOUNTS_URL``,
        ``SPOTIFY_API_URL``, and the in-memory token store (a test's logins stay in the test).
        ``app.config.update(fake.app_config())``."""
        client = self.clients[client_id] if client_id else next(iter(self.clients.values()))
        url = url or self.url or "https://fake.invalid"
        return {
            "SPOTIFY_CLIENT_ID": client.client_id,
            "SPOTIFY_CLIENT_SECRET": client.client_secret,
            "SPOTIFY_ACCOUNTS_URL": url,
            "SPOTIFY_API_URL": url + "/v1",
            "SPOTIFY_TOKEN_STORE": "memory",
        }

    # -- switches -------------------------------------------------------------------------

    def fail_next(self, n: int, status: int = 503) -> None:
        """Answer the next ``n`` /api/token requests with ``status``."""
        self._fail, self._fail_status = n, status

    def rate_limit_next(self, n: int, retry_after: int = 1, quota: bool = False) -> None:
        """Answer the next ``n`` /api/token or /v1 requests with 429 and ``Retry-After``."""
        self._rate, self._retry_after, self._quota = n, retry_after, quota

    def garbage_next(self, n: int) -> None:
        """Answer the next ``n`` /api/token requests with 200 and an HTML (non-JSON) body."""
        self._garbage = n

    def reset_counters(self) -> None:
        """Zero the ``requests`` counters."""
        self.requests.clear()

    def snapshot(self) -> dict[str, Any]:
        """Counters and switches as a JSON-able dict (also served at ``GET /_fake/state``)."""
        return {
            "requests": dict(self.requests),
            "now": self.clock(),
            "access_ttl": self.access_ttl,
            "code_ttl": self.code_ttl,
            "refresh_lifetime": self.refresh_lifetime,
            "rotate_confidential": self.rotate_confidential,
            "auto_approve": self.auto_approve,
            "dev_mode": self.dev_mode,
            "slow": self.slow,
            "reply_delay": self.reply_delay,
            "trickle": self.trickle,
            "fail_next": self._fail,
            "fail_status": self._fail_status,
            "rate_limit_next": self._rate,
            "retry_after": self._retry_after,
            "quota": self._quota,
            "garbage_next": self._garbage,
            "clients": list(self.clients),
            "users": list(self.users),
        }

    # -- /authorize -------------------------------------------------------------------------

    async def _authorize_get(self) -> Response:
        self.requests["authorize"] += 1
        try:
            auth = self.validate(request.args)
            if self.auto_approve is not None:
                return _redirect(self.approve(auth, self.auto_approve))
        except FakeAuthorizeError as exc:
            return error_page(str(exc))
        users = [(u.id, u.display_name or u.id) for u in self.users.values()]
        return consent_page(
            auth.client.client_id, auth.scopes, users, request.args.items(multi=True)
        )

    async def _authorize_post(self) -> Response:
        self.requests["consent"] += 1
        form = await request.form
        try:
            auth = self.validate(form)
            if form.get("action") == "deny":
                return _redirect(self.deny(auth))
            return _redirect(self.approve(auth, form.get("user") or None))
        except FakeAuthorizeError as exc:
            return error_page(str(exc))

    # -- /api/token -------------------------------------------------------------------------

    async def _token(self) -> Response:
        self.requests["token"] += 1
        self._in_flight["token"] += 1
        self.max_in_flight["token"] = max(self.max_in_flight["token"], self._in_flight["token"])
        try:
            return await self._answer_token()
        finally:
            self._in_flight["token"] -= 1

    async def _answer_token(self) -> Response:
        if self._fail > 0:
            self._fail -= 1
            error = "server_error" if self._fail_status >= 500 else "invalid_request"
            return _json({"error": error}, status=self._fail_status)
        if (limited := self.rate_limited()) is not None:
            return limited
        if self._garbage > 0:
            self._garbage -= 1
            return Response("<html>oops</html>", status=200, content_type="text/html")
        if self.slow > 0:
            await asyncio.sleep(self.slow)
        form = await request.form if request.mimetype == _FORM else {}
        grant = form.get("grant_type", "")
        if grant in self._grants:
            self.requests[f"token:{grant}"] += 1
        if grant in self.held:
            await self.held[grant].wait()
        try:
            body = self.grant(form, request.headers.get("Authorization"))
        except OAuthError as exc:
            self.requests[f"refused:{exc.body['error']}"] += 1
            return _json(exc.body, status=400, headers=_NO_STORE)
        if self.reply_delay > 0:  # the grant is done (a code used, a token rotated); the
            await asyncio.sleep(self.reply_delay)  # reply is late
        if self.trickle > 0:
            return _trickled(json.dumps(body).encode(), self.trickle)
        return _json(body, headers=_NO_STORE)

    def rate_limited(self) -> Response | None:
        """A 429 with ``Retry-After`` while ``rate_limit_next`` lasts (it counts down), else
        ``None``."""
        if self._rate <= 0:
            return None
        self._rate -= 1
        error: dict[str, Any] = {"status": 429, "message": "API rate limit exceeded"}
        if self._quota:
            error = {"status": 429, "message": "Too many requests", "reason": "QUOTA_EXCEEDED"}
        headers = {"Retry-After": str(self._retry_after)}
        return _json({"error": error}, status=429, headers=headers)

    # -- control endpoints ------------------------------------------------------------------

    async def _state(self) -> Response:
        return _json(self.snapshot())

    async def _control(self) -> Response:
        data = await request.get_json(force=True, silent=True)
        if not isinstance(data, dict):
            return _json({"error": "expected a JSON object"}, status=400)
        if unknown := sorted(set(data) - _CONTROL_KEYS):
            return _json({"error": f"unknown keys: {', '.join(unknown)}"}, status=400)
        if "advance" in data and not isinstance(self.clock, FakeClock):
            return _json({"error": "advance needs a FakeClock"}, status=400)
        try:
            self._apply(data)
        except (TypeError, ValueError) as exc:
            return _json({"error": f"bad value: {exc}"}, status=400)
        return _json(self.snapshot())

    def _apply(self, data: dict[str, Any]) -> None:
        if "fail_next" in data:
            self.fail_next(int(data["fail_next"]), int(data.get("fail_status", 503)))
        if "rate_limit_next" in data:
            n, retry_after = int(data["rate_limit_next"]), int(data.get("retry_after", 1))
            self.rate_limit_next(n, retry_after, bool(data.get("quota", False)))
        if "garbage_next" in data:
            self.garbage_next(int(data["garbage_next"]))
        for name in ("slow", "access_ttl", "reply_delay", "trickle"):
            if name in data:
                setattr(self, name, _seconds(name, data[name]))
        for name in ("rotate_confidential", "dev_mode"):
            if name in data:
                setattr(self, name, bool(data[name]))
        if "auto_approve" in data:
            user = data["auto_approve"]
            self.auto_approve = None if user is None else str(user)
        if "revoke" in data:
            self.revoke(str(data["revoke"]))
        if data.get("expire_codes"):
            self.expire_codes()
        if data.get("expire_access_tokens"):
            self.expire_access_tokens()
        if "advance" in data and isinstance(self.clock, FakeClock):
            self.clock.advance(_seconds("advance", data["advance"]))
        if data.get("reset_counters"):
            self.reset_counters()


def _seconds(name: str, value: Any) -> float:
    """A control's number of seconds: finite, not negative (inf or NaN made token replies hang
    or fail, and the state unreadable JSON)."""
    seconds = float(value)
    if not 0 <= seconds < 10**9:  # also False for NaN
        raise ValueError(f"{name} must be a number of seconds from 0, not {value!r}")
    return seconds


def _trickled(body: bytes, seconds: float) -> Response:
    """``body`` sent in ten pieces over ``seconds``, the headers at once."""
    step = max(1, len(body) // 10)

    async def pieces() -> AsyncIterator[bytes]:
        for start in range(0, len(body), step):
            yield body[start : start + step]
            await asyncio.sleep(seconds / 10)

    return Response(pieces(), content_type="application/json", headers=_NO_STORE)


def _redirect(location: str) -> Response:
    return Response("", status=302, headers={"Location": location})
