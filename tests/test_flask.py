"""The Flask shim: the same flow for sync Flask apps, on one long-lived loop thread."""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

import pytest
from flask import Flask
from flask.testing import FlaskClient

from quart_spotify_auth import ConfigurationError, LoginRequired
from quart_spotify_auth.flask import SpotifyAuth, block_on
from quart_spotify_auth.serving import free_port, wait_for_port
from quart_spotify_auth.testing import FakeSpotify, SignalRecorder

from ._httplib import CHOICE, httpx
from .apps import make_flask_app
from .conftest import Browser
from .servers import RedisServer


@pytest.fixture(name="flask_app")
def _flask_app(fake: FakeSpotify) -> Iterator[tuple[Flask, SpotifyAuth]]:
    app, spotify = make_flask_app(transport=httpx.ASGITransport(app=fake))
    yield app, spotify
    spotify.close(app)


def _login(client: FlaskClient, fake: FakeSpotify, user: str = "alice", prefix: str = "") -> None:
    response = client.get(prefix + "/login")
    assert response.status_code == 302
    callback = urlsplit(fake.decide(response.headers["Location"], user=user))
    response = client.get(prefix + callback.path, query_string=dict(parse_qsl(callback.query)))
    assert response.status_code == 302, response.text


def test_full_flow_with_the_test_client(
    flask_app: tuple[Flask, SpotifyAuth], fake: FakeSpotify
) -> None:
    app, spotify = flask_app
    client = app.test_client()
    assert client.get("/token").status_code == 401
    _login(client, fake)
    token = client.get("/token").get_json()
    assert token["scopes"] == ["streaming", "user-read-email", "user-read-private"]
    assert client.post("/renew").status_code == 200
    assert client.get("/token").get_json()["access_token"] != token["access_token"]
    assert client.post("/logout").get_json() == {"logged_in": False}
    assert client.get("/token").status_code == 401
    spotify.close(app)  # stopped; the next use starts it again
    _login(client, fake, user="bob")
    assert client.get("/token").status_code == 200


def test_errors_and_statuses_are_the_same(
    flask_app: tuple[Flask, SpotifyAuth], fake: FakeSpotify
) -> None:
    app, _ = flask_app
    client = app.test_client()
    location = client.get("/login").headers["Location"]
    denied = urlsplit(fake.decide(location, approve=False))
    response = client.get(denied.path, query_string=dict(parse_qsl(denied.query)))
    assert response.status_code == 403
    assert client.get("/callback/?code=x&state=forged").status_code == 400


def test_template_global_gives_the_token(
    flask_app: tuple[Flask, SpotifyAuth], fake: FakeSpotify
) -> None:
    app, _ = flask_app
    client = app.test_client()
    assert client.get("/player").text == "<script>const token = null;</script>"
    _login(client, fake)
    token = client.get("/token").get_json()["access_token"]
    page = client.get("/player")
    assert page.text == f'<script>const token = "{token}";</script>'
    assert page.headers["Cache-Control"] == "no-store"  # a page with a token is never cached
    assert "no-store" not in client.get("/token").headers.get("Cache-Control", "")


def test_async_views_work(flask_app: tuple[Flask, SpotifyAuth], fake: FakeSpotify) -> None:
    app, _ = flask_app
    client = app.test_client()
    _login(client, fake)
    assert client.get("/async-token").get_json() == {
        "access_token": client.get("/token").get_json()["access_token"]
    }


def test_the_seed_names_drive_the_whole_flow(
    flask_app: tuple[Flask, SpotifyAuth], fake: FakeSpotify
) -> None:
    app, _ = flask_app
    client = app.test_client()
    with pytest.warns(DeprecationWarning, match="getUser"):
        location = client.get("/seed/login").headers["Location"]
    callback = urlsplit(fake.decide(location))
    with pytest.warns(DeprecationWarning, match="getUserToken"):
        response = client.get("/seed/callback/", query_string=dict(parse_qsl(callback.query)))
    assert response.status_code == 302
    with pytest.warns(DeprecationWarning, match="getAccessToken"):
        first = client.get("/seed/token").get_json()
    assert first["expires_in"] > 3500
    with pytest.warns(DeprecationWarning, match="forceRenewal"):
        assert client.get("/seed/renew").status_code == 200
    with pytest.warns(DeprecationWarning):
        assert client.get("/seed/token").get_json()["access_token"] != first["access_token"]


