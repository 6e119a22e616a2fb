"""Ready routes, guards, template globals and the Web API client."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from urllib.parse import parse_qs, parse_qsl, urlsplit

import pytest
from quart import Quart, render_template_string

from quart_spotify_auth import SpotifyAuth
from quart_spotify_auth.errors import RateLimited
from quart_spotify_auth.retry import Retry
from quart_spotify_auth.routes import (
    login_required,
    safe_next,
    scopes_required,
    spotify_blueprint,
)
from quart_spotify_auth.testing import FakeSpotify
from quart_spotify_auth.tokens import TokenRecord
from quart_spotify_auth.webapi import SpotifyBearer, WebAPI

from ._httplib import httpx
from .apps import CLIENT_ID, CLIENT_SECRET


@pytest.mark.parametrize(
    "attempt",
    [
        "https://evil.example/",
        "//evil.example/",
        "/\\evil.example",
        "\\\\evil.example",
        "%2F%2Fevil.example",
        "/%2F/evil.example",
        "/%252F%252Fevil.example",
        "http:evil.example",
        "javascript:alert(1)",
        "/%5Cevil.example",
        "/\tevil",
        "evil.example",
        "",
        None,
    ],
)
def test_open_redirect_attempts_land_on_a_same_site_path(attempt: str | None) -> None:
    target = safe_next(attempt)
    assert target == "/"


@pytest.mark.parametrize(
    "path", ["/", "/playlists", "/player?tab=queue", "/a/b%20c", "/x?a=1&b=%2F#top", "/@me"]
)
def test_same_site_paths_are_kept(path: str) -> None:
    assert safe_next(path) == path


@pytest.mark.parametrize(
    ("path", "sent"),
    [
        ("/ /evil.example", "/%20/evil.example"),
        ("/\uff0f\uff0fevil.example", "/%EF%BC%8F%EF%BC%8Fevil.example"),  # fullwidth /
        ("/a\u0085b", "/a%C2%85b"),  # a C1 line break
        ("/caf\u00e9?q=\u00e9", "/caf%C3%A9?q=%C3%A9"),
    ],
)
def test_a_path_that_is_not_ascii_is_sent_percent_encoded(path: str, sent: str) -> None:
    """A ``Location`` is ASCII: a space, a C1 control or a character beyond ASCII (a
    fullwidth slash, which some parsers fold into "/") goes as its UTF-8, percent-encoded."""
    assert safe_next(path) == sent


def test_a_path_too_long_once_encoded_or_not_text_lands_on_the_default() -> None:
    """The limit on ``next`` (what a login state carries) holds for what is sent: a path of
    201 characters that encodes to 1,201 lands on "/", as one that long raw always did; a
    lone surrogate (no UTF-8 at all) too, rather than a 500."""
    assert safe_next("/" + "\u00e9" * 170) == "/" + "%C3%A9" * 170  # 1,021 sent: kept
    assert safe_next("/" + "\u00e9" * 200) == "/"
    assert safe_next("/a\udc80b") == "/"


@pytest.fixture(name="routed")
async def _routed(fake: FakeSpotify) -> AsyncIterator[tuple[Quart, SpotifyAuth]]:
    app = Quart(__name__)
    app.secret_key = "a-test-secret-key-that-is-long-enough"
    app.config.update(
        SPOTIFY_CLIENT_ID=CLIENT_ID,
        SPOTIFY_CLIENT_SECRET=CLIENT_SECRET,
        SPOTIFY_ACCOUNTS_URL="https://fake.invalid",
        SPOTIFY_API_URL="https://fake.invalid/v1",
        SPOTIFY_SCOPES="user-read-private",
        SPOTIFY_TOKEN_STORE="memory",
    )
    spotify = SpotifyAuth(app, transport=httpx.ASGITransport(app=fake))
    app.register_blueprint(spotify_blueprint(spotify))

    @app.route("/async")
    @login_required
    async def protected() -> str:
        return "async ok"

    @app.route("/sync")
    @login_required
    def protected_sync() -> str:
        return "sync ok"

    @app.route("/player")
    @scopes_required("streaming")
    async def player() -> str:
        return "player ok"

    @app.route("/page")
    async def page() -> str:
        return await render_template_string(
            "{{ spotify_logged_in() }}|{{ spotify_access_token() }}|"
            "{% set u = spotify_user() %}{{ u.id if u else '-' }}"
        )

    async with app.test_app():
        yield app, spotify


async def _follow_login(
    client: object, fake: FakeSpotify, location: str, user: str = "alice"
) -> str:
    """From /spotify/login...: through the fake's consent; the page the callback sends to."""
    response = await client.get(location)  # type: ignore[attr-defined]
    callback = urlsplit(fake.decide(response.headers["Location"], user=user))
    response = await client.get(callback.path, query_string=dict(parse_qsl(callback.query)))  # type: ignore[attr-defined]
    assert response.status_code == 302, await response.get_data(as_text=True)
    return str(response.headers["Location"])


