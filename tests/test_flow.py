"""The login flow through the Quart test client, against FakeSpotify in-process."""

from __future__ import annotations

import asyncio
from urllib.parse import parse_qs, parse_qsl, urlsplit

from quart import Quart

from quart_spotify_auth import SpotifyAuth
from quart_spotify_auth.accounts import code_challenge
from quart_spotify_auth.testing import FakeClock, FakeSpotify, make_fake

from ._httplib import httpx
from .apps import CLIENT_ID, make_app
from .conftest import login_in_process


async def test_authorize_url_carries_state_and_settings(app: Quart) -> None:
    client = app.test_client()
    response = await client.get("/login")
    assert response.status_code == 302
    url = urlsplit(response.headers["Location"])
    assert url.path == "/authorize"
    query = parse_qs(url.query)
    assert query["client_id"] == [CLIENT_ID]
    assert query["response_type"] == ["code"]
    assert query["redirect_uri"] == ["http://127.0.0.1:5000/callback/"]
    assert query["scope"] == ["user-read-private user-read-email"]
    assert len(query["state"][0]) >= 22  # 128 bits in base64url
    # PKCE for every client: a stolen code is useless without this browser's verifier.
    assert query["code_challenge_method"] == ["S256"]


async def test_states_are_fresh_for_each_login(app: Quart) -> None:
    client = app.test_client()
    states = set()
    for _ in range(5):
        response = await client.get("/login")
        states.add(parse_qs(urlsplit(response.headers["Location"]).query)["state"][0])
    assert len(states) == 5


async def test_full_login_returns_the_users_token(app: Quart, fake: FakeSpotify) -> None:
    client = app.test_client()
    data = await login_in_process(client, fake)
    assert data["scopes"] == ["user-read-email", "user-read-private"]
    assert data["expires_in"] in (3599, 3600)
    access = data["access_token"]
    assert data["header"] == {"Authorization": f"Bearer {access}"}
    assert fake.requests["token:authorization_code"] == 1
    response = await client.get("/me")
    assert (await response.get_json())["id"] == "alice"


async def test_public_client_uses_pkce(fake: FakeSpotify) -> None:
    fake.add_client("public-client", None, ["http://127.0.0.1/callback/"])
    app, spotify = make_app(transport=httpx.ASGITransport(app=fake), public=True)
    app.config["SPOTIFY_CLIENT_ID"] = "public-client"
    spotify.init_app(app)
    async with app.test_app():
        client = app.test_client()
        response = await client.get("/login")
        query = parse_qs(urlsplit(response.headers["Location"]).query)
        assert query["code_challenge_method"] == ["S256"]
        assert len(query["code_challenge"][0]) == 43
        callback = urlsplit(fake.decide(response.headers["Location"], user="bob"))
        response = await client.get(callback.path, query_string=dict(parse_qsl(callback.query)))
        assert response.status_code == 302
        response = await client.get("/me")
        assert (await response.get_json())["id"] == "bob"


async def test_confidential_client_can_opt_out_of_pkce(fake: FakeSpotify) -> None:
    app, _ = make_app(transport=httpx.ASGITransport(app=fake), SPOTIFY_USE_PKCE=False)
    async with app.test_app():
        client = app.test_client()
        data = await login_in_process(client, fake)
        assert data["scopes"]
        response = await client.get("/login")
        assert "code_challenge=" not in response.headers["Location"]


def test_code_challenge_is_s256_without_padding() -> None:
    # RFC 7636 appendix B's example.
    verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"
    assert code_challenge(verifier) == "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"


async def test_two_tabs_can_both_finish(app: Quart, fake: FakeSpotify) -> None:
    client = app.test_client()
    first = (await client.get("/login")).headers["Location"]
    second = (await client.get("/login")).headers["Location"]
    for url in (second, first):
        callback = urlsplit(fake.decide(url, user="alice"))
        response = await client.get(callback.path, query_string=dict(parse_qsl(callback.query)))
        assert response.status_code == 302, await response.get_data(as_text=True)


