"""Issue 20, round 3: the login flow's findings 13, 3, 11 and 2, each over real HTTP on
127.0.0.1 (the app and FakeSpotify served by hypercorn, Flask by werkzeug)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import flask
import pytest
from flask import Flask
from quart import Response, render_template_string, stream_template_string

from benchmarks.servers import Server
from quart_spotify_auth import ConfigurationError, InvalidCallback, SpotifyAuthError, adapter
from quart_spotify_auth.accounts import code_challenge
from quart_spotify_auth.config import load_settings
from quart_spotify_auth.flask import SpotifyAuth as FlaskSpotifyAuth
from quart_spotify_auth.routes import scopes_required, spotify_blueprint
from quart_spotify_auth.serving import free_port, serve
from quart_spotify_auth.states import LoginStates
from quart_spotify_auth.testing import FakeSpotify

from ._httplib import httpx
from .apps import make_app, make_flask_app
from .conftest import Browser, ServedFlask, Stack
from .servers import RedisServer

STREAMED = "<script>const token = {{ spotify_access_token()|tojson }};</script>"


async def test_apps_sharing_a_secret_key_refuse_each_others_states(fake: FakeSpotify) -> None:
    """Finding 13: two apps on one host with one secret key (so one session cookie)."""
    async with serve(fake) as fake_url:
        port_a, port_b = free_port(), free_port()
        app_a, _ = make_app(
            accounts_url=fake_url, redirect_uri=f"http://127.0.0.1:{port_a}/callback/"
        )
        app_b, _ = make_app(
            accounts_url=fake_url, redirect_uri=f"http://127.0.0.1:{port_b}/callback/"
        )
        async with serve(app_a, port=port_a) as url_a, serve(app_b, port=port_b) as url_b:
            async with Browser(url_a, fake_url) as browser:
                # The session cookie is the host's (any port), signed with the one key: B reads
                # the login A started in it.
                callback = await browser.consent(await browser.start_login())
                assert callback.startswith(url_a + "/callback/?")
                exchanged = fake.requests["token:authorization_code"]
                # A's callback carried to B: B refuses the state, and never spends the code.
                reply = await browser.http.get(url_b + callback.removeprefix(url_a))
                assert reply.status_code == 400
                assert "not issued by this app" in reply.text
                assert fake.requests["token:authorization_code"] == exchanged
                # A still logs the browser in.
                assert (await browser.login()).status_code == 302


async def test_a_streamed_template_that_renders_the_token_is_not_cached(
    fake: FakeSpotify,
) -> None:
    """Finding 3, Quart: ``stream_template_string`` sends its headers before the template
    renders the token."""
    async with serve(fake) as fake_url:
        port = free_port()
        app, _ = make_app(accounts_url=fake_url, redirect_uri=f"http://127.0.0.1:{port}/callback/")

        @app.route("/stream")
        async def stream() -> Response:
            return Response(await stream_template_string(STREAMED))

        @app.route("/plain-stream")
        async def plain_stream() -> Response:
            return Response(await stream_template_string("<p>{{ 6 * 7 }}</p>"))

        async with app.app_context():  # a template rendered outside a request: no response
            assert await render_template_string("{{ 6 * 7 }}") == "42"
        async with serve(app, port=port) as url, Browser(url, fake_url) as browser:
            assert (await browser.login()).status_code == 302
            token = (await browser.get("/token")).json()["access_token"]
            page = await browser.get("/stream")
            assert page.text == f'<script>const token = "{token}";</script>'
            assert page.headers.get("Cache-Control") == "no-store"
            assert page.headers.get("Pragma") == "no-cache"
            # A page rendered whole is marked only when it renders the token (as before).
            assert "no-store" not in (await browser.get("/status")).headers.get("Cache-Control", "")
            assert (await browser.get("/plain-stream")).text == "<p>42</p>"


@pytest.mark.parametrize("flask_stack", [{}], indirect=True)
async def test_a_streamed_flask_template_that_renders_the_token_is_not_cached(
    flask_stack: tuple[Browser, FlaskSpotifyAuth, Flask],
) -> None:
    """Finding 3, the Flask shim."""
    browser, _, app = flask_stack
    app.add_url_rule("/stream", "stream", lambda: flask.stream_template_string(STREAMED))
    assert (await browser.login()).status_code == 302
    token = (await browser.get("/token")).json()["access_token"]
    page = await browser.get("/stream")
    assert page.text == f'<script>const token = "{token}";</script>'
    assert page.headers.get("Cache-Control") == "no-store"
    assert "no-store" not in (await browser.get("/token")).headers.get("Cache-Control", "")


async def test_guarded_scopes_belong_to_their_app_and_an_empty_scope_is_the_configured_one(
    fake: FakeSpotify,
) -> None:
    """Finding 11: a guard of app B does not widen what app A's login link may ask for."""
    async with serve(fake) as fake_url:
        port = free_port()
        redirect = f"http://127.0.0.1:{port}/callback/"
        app_a, spotify_a = make_app(accounts_url=fake_url, redirect_uri=redirect)
        app_a.register_blueprint(spotify_blueprint(spotify_a))
        app_b, spotify_b = make_app(accounts_url=fake_url, redirect_uri=redirect)
        app_b.register_blueprint(spotify_blueprint(spotify_b))

        @app_b.route("/library")
        @scopes_required("user-library-modify")
        async def library() -> str:
            return "B's library"

        @app_a.route("/playlists")
        @scopes_required("playlist-modify-private")
        async def playlists() -> str:
            return "A's playlists"

        @app_a.route("/top")
        @scopes_required("user-top-read")
        @scopes_required("user-follow-read")
        async def top() -> str:
            return "A's top artists"

        async with serve(app_a, port=port) as url, Browser(url, fake_url) as browser:
            reply = await browser.get("/spotify/login?scope=user-library-modify")
            assert reply.status_code == 400, reply.headers.get("location")
            assert "user-library-modify" in reply.text
            # A's own guard, and its configured scopes, are fine.
            for scope in ("playlist-modify-private", "user-top-read user-follow-read"):
                assert (await browser.get(f"/spotify/login?scope={scope}")).status_code == 302
            # An empty or blank scope= asks for the configured scopes, not for none.
            for empty in ("", "%20", "+,+"):
                reply = await browser.get(f"/spotify/login?scope={empty}")
                assert reply.status_code == 302
                query = dict(parse_qsl(urlsplit(reply.headers["location"]).query))
                assert query.get("scope") == "user-read-private user-read-email", empty