async def test_guards_send_to_login_and_back(
    routed: tuple[Quart, SpotifyAuth], fake: FakeSpotify
) -> None:
    app, _ = routed
    for path, body in (("/async", "async ok"), ("/sync", "sync ok")):
        client = app.test_client()  # a new browser each time
        response = await client.get(path + "?x=1")
        assert response.status_code == 302
        location = response.headers["Location"]
        assert urlsplit(location).path == "/spotify/login"
        assert parse_qs(urlsplit(location).query)["next"] == [path + "?x=1"]
        assert await _follow_login(client, fake, location) == path + "?x=1"
        assert await (await client.get(path)).get_data(as_text=True) == body


async def test_scopes_required_asks_for_the_missing_scopes(
    routed: tuple[Quart, SpotifyAuth], fake: FakeSpotify
) -> None:
    app, _ = routed
    client = app.test_client()
    await _follow_login(client, fake, "/spotify/login?next=/")
    response = await client.get("/player")
    assert response.status_code == 302
    query = parse_qs(urlsplit(response.headers["Location"]).query)
    assert query["scope"] == ["streaming user-read-private"]  # granted ones kept
    assert await _follow_login(client, fake, response.headers["Location"]) == "/player"
    assert await (await client.get("/player")).get_data(as_text=True) == "player ok"


async def test_scopes_not_granted_is_403_not_a_loop(
    routed: tuple[Quart, SpotifyAuth], fake: FakeSpotify
) -> None:
    app, _ = routed
    client = app.test_client()
    await _follow_login(client, fake, "/spotify/login?next=/")
    response = await client.get("/player")
    # The user comes back with the old grant only (the login is completed without the scope).
    assert await _follow_login(client, fake, "/spotify/login?next=/player") == "/player"
    response = await client.get("/player")
    assert response.status_code == 403
    assert "streaming" in await response.get_data(as_text=True)
    # Asked once: the next visit asks Spotify again.
    assert (await client.get("/player")).status_code == 302


async def test_open_redirect_through_the_login_route(
    routed: tuple[Quart, SpotifyAuth], fake: FakeSpotify
) -> None:
    app, _ = routed
    client = app.test_client()
    landing = await _follow_login(client, fake, "/spotify/login?next=//evil.example/x")
    assert landing == "/"


async def test_token_endpoint_for_the_playback_sdk(
    routed: tuple[Quart, SpotifyAuth], fake: FakeSpotify
) -> None:
    app, spotify = routed
    client = app.test_client()
    assert (await client.get("/spotify/token")).status_code == 401
    await _follow_login(client, fake, "/spotify/login?next=/")
    response = await client.get("/spotify/token")
    assert response.headers["Cache-Control"] == "no-store"
    body = await response.get_json()
    assert set(body) == {"access_token", "expires_in"}
    record = next(iter(spotify.core(app).store._records.values()))  # type: ignore[attr-defined]
    assert record.refresh_token not in json.dumps(body)
    response = await client.post("/spotify/logout?next=https://evil.example/")
    assert response.headers["Location"] == "/"
    assert (await client.get("/spotify/token")).status_code == 401


