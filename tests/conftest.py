from __future__ import annotations

import asyncio
import re
import secrets
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pytest
from flask import Flask
from quart import Quart
from quart.typing import TestClientProtocol
from werkzeug.serving import make_server

from quart_spotify_auth import SpotifyAuth
from quart_spotify_auth.flask import SpotifyAuth as FlaskSpotifyAuth
from quart_spotify_auth.serving import free_port, serve
from quart_spotify_auth.stores.cache import ReadCache
from quart_spotify_auth.testing import FakeClock, FakeSpotify, SignalRecorder, make_fake

from ._httplib import httpx
from .apps import CLIENT_ID, make_app, make_flask_app
from .servers import IN_CI, PostgreSQLServer, RedisServer, postgresql_bin, redis_bin


def require(what: str, available: bool, install: str) -> None:
    """Skip a test on a machine without ``what``; under CI=true a missing one is a failure."""
    if not available:
        if IN_CI:
            pytest.fail(f"{what} is not installed, and CI=true needs it (see .ci/run)")
        pytest.skip(f"{what} is not installed ({install})")


def require_redis() -> None:
    require("redis-server", redis_bin() is not None, "apt-get install redis-server")


def require_postgresql() -> None:
    found = postgresql_bin("initdb") and postgresql_bin("pg_ctl")
    require("PostgreSQL", bool(found), "apt-get install postgresql")


@pytest.fixture(name="clock")
def _clock() -> FakeClock:
    return FakeClock()


@pytest.fixture(name="fake")
def _fake() -> FakeSpotify:
    # Port-less loopback registration: matches the callback on any port, as Spotify does.
    return make_fake(client_id=CLIENT_ID, redirect_uri="http://127.0.0.1/callback/")


@pytest.fixture(name="app_and_spotify")
async def _app_and_spotify(fake: FakeSpotify) -> AsyncIterator[tuple[Quart, SpotifyAuth]]:
    app, spotify = make_app(transport=httpx.ASGITransport(app=fake))
    async with app.test_app():
        yield app, spotify


@pytest.fixture(name="app")
def _app(app_and_spotify: tuple[Quart, SpotifyAuth]) -> Quart:
    return app_and_spotify[0]


@pytest.fixture(name="spotify")
def _spotify(app_and_spotify: tuple[Quart, SpotifyAuth]) -> SpotifyAuth:
    return app_and_spotify[1]


async def login_in_process(
    client: TestClientProtocol, fake: FakeSpotify, user: str = "alice"
) -> dict[str, object]:
    """Log ``client`` in as ``user`` through the app's routes and the fake's decision."""
    response = await client.get("/login")
    assert response.status_code == 302
    callback = fake.decide(response.headers["Location"], user=user)
    parts = urlsplit(callback)
    response = await client.get(parts.path, query_string=dict(parse_qsl(parts.query)))
    assert response.status_code == 302, await response.get_data(as_text=True)
    response = await client.get("/token")
    assert response.status_code == 200
    data: dict[str, object] = await response.get_json()
    return data


class Browser:
    """A cookie-keeping HTTP client that clicks through the fake's consent over real HTTP."""

    def __init__(self, app_url: str, fake_url: str, login_path: str = "/login") -> None:
        self.app_url = app_url
        self.fake_url = fake_url
        self.login_path = login_path  # where a login starts (the ready routes: /spotify/login)
        self.http = httpx.AsyncClient(follow_redirects=False, timeout=30)

    async def __aenter__(self) -> Browser:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.http.aclose()

    async def start_login(self) -> dict[str, str]:
        """GET the login path; return the authorize query the app sent the browser to."""
        response = await self.http.get(self.app_url + self.login_path)
        assert response.status_code == 302
        location = response.headers["location"]
        while location.startswith("/"):  # the app's own redirects first (demo: /spotify/login)
            response = await self.http.get(self.app_url + location)
            assert response.status_code == 302
            location = response.headers["location"]
        assert location.startswith(self.fake_url + "/authorize?")
        return dict(parse_qsl(urlsplit(location).query))

    async def consent(
        self, query: dict[str, str], user: str = "alice", approve: bool = True
    ) -> str:
        """Answer the consent page; return the callback URL Spotify redirects to."""
        action = "approve" if approve else "deny"
        response = await self.http.post(
            self.fake_url + "/authorize", data={**query, "user": user, "action": action}
        )
        assert response.status_code == 302, response.text
        return response.headers["location"]

    async def login(self, user: str = "alice") -> httpx.Response:
        callback = await self.consent(await self.start_login(), user=user)
        return await self.http.get(callback)

    async def get(self, path: str) -> httpx.Response:
        return await self.http.get(self.app_url + path)

    async def post(self, path: str) -> httpx.Response:
        return await self.http.post(self.app_url + path)


