"""What quart_spotify_auth.testing gives users for their own tests, and the adapters' shape."""

from __future__ import annotations

import inspect

import pytest

from quart_spotify_auth import SpotifyAuth
from quart_spotify_auth.flask import SpotifyAuth as FlaskSpotifyAuth
from quart_spotify_auth.testing import FakeSpotify, SignalRecorder, log_in

from ._httplib import httpx
from .apps import make_app, make_flask_app


async def test_log_in_a_quart_test_client(fake: FakeSpotify, signals: SignalRecorder) -> None:
    app, _ = make_app(transport=httpx.ASGITransport(app=fake))
    async with app.test_app():
        client = app.test_client()
        assert (await client.get("/token")).status_code == 401
        token = await log_in(client, fake, "bob", scopes="user-read-email")
        reply = await client.get("/token")
        assert reply.status_code == 200
        assert (await reply.get_json())["access_token"] == token.access_token
        assert (await client.get("/me")).status_code == 200
        assert (await (await client.get("/me")).get_json())["id"] == "bob"
    assert token.scopes == {"user-read-email"}
    assert signals.count("logged_in") == 1
    assert fake.requests["token:authorization_code"] == 1


def test_log_in_a_flask_test_client(fake: FakeSpotify, signals: SignalRecorder) -> None:
    app, spotify = make_flask_app(transport=httpx.ASGITransport(app=fake))
    try:
        client = app.test_client()
        assert client.get("/token").status_code == 401
        token = log_in(client, fake, "alice")
        reply = client.get("/token")
        assert reply.status_code == 200 and reply.get_json()["access_token"] == token.access_token
        signals.wait_sync("logged_in")
    finally:
        spotify.close(app)


async def test_log_in_under_the_apps_own_identity(fake: FakeSpotify) -> None:
    app, spotify = make_app(transport=httpx.ASGITransport(app=fake), identity=lambda: "u1")
    async with app.test_app():
        await log_in(app.test_client(), fake, "alice", identity="u1")
        assert await spotify.core(app).store.get("user:u1") is not None
        # Another client of the same identity is the same user.
        assert (await app.test_client().get("/token")).status_code == 200


async def test_the_recorder_waits_for_what_has_not_happened_yet(
    fake: FakeSpotify, signals: SignalRecorder
) -> None:
    app, _ = make_app(transport=httpx.ASGITransport(app=fake))
    async with app.test_app():
        client = app.test_client()
        with pytest.raises(TimeoutError):
            await signals.wait("logged_out", timeout=0.05)
        await log_in(client, fake)
        assert (await client.post("/logout")).status_code == 200
        await signals.wait("logged_out")
    assert [name for name, _ in signals.log] == ["logged_in", "logged_out"]
    assert signals.counts == {"logged_in": 1, "logged_out": 1}


def _public(cls: type) -> dict[str, bool]:
    return {
        name: inspect.iscoroutinefunction(member)
        for name, member in inspect.getmembers(cls, callable)
        if not name.startswith("_")
    }


def test_both_adapters_have_the_same_methods() -> None:
    quart, flask = _public(SpotifyAuth), _public(FlaskSpotifyAuth)
    assert set(quart) == set(flask)
    # The same names; in Flask none is a coroutine function.
    assert not any(flask.values())
    assert quart["get_access_token"] and quart["get_user_token"] and quart["force_renewal"]


async def test_renamed_names_still_work_with_a_warning(fake: FakeSpotify) -> None:
    from quart_spotify_auth.routes import install_template_globals

    app, spotify = make_app(transport=httpx.ASGITransport(app=fake))
    with pytest.warns(DeprecationWarning, match="core"):
        assert spotify.manager(app) is spotify.core(app).refresher
    with pytest.warns(DeprecationWarning, match="no longer needed"):
        install_template_globals(app, spotify)