async def test_template_globals(routed: tuple[Quart, SpotifyAuth], fake: FakeSpotify) -> None:
    app, _ = routed
    client = app.test_client()
    assert await (await client.get("/page")).get_data(as_text=True) == "False|None|-"
    await _follow_login(client, fake, "/spotify/login?next=/")
    token = (await (await client.get("/spotify/token")).get_json())["access_token"]
    assert await (await client.get("/page")).get_data(as_text=True) == f"True|{token}|alice"


async def test_web_api_refreshes_once_on_401(
    routed: tuple[Quart, SpotifyAuth], fake: FakeSpotify
) -> None:
    app, spotify = routed
    client = app.test_client()
    await _follow_login(client, fake, "/spotify/login?next=/")
    fake.expire_access_tokens()  # Spotify says 401 to the token we hold
    async with app.test_request_context("/"):
        async with client.session_transaction() as saved:
            from quart import session

            session.update(saved)
        api = await spotify.web_api()
        replies = await asyncio.gather(*(api.get("/me") for _ in range(20)))
    assert {r.status_code for r in replies} == {200}
    assert fake.requests["token:refresh_token"] == 1  # one refresh for twenty 401s


# -- the auth flow against a scripted API -------------------------------------------------------


class ScriptedAPI:
    """Answers from a script of statuses and records what it was sent."""

    def __init__(self, *statuses: int, retry_after: str = "1") -> None:
        self.statuses = list(statuses)
        self.retry_after = retry_after
        self.seen: list[tuple[str, bytes]] = []

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        self.seen.append((request.headers["Authorization"], await request.aread()))
        status = self.statuses.pop(0) if self.statuses else 200
        headers = {"Retry-After": self.retry_after} if status == 429 else {}
        return httpx.Response(status, headers=headers, json={"ok": status == 200})


class Tokens:
    def __init__(self) -> None:
        self.current = "t1"
        self.refreshes = 0
        self.sleeps: list[float] = []

    async def token(self) -> TokenRecord:
        return TokenRecord(self.current, "r", 3600.0, 0.0, frozenset(), 0.0)

    async def refresh(self, sent: TokenRecord) -> TokenRecord:
        if sent.access_token == self.current:
            self.refreshes += 1
            self.current = f"t{self.refreshes + 1}"
        return await self.token()

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)


def _api(script: ScriptedAPI, tokens: Tokens, cap: float = 5.0) -> WebAPI:
    retry = Retry(retry_after_cap=cap, sleep=tokens.sleep)
    auth = SpotifyBearer(tokens.token, tokens.refresh, retry)
    http = httpx.AsyncClient(transport=httpx.MockTransport(script))
    return WebAPI(http, "http://api.invalid/v1", auth, retry)


async def test_401_then_one_refresh_and_one_retry_with_the_body_intact() -> None:
    script, tokens = ScriptedAPI(401, 401), Tokens()
    reply = await _api(script, tokens).put("/me/player/play", json={"uris": ["spotify:track:x"]})
    assert reply.status_code == 401  # a second 401 is not retried again
    assert tokens.refreshes == 1
    assert [auth for auth, _ in script.seen] == ["Bearer t1", "Bearer t2"]
    first, second = (json.loads(body) for _, body in script.seen)
    assert first == second == {"uris": ["spotify:track:x"]}


async def test_429_is_waited_out_then_the_cap_raises() -> None:
    script, tokens = ScriptedAPI(429, retry_after="2"), Tokens()
    assert (await _api(script, tokens).get("/me")).status_code == 200
    assert tokens.sleeps == [2.0]
    with pytest.raises(RateLimited) as info:
        await _api(ScriptedAPI(429, retry_after="60"), Tokens()).get("/me")
    assert info.value.code == 503 and info.value.retry_after == 60