def test_config_errors_are_the_same() -> None:
    app = Flask(__name__)
    app.config["SPOTIFY_CLIENT_ID"] = "id"
    with pytest.raises(ConfigurationError, match="secret_key"):
        SpotifyAuth(app)
    app.secret_key = "k"
    app.config["SPOTIFY_REDIRECT_URI"] = "http://localhost:5000/callback/"
    with pytest.raises(ConfigurationError, match=r"127\.0\.0\.1:5000"):
        SpotifyAuth(app)


def test_calling_from_the_shims_own_loop_says_what_to_do(
    flask_app: tuple[Flask, SpotifyAuth],
) -> None:
    app, spotify = flask_app

    async def inside() -> None:
        with app.test_request_context("/"):
            spotify.get_access_token()

    with pytest.raises(RuntimeError, match="cannot be called from the shim's own event loop"):
        block_on(inside())


def _fork_child(app: Flask, cookie: str, out: multiprocessing.Queue[object]) -> None:
    try:
        client = app.test_client()
        client.set_cookie("session", cookie, domain="localhost")
        out.put(client.get("/token").get_json())
    except BaseException as exc:  # report anything to the parent
        out.put(repr(exc))


def test_a_forked_child_can_use_the_extension(
    flask_app: tuple[Flask, SpotifyAuth], fake: FakeSpotify
) -> None:
    app, _ = flask_app
    client = app.test_client()
    _login(client, fake)
    parent = client.get("/token").get_json()
    cookie = client.get_cookie("session")
    assert cookie is not None
    context = multiprocessing.get_context("fork")
    out: multiprocessing.Queue[object] = context.Queue()
    child = context.Process(target=_fork_child, args=(app, cookie.value, out))
    child.start()
    result = out.get(timeout=30)
    child.join(30)
    assert child.exitcode == 0
    assert isinstance(result, dict), result
    assert result["access_token"] == parent["access_token"]


def _app_token_child(app: Flask, spotify: SpotifyAuth, out: multiprocessing.Queue[object]) -> None:
    try:
        with app.app_context():
            out.put(bool(spotify.get_app_token().access_token))
    except BaseException as exc:  # report anything to the parent
        out.put(repr(exc))


def test_a_fork_leaves_no_renewer_in_the_parent_and_no_task_in_the_child(
    fake: FakeSpotify,
    redis_server: RedisServer,
    redis_prefix: str,
    capfd: pytest.CaptureFixture[str],
) -> None:
    """gunicorn --preload: the master used the shim at import time, then forks workers."""
    app, spotify = make_flask_app(
        transport=httpx.ASGITransport(app=fake),
        SPOTIFY_TOKEN_STORE=redis_server.url,
        SPOTIFY_TOKEN_STORE_PREFIX=redis_prefix,
    )
    with app.app_context():
        spotify.get_app_token()  # at import time, in the master
        assert spotify.core(app).renewer.running
    state = app.extensions["QUART_SPOTIFY_AUTH"]
    context = multiprocessing.get_context("fork")
    out: multiprocessing.Queue[object] = context.Queue()
    for _ in range(2):  # two workers
        child = context.Process(target=_app_token_child, args=(app, spotify, out))
        child.start()
        assert out.get(timeout=30) is True
        child.join(30)
        assert child.exitcode == 0
    assert not state._started and not state._core.renewer.running  # the master renews nothing
    assert fake.requests["token:client_credentials"] == 1  # the workers read the master's
    assert "Task was destroyed" not in capfd.readouterr().err
    spotify.close(app)


# -- over real HTTP: a threaded werkzeug server and a hypercorn-served FakeSpotify -----------


async def test_full_flow_over_http(
    flask_stack: tuple[Browser, SpotifyAuth, Flask], fake: FakeSpotify
) -> None:
    browser, _, _ = flask_stack
    assert (await browser.login("bob")).status_code == 302
    assert (await browser.get("/token")).json()["expires_in"] > 3500
    async with Browser(browser.app_url, browser.fake_url) as stranger:
        assert (await stranger.get("/token")).status_code == 401


@pytest.mark.parametrize("flask_stack", [{"SPOTIFY_AUTO_RENEW": False}], indirect=True)
async def test_fifty_threads_on_one_expired_token_make_one_request(
    flask_stack: tuple[Browser, SpotifyAuth, Flask], fake: FakeSpotify
) -> None:
    browser, spotify, app = flask_stack
    fake.access_ttl = 1
    await browser.login("alice")
    record = block_on(spotify.core(app).store.get(next(iter(_keys(spotify, app)))))
    assert record is not None
    loop = asyncio.get_running_loop()
    while (left := record.expires_at - spotify.core(app).clock()) > 0:
        await asyncio.sleep(left)  # the token's own expiry
    fake.access_ttl = 3600
    before = fake.requests["token:refresh_token"]
    replies = await asyncio.gather(*(browser.get("/token") for _ in range(50)))
    assert {r.status_code for r in replies} == {200}
    assert len({r.json()["access_token"] for r in replies}) == 1
    assert fake.requests["token:refresh_token"] - before == 1
    assert loop.is_running()