class Stack:
    """FakeSpotify and the app, each served by hypercorn on 127.0.0.1."""

    def __init__(
        self, fake: FakeSpotify, app: Quart, spotify: SpotifyAuth, app_url: str, fake_url: str
    ) -> None:
        self.fake = fake
        self.app = app
        self.spotify = spotify
        self.app_url = app_url
        self.fake_url = fake_url

    def browser(self) -> Browser:
        return Browser(self.app_url, self.fake_url)


@pytest.fixture(name="stack")
async def _stack(fake: FakeSpotify, request: pytest.FixtureRequest) -> AsyncIterator[Stack]:
    options = getattr(request, "param", {})
    async with serve(fake) as fake_url:
        port = free_port()
        app, spotify = make_app(
            accounts_url=fake_url,
            redirect_uri=f"http://127.0.0.1:{port}/callback/",
            **options,
        )
        async with serve(app, port=port) as app_url:
            yield Stack(fake, app, spotify, app_url, fake_url)


@pytest.fixture(autouse=True)
def _no_real_spotify(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for key in ("SPOTIFY_CLIENT_ID", "SPOTIFY_CLIENT_SECRET"):
        monkeypatch.delenv(key, raising=False)
    yield


def _running(server: Any) -> Iterator[Any]:
    """A session's own server: started, then stopped and its files removed."""
    server.start()
    yield server
    server.remove()


@pytest.fixture(name="redis_server", scope="session")
def _redis_server() -> Iterator[RedisServer]:
    require_redis()
    yield from _running(RedisServer())


@pytest.fixture(name="redis_prefix")
def _redis_prefix(request: pytest.FixtureRequest) -> str:
    """A key prefix of this test's own, so tests share one redis-server without clashing."""
    name = re.sub(r"[^\w]", "_", request.node.name)  # no glob characters ([...]) in a prefix
    return f"test:{name}:{secrets.token_hex(4)}:"


@pytest.fixture(name="signals")
def _signals() -> Iterator[SignalRecorder]:
    """Every signal sent while the test runs."""
    with SignalRecorder() as recorder:
        yield recorder


@pytest.fixture(name="pg_server", scope="session")
def _pg_server() -> Iterator[PostgreSQLServer]:
    require_postgresql()
    yield from _running(PostgreSQLServer())


@pytest.fixture(name="sql_prefix")
def _sql_prefix() -> str:
    """A table prefix of this test's own, so tests share one database without clashing."""
    return f"t{secrets.token_hex(4)}_"


#: The ``feed_losses`` fixture's type.
FeedLosses = Callable[[ReadCache], list[bool]]


@pytest.fixture(name="feed_losses")
def _feed_losses(monkeypatch: pytest.MonkeyPatch) -> FeedLosses:
    """``feed_losses(cache)``: a list that gets a ``False`` each time ``cache`` is told its
    change feed is lost (``cache.listen(False)``); the calls still reach the cache."""

    def recorded(cache: ReadCache) -> list[bool]:
        lost: list[bool] = []
        listen = cache.listen

        def recording(listening: bool) -> None:
            lost.extend([] if listening else [listening])
            listen(listening)

        monkeypatch.setattr(cache, "listen", recording)
        return lost

    return recorded


class ServedFlask:
    """A Flask app on a threaded werkzeug server on 127.0.0.1."""

    def __init__(self, app: Flask, port: int) -> None:
        self.server = make_server("127.0.0.1", port, app, threaded=True)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.url = f"http://127.0.0.1:{port}"

    def __enter__(self) -> ServedFlask:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.thread.join(10)


@pytest.fixture(name="flask_stack")
async def _flask_stack(
    fake: FakeSpotify, request: pytest.FixtureRequest
) -> AsyncIterator[tuple[Browser, FlaskSpotifyAuth, Flask]]:
    options = getattr(request, "param", {})
    async with serve(fake) as fake_url:
        port = free_port()
        app, spotify = make_flask_app(
            accounts_url=fake_url, redirect_uri=f"http://127.0.0.1:{port}/callback/", **options
        )
        with ServedFlask(app, port) as served:
            async with Browser(served.url, fake_url) as browser:
                yield browser, spotify, app
        await asyncio.get_running_loop().run_in_executor(None, spotify.close, app)