@pytest.mark.parametrize(("header", "said"), [("60.5", 61), ("0.2", 1), ("7", 7)])
async def test_a_web_api_429s_retry_after_is_whole_seconds_rounded_up(
    header: str, said: int
) -> None:
    """A client told to come back sooner than Spotify asked meets the limit again."""
    with pytest.raises(RateLimited) as info:
        await _api(ScriptedAPI(429, retry_after=header), Tokens(), cap=0.0).get("/me")
    assert info.value.retry_after == said
    assert ("Retry-After", str(said)) in info.value.get_headers()


async def test_5xx_is_retried_with_backoff_for_idempotent_methods() -> None:
    script, tokens = ScriptedAPI(502, 503), Tokens()
    assert (await _api(script, tokens).put("/x", content=b"body")).status_code == 200
    assert len(script.seen) == 3 and {body for _, body in script.seen} == {b"body"}
    assert len(tokens.sleeps) == 2
    # A POST that got a 5xx may have been done (a track added): it is not sent again.
    script = ScriptedAPI(502)
    assert (await _api(script, Tokens()).post("/playlists/p/tracks", json={})).status_code == 502
    assert len(script.seen) == 1


async def test_the_bearer_goes_only_to_the_api_origin() -> None:
    script, tokens = ScriptedAPI(), Tokens()
    api = _api(script, tokens)
    assert (await api.get("http://api.invalid/v1/me/tracks?offset=50")).status_code == 200
    for foreign in ("https://attacker.example/steal", "http://api.invalid:8080/v1/me"):
        with pytest.raises(ValueError, match="origin"):
            await api.get(foreign)
    assert len(script.seen) == 1


async def test_network_errors_become_503() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    tokens = Tokens()
    retry = Retry(sleep=tokens.sleep)
    auth = SpotifyBearer(tokens.token, tokens.refresh, retry)
    api = WebAPI(httpx.AsyncClient(transport=httpx.MockTransport(refuse)), "http://x", auth, retry)
    from quart_spotify_auth import SpotifyUnavailable

    with pytest.raises(SpotifyUnavailable, match="ConnectError"):
        await api.get("/me")


@pytest.mark.parametrize(
    "headers",
    [
        {"Sec-Fetch-Site": "cross-site"},
        {"Sec-Fetch-Site": "same-site"},
        {"Origin": "https://attacker.example"},
        {"Origin": "null"},
    ],
)
async def test_logout_from_another_site_is_refused(
    routed: tuple[Quart, SpotifyAuth], fake: FakeSpotify, headers: dict[str, str]
) -> None:
    app, _ = routed
    client = app.test_client()
    await _follow_login(client, fake, "/spotify/login?next=/async")
    reply = await client.post("/spotify/logout", headers=headers)
    assert reply.status_code == 403
    assert "another site" in await reply.get_data(as_text=True)
    assert (await client.get("/async")).status_code == 200  # still logged in
    same = {"Sec-Fetch-Site": "same-origin", "Origin": "http://localhost"}
    assert (await client.post("/spotify/logout", headers=same)).status_code == 302
    assert (await client.get("/async")).status_code == 302  # logged out: to the login


async def test_a_login_link_asks_only_for_scopes_the_app_uses(
    routed: tuple[Quart, SpotifyAuth], fake: FakeSpotify
) -> None:
    app, _ = routed
    client = app.test_client()
    reply = await client.get("/spotify/login?scope=user-library-modify")
    assert reply.status_code == 400
    assert "user-library-modify" in await reply.get_data(as_text=True)
    # Configured, or asked for by a guard of this app: fine.
    for scope in ("user-read-private", "streaming", "user-read-private streaming"):
        assert (
            await client.get("/spotify/login", query_string={"scope": scope})
        ).status_code == 302


async def test_a_page_that_renders_the_token_is_not_cached(
    routed: tuple[Quart, SpotifyAuth], fake: FakeSpotify
) -> None:
    app, _ = routed
    client = app.test_client()
    await _follow_login(client, fake, "/spotify/login?next=/")
    reply = await client.get("/page")
    assert reply.headers["Cache-Control"] == "no-store"
    assert "no-store" not in (await client.get("/async")).headers.get("Cache-Control", "")