def _keys(spotify: SpotifyAuth, app: Flask) -> Iterator[str]:
    store = spotify.core(app).store
    yield from store._records  # type: ignore[attr-defined]


async def test_renewed_in_the_background_with_no_request(
    flask_stack: tuple[Browser, SpotifyAuth, Flask], fake: FakeSpotify, signals: SignalRecorder
) -> None:
    browser, _, _ = flask_stack
    fake.access_ttl = 2
    await browser.login("alice")
    first = (await browser.get("/token")).json()["access_token"]
    await asyncio.get_running_loop().run_in_executor(
        None, lambda: signals.wait_sync("token_renewed", in_background=True)
    )
    fake.reset_counters()
    assert (await browser.get("/token")).json()["access_token"] != first
    assert fake.requests["token"] == 0


def test_not_logged_in_is_login_required(flask_app: tuple[Flask, SpotifyAuth]) -> None:
    app, spotify = flask_app
    with app.test_request_context("/"), pytest.raises(LoginRequired):
        spotify.get_access_token()
    with app.test_request_context("/"):
        assert not spotify.is_logged_in()
        assert spotify.token_record() is None


def test_the_seed_names_are_said_to_be_deprecated_under_flask_run(tmp_path: Path) -> None:
    # Python hides a DeprecationWarning raised outside __main__: under `flask run` nobody saw
    # that getUser() is deprecated. The log line says it, once, at the caller's line.
    (tmp_path / "seedapp.py").write_text(
        "from flask import Flask, redirect\n"
        "from quart_spotify_auth.flask import SpotifyAuth\n"
        "app = Flask(__name__)\n"
        "app.secret_key = 'k' * 32\n"
        "app.config.update(SPOTIFY_CLIENT_ID='id', SPOTIFY_TOKEN_STORE='memory')\n"
        "spotify = SpotifyAuth(app)\n"
        "@app.route('/')\n"
        "def index():\n"
        "    return redirect(spotify.getUser())\n"
    )
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k != "PYTHONWARNINGS" and "SPOTIFY" not in k}
    env |= CHOICE  # the suite's HTTP library
    env["PYTHONPATH"] = os.pathsep.join([str(tmp_path), *sys.path])
    server = subprocess.Popen(
        [sys.executable, "-m", "flask", "--app", "seedapp", "run", "--port", str(port)],
        cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        asyncio.run(wait_for_port("127.0.0.1", port, timeout=30))
        for _ in range(2):
            reply = httpx.get(f"http://127.0.0.1:{port}/")
            assert reply.status_code == 302
            assert reply.headers["location"].startswith("https://accounts.spotify.com/authorize")
    finally:
        server.terminate()
        _, said = server.communicate(timeout=30)
    line = f"{tmp_path / 'seedapp.py'}:9: SpotifyAuth.getUser() is Flask-Spotify-Auth's name"
    assert said.count(line) == 1, said  # once per process, however many calls
    assert "use get_user()" in said


EXITING_APP = """
import sys

import flask

from quart_spotify_auth.flask import SpotifyAuth

app = flask.Flask("exiting", instance_path=sys.argv[1])
app.secret_key = "a-test-secret-key-of-enough-length"
app.config.update(
    SPOTIFY_CLIENT_ID="id",
    SPOTIFY_CLIENT_SECRET="secret",
    SPOTIFY_REDIRECT_URI="http://127.0.0.1:5000/callback/",
)
spotify = SpotifyAuth(app)


@app.route("/callback/")
def callback() -> str:
    spotify.get_user_token()
    return "logged in"


@app.route("/")
def index() -> str:
    return str(spotify.is_logged_in())


print(app.test_client().get("/").get_data(as_text=True))
"""


def test_an_app_on_the_default_store_exits_cleanly(tmp_path: Path) -> None:
    """The shim closes its core and its loop at exit (atexit). Python 3.12 starts no thread
    then, and both closing the store's threads and asyncio's own close of the loop wanted
    one: every Flask app on the default store printed a traceback as it exited."""
    result = subprocess.run(
        [sys.executable, "-c", EXITING_APP, str(tmp_path / "instance")],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **CHOICE},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.split() == ["False"]
    assert result.stderr == "", result.stderr[-3000:]  # no traceback, nor any warning
    assert not Path(f"{tmp_path}/instance/quart_spotify_auth.sqlite3-wal").exists()  # closed
