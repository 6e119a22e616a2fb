"""The shipped examples work as their docstrings say."""

from __future__ import annotations

import importlib
import sys
from urllib.parse import parse_qsl, urlsplit

import httpx
import pytest

from quart_spotify_auth.testing import make_fake


async def test_basic_example_runs_the_seed_flow(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SPOTIFY_CLIENT_ID", "test-client")
    monkeypatch.setenv("SPOTIFY_CLIENT_SECRET", "test-secret")
    sys.modules.pop("examples.basic", None)
    basic = importlib.import_module("examples.basic")
    fake = make_fake(redirect_uri="http://127.0.0.1:5000/callback/")
    # Point the example at the fake: what SPOTIFY_ACCOUNTS_URL and a transport would do.
    basic.app.config["SPOTIFY_ACCOUNTS_URL"] = "https://fake.invalid"
    from quart_spotify_auth import SpotifyAuth

    SpotifyAuth(basic.app, transport=httpx.ASGITransport(app=fake))
    async with basic.app.test_app():
        client = basic.app.test_client()
        response = await client.get("/")
        assert response.status_code == 302
        callback = urlsplit(fake.decide(response.headers["Location"], user="alice"))
        response = await client.get(callback.path, query_string=dict(parse_qsl(callback.query)))
        assert response.headers["Location"] == "/home"
        home = await (await client.get("/home")).get_json()
        assert home["scopes"] == ["streaming", "user-read-email", "user-read-private"]
        assert (await client.get("/renew")).status_code == 302
    assert fake.requests["token:refresh_token"] == 1


async def test_multiworker_example_uses_the_redis_store(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SPOTIFY_CLIENT_ID", "test-client")
    monkeypatch.setenv("SECRET_KEY", "s" * 32)
    monkeypatch.setenv("SPOTIFY_TOKEN_STORE", "redis://127.0.0.1:1/0")
    sys.modules.pop("examples.multiworker", None)
    example = importlib.import_module("examples.multiworker")
    from quart_spotify_auth.stores.redis import RedisTokenStore

    state = example.app.extensions["QUART_SPOTIFY_AUTH"]
    assert isinstance(state.store, RedisTokenStore)
    async with example.app.test_app():  # Redis is away (port 1): a clean 503, no crash
        client = example.app.test_client()
        async with client.session_transaction() as session:
            session["spotify_auth"] = {"login": "someone"}
        response = await client.get("/worker")
        assert response.status_code == 503
        assert "login store is unavailable" in await response.get_data(as_text=True)


def test_flask_example_runs_the_seed_flow(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SPOTIFY_CLIENT_ID", "test-client")
    monkeypatch.setenv("SPOTIFY_CLIENT_SECRET", "test-secret")
    sys.modules.pop("examples.flask_app", None)
    example = importlib.import_module("examples.flask_app")
    fake = make_fake(redirect_uri="http://127.0.0.1:5000/callback/")
    from quart_spotify_auth.flask import SpotifyAuth as FlaskSpotifyAuth

    spotify = FlaskSpotifyAuth(example.app, transport=httpx.ASGITransport(app=fake))
    example.app.config["SPOTIFY_ACCOUNTS_URL"] = "https://fake.invalid"
    spotify.init_app(example.app)
    client = example.app.test_client()
    location = client.get("/").headers["Location"]
    callback = urlsplit(fake.decide(location, user="bob"))
    assert (
        client.get(callback.path, query_string=dict(parse_qsl(callback.query))).status_code == 302
    )
    assert 'const token = "' in client.get("/home").text
    spotify.close(example.app)


async def test_playback_example_serves_the_page_after_login(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SPOTIFY_CLIENT_ID", "test-client")
    monkeypatch.setenv("SPOTIFY_CLIENT_SECRET", "test-secret")
    monkeypatch.setenv("SPOTIFY_ACCOUNTS_URL", "https://fake.invalid")
    sys.modules.pop("examples.playback.app", None)
    example = importlib.import_module("examples.playback.app")
    fake = make_fake(redirect_uri="http://127.0.0.1:5000/callback/")
    from quart_spotify_auth import SpotifyAuth

    SpotifyAuth(example.app, transport=httpx.ASGITransport(app=fake))
    async with example.app.test_app():
        client = example.app.test_client()
        login = (await client.get("/")).headers["Location"]
        assert login.startswith("/spotify/login?next=")
        callback = urlsplit(fake.decide((await client.get(login)).headers["Location"]))
        response = await client.get(callback.path, query_string=dict(parse_qsl(callback.query)))
        assert response.headers["Location"] == "/"
        page = await (await client.get("/")).get_data(as_text=True)
        assert "getOAuthToken" in page and "/spotify/token" in page
        token = await (await client.get("/spotify/token")).get_json()
        assert token["expires_in"] > 3500