async def test_a_secret_key_set_after_init_is_the_one_states_use(fake: FakeSpotify) -> None:
    """Finding 2: ``app.secret_key`` changed after ``SpotifyAuth(app)`` signs the states and
    derives the PKCE verifiers from then on; the key set at init no longer does."""
    old_key, new_key = "placeholder-key-from-the-tutorial!", "the-real-key-set-later-0123456789"
    async with serve(fake) as fake_url:
        port = free_port()
        redirect = f"http://127.0.0.1:{port}/callback/"
        app, spotify = make_app(accounts_url=fake_url, redirect_uri=redirect, secret_key=old_key)
        app.secret_key = new_key
        async with serve(app, port=port) as url:
            stack = Stack(fake, app, spotify, url, fake_url)
            async with stack.browser() as browser:
                query = await browser.start_login()
                state = query["state"]

                def states(key: str) -> LoginStates:
                    return LoginStates(key, load_settings(app.config, {}), lambda: 0)

                pending = states(new_key).open(state)
                assert pending.code_verifier is not None
                assert query["code_challenge"] == code_challenge(pending.code_verifier)
                with pytest.raises(InvalidCallback, match="not issued by this app"):
                    states(old_key).open(state)
                assert (await browser.http.get(await browser.consent(query))).status_code == 302
                assert (await browser.get("/token")).status_code == 200


def test_the_flask_shim_reads_the_secret_key_when_it_is_used_and_refuses_none() -> None:
    """Finding 2, the Flask shim; and a key unset after init is refused loudly at use."""
    app, spotify = make_flask_app(redirect_uri="http://127.0.0.1:5000/callback/")
    app.secret_key = "the-real-key-set-later-0123456789"
    try:
        reply = app.test_client().get("/login")
        state = dict(parse_qsl(urlsplit(reply.headers["Location"]).query))["state"]
        opened = LoginStates(app.secret_key, load_settings(app.config, {}), lambda: 0).open(state)
        assert opened.code_verifier
        app.secret_key, app.testing = None, True  # testing: the error reaches the test
        with pytest.raises(ConfigurationError, match=r"app\.secret_key is not set"):
            app.test_client().get("/login")
    finally:
        spotify.close(app)


async def _replay(
    cookies: httpx.Cookies, query: dict[str, str], fake_url: str, app_url: str, via: str
) -> tuple[httpx.Response, bool]:
    """A fresh code for ``query``'s state (its authorize URL answered again), brought to the
    callback through ``via`` by a browser holding ``cookies``; the reply, and whether that
    browser is logged in after it."""
    async with Browser(via, fake_url) as replayer:
        replayer.http.cookies = httpx.Cookies(cookies)
        callback = await replayer.consent(query)
        reply = await replayer.http.get(via + callback.removeprefix(app_url))
        logged_in: bool = (await replayer.get("/status")).json()["logged_in"]
    return reply, logged_in