async def test_new_login_id_on_every_login(
    app: Quart, fake: FakeSpotify, spotify: SpotifyAuth
) -> None:
    client = app.test_client()
    await login_in_process(client, fake)
    async with client.session_transaction() as session:
        before = session["spotify_auth"]["login"]
    await login_in_process(client, fake)
    async with client.session_transaction() as session:
        after = session["spotify_auth"]["login"]
        assert set(session["spotify_auth"]) == {"login", "pending"}
    assert before != after
    # The old id is dead: a copy of the old cookie (or a fixed one) reaches no tokens.
    assert await spotify.core(app).store.get(f"browser:{before}") is None
    assert await spotify.core(app).store.get(f"browser:{after}") is not None


async def test_logging_in_again_drops_the_previous_login(
    app: Quart, fake: FakeSpotify, spotify: SpotifyAuth
) -> None:
    client = app.test_client()
    await login_in_process(client, fake, user="alice")
    store = spotify.core(app).store
    assert len(store._records) == 1  # type: ignore[attr-defined]
    await login_in_process(client, fake, user="bob")
    assert len(store._records) == 1  # type: ignore[attr-defined]
    assert (await (await client.get("/me")).get_json())["id"] == "bob"


async def test_logout_forgets_the_tokens(app: Quart, fake: FakeSpotify) -> None:
    client = app.test_client()
    await login_in_process(client, fake)
    assert (await (await client.get("/status")).get_json()) == {"logged_in": True}
    response = await client.post("/logout")
    assert await response.get_json() == {"logged_in": False}
    assert (await client.get("/token")).status_code == 401


async def test_stranger_gets_401(app: Quart) -> None:
    response = await app.test_client().get("/token")
    assert response.status_code == 401
    assert "Log in" in await response.get_data(as_text=True)


async def test_force_renewal_gets_a_new_token(app: Quart, fake: FakeSpotify) -> None:
    client = app.test_client()
    first = await login_in_process(client, fake)
    response = await client.post("/renew")
    assert response.status_code == 200
    second = await (await client.get("/token")).get_json()
    assert second["access_token"] != first["access_token"]
    assert fake.requests["token:refresh_token"] == 1


async def test_expired_token_is_refreshed_once_for_many_callers(fake: FakeSpotify) -> None:
    fake.access_ttl = 2
    clock = FakeClock(1000)
    fake.clock = clock
    app, _ = make_app(
        transport=httpx.ASGITransport(app=fake), clock=clock, SPOTIFY_AUTO_RENEW=False
    )
    async with app.test_app():
        client = app.test_client()
        first = await login_in_process(client, fake)
        clock.advance(10)
        replies = await asyncio.gather(*(client.get("/token") for _ in range(200)))
        tokens = {(await r.get_json())["access_token"] for r in replies}
    assert len(tokens) == 1
    assert tokens != {first["access_token"]}
    assert fake.requests["token:refresh_token"] == 1


async def test_identity_hook_keys_tokens_by_app_user(fake: FakeSpotify) -> None:
    current = {"user": "u1"}
    app, spotify = make_app(
        transport=httpx.ASGITransport(app=fake), identity=lambda: current["user"]
    )
    async with app.test_app():
        client = app.test_client()
        await login_in_process(client, fake, user="alice")
        assert await spotify.core(app).store.get("user:u1") is not None
        # Another browser of the same app user shares the login.
        other = app.test_client()
        assert (await other.get("/token")).status_code == 200
        current["user"] = "u2"
        assert (await other.get("/token")).status_code == 401


async def test_two_apps_in_one_process_keep_apart() -> None:
    fake_a = make_fake(client_id="client-a", redirect_uri="http://127.0.0.1/callback/")
    fake_b = make_fake(client_id="client-b", redirect_uri="http://127.0.0.1/callback/")
    app_a, _ = make_app(transport=httpx.ASGITransport(app=fake_a))
    app_b, _ = make_app(transport=httpx.ASGITransport(app=fake_b))
    app_a.config["SPOTIFY_CLIENT_ID"] = "client-a"
    app_b.config["SPOTIFY_CLIENT_ID"] = "client-b"
    shared = SpotifyAuth()
    shared.init_app(app_a)
    shared.init_app(app_b)
    async with app_a.test_app(), app_b.test_app():
        for app in (app_a, app_b):
            response = await app.test_client().get("/login")
            assert app.config["SPOTIFY_CLIENT_ID"] in response.headers["Location"]
