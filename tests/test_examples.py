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
    basic.app.config["SPOTIFY_ACCOUNTS_URL"] = "http://fake.invalid"
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