async def _one_login_per_state(fake: FakeSpotify, app_url: str, fake_url: str, via: str) -> None:
    """Finding 1: log in through ``app_url``; replay its state with the cookie from before the
    callback through ``via``, then again after a logout: refused, no code spent, no login."""
    async with Browser(app_url, fake_url) as browser:
        query = await browser.start_login()
        before = httpx.Cookies(browser.http.cookies)  # it lists the state as pending
        assert (await browser.http.get(await browser.consent(query))).status_code == 302
        token = (await browser.get("/token")).json()["access_token"]
        exchanged = fake.requests["token:authorization_code"]
        reply, logged_in = await _replay(before, query, fake_url, app_url, via)
        assert reply.status_code == 400, reply.headers.get("location")
        assert "already used" in reply.text
        assert not logged_in
        assert fake.requests["token:authorization_code"] == exchanged  # no code burnt
        assert (await browser.get("/token")).json()["access_token"] == token  # first login kept
        assert (await browser.post("/logout")).json() == {"logged_in": False}
        reply, logged_in = await _replay(before, query, fake_url, app_url, via)
        assert reply.status_code == 400 and "already used" in reply.text
        assert not logged_in
        assert fake.requests["token:authorization_code"] == exchanged


async def test_a_state_completes_one_login_whichever_cookie_comes_with_it(stack: Stack) -> None:
    """Finding 1, one process (the memory store)."""
    await _one_login_per_state(stack.fake, stack.app_url, stack.fake_url, stack.app_url)


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["sqlite", "redis"])
async def test_a_state_completes_one_login_across_workers(
    kind: str, fake: FakeSpotify, tmp_path: Path, request: pytest.FixtureRequest, redis_prefix: str
) -> None:
    """Finding 1, two worker processes behind one redirect URI (as behind a load balancer),
    sharing the default SQLite store or Redis: the replay goes to the other worker."""
    env = {"TEST_INSTANCE": str(tmp_path)}
    if kind == "redis":
        redis: RedisServer = request.getfixturevalue("redis_server")
        env.update(TEST_STORE=redis.url, TEST_PREFIX=redis_prefix)
    async with serve(fake) as fake_url:
        port = free_port()
        env.update(TEST_FAKE_URL=fake_url, TEST_PORT=str(port))  # both: this redirect URI
        async with contextlib.AsyncExitStack() as servers:
            one, two = [
                await servers.enter_async_context(Server("tests.served_app:app", env=env, port=p))
                for p in (port, free_port())
            ]
            await _one_login_per_state(fake, one.url, fake_url, two.url)


@pytest.mark.parametrize("framework", ["quart", "flask"])
async def test_a_503_page_is_logged_with_its_detail_when_it_is_served(
    framework: str,
    fake: FakeSpotify,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Finding 5: requests to an app whose store fails (a damaged SQLite file) get a 503 page
    without the detail, and the log gets it as they are served: one line for the same
    failure (``LOG_EVERY`` set long here). Quart shows the default page, Flask the app's own
    (an error handler, as docs/errors.md shows). A callback then is a 503 too (finding 1's
    state is recorded in the store first), and its code is not spent."""
    place = tmp_path / "private-place"
    place.mkdir()
    (place / "tokens.sqlite3").write_bytes(b"this is not a database " * 200)
    monkeypatch.setattr(adapter, "LOG_EVERY", 3600.0)
    caplog.set_level(logging.INFO)
    async with serve(fake) as fake_url, contextlib.AsyncExitStack() as stack:
        port = free_port()
        options: dict[str, Any] = {
            "accounts_url": fake_url,
            "redirect_uri": f"http://127.0.0.1:{port}/callback/",
            "store_url": f"sqlite:///{place / 'tokens.sqlite3'}",
            "identity": lambda: "alice",  # the store is read with no login cookie
        }
        if framework == "quart":
            app, _ = make_app(**options)
            url = await stack.enter_async_context(serve(app, port=port))
        else:
            flask_app, spotify = make_flask_app(**options)
            flask_app.register_error_handler(
                SpotifyAuthError, lambda error: (f"Sorry: {error.description}", error.code)
            )
            url = stack.enter_context(ServedFlask(flask_app, port)).url
            loop = asyncio.get_running_loop()
            stack.push_async_callback(loop.run_in_executor, None, spotify.close, flask_app)
        caplog.clear()  # Quart opened the store as it started: that line is not wanted here
        browser = await stack.enter_async_context(Browser(url, fake_url))
        pages = [await browser.get("/token") for _ in range(3)]
        records = [
            record
            for record in caplog.records
            if record.name == "quart_spotify_auth" and record.getMessage().startswith("503: ")
        ]
        assert [page.status_code for page in pages] == [503] * 3
        assert ("Sorry" in pages[0].text) == (framework == "flask")  # the app's own page
        assert "not a SQLite database" in pages[0].text
        for hidden in (str(place), "file is not a database"):
            assert hidden not in pages[0].text
        assert [record.levelno for record in records] == [logging.WARNING], records
        said = records[0].getMessage()
        assert str(place) in said and "file is not a database" in said
        callback = await browser.consent(await browser.start_login())
        assert (await browser.http.get(callback)).status_code == 503
        assert fake.requests["token:authorization_code"] == 0
