"""The shipped examples work as their docstrings say."""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import os
import shutil
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import parse_qsl, urljoin, urlsplit

import pytest

from quart_spotify_auth.serving import free_port, wait_for_port
from quart_spotify_auth.testing import make_fake

from ._httplib import httpx


@pytest.fixture(autouse=True)
def _logins_in_memory(monkeypatch: pytest.MonkeyPatch) -> None:
    # The in-process runs keep their logins to themselves (else the examples' default store,
    # a file in the repository's instance folder, would carry logins from run to run).
    monkeypatch.setenv("SPOTIFY_TOKEN_STORE", "memory")


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
    assert client.get("/home").headers["Location"] == "/"  # not "Logged in." to a stranger
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
        # Logging out lands on a page of its own, not back on Spotify's consent page.
        bye = await client.post("/spotify/logout?next=/bye", headers={"Origin": "http://localhost"})
        assert bye.headers["Location"] == "/bye"
        assert "Log in again" in await (await client.get("/bye")).get_data(as_text=True)


# -- each example as its docstring runs it: the fake and the app in their own processes --------

#: (example, the command after ``python -m`` that serves it on PORT, where a login starts,
#: a page only a logged-in browser gets and a piece of it)
EXAMPLES = [
    ("quickstart", ["hypercorn", "--bind", "127.0.0.1:PORT", "examples.quickstart:app"],
     "/login", "/", "Logged in with Spotify"),
    ("basic", ["hypercorn", "--bind", "127.0.0.1:PORT", "examples.basic:app"],
     "/", "/home", '"scopes"'),
    ("flask_app", ["flask", "--app", "examples.flask_app", "run", "--host", "127.0.0.1",
                   "--port", "PORT"], "/", "/home", "const token = "),
    ("multiworker", ["hypercorn", "--workers", "2", "--bind", "127.0.0.1:PORT",
                     "examples.multiworker:app"], "/", "/worker", '"worker_pid"'),
    ("playback", ["hypercorn", "--bind", "127.0.0.1:PORT", "examples.playback.app:app"],
     "/", "/", "getOAuthToken"),
]  # fmt: skip


@contextlib.asynccontextmanager
async def _process(
    args: list[str], port: int, env: dict[str, str], cwd: Path | None = None
) -> AsyncIterator[None]:
    environment = {k: v for k, v in {**os.environ, **env}.items() if v != ""}  # "": unset
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", *args, env=environment, cwd=cwd,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    try:
        waiting = asyncio.ensure_future(process.wait())
        await wait_for_port("127.0.0.1", port, timeout=60, task=waiting)
        yield
    finally:
        if process.returncode is None:
            process.terminate()
        await process.wait()


@pytest.mark.parametrize(
    ("name", "command", "start", "page", "piece"), EXAMPLES, ids=[e[0] for e in EXAMPLES]
)
async def test_each_example_logs_in_against_the_fake_with_only_environment_variables(
    name: str, command: list[str], start: str, page: str, piece: str, tmp_path: Path
) -> None:
    fake_port, port = free_port(), free_port()
    fake_url, app_url = f"http://127.0.0.1:{fake_port}", f"http://127.0.0.1:{port}"
    env = {  # the docstring's variables, with this test's ports and a store of its own
        "SPOTIFY_ACCOUNTS_URL": fake_url,
        "SPOTIFY_API_URL": fake_url + "/v1",
        "SPOTIFY_CLIENT_ID": "demo-client",
        "SPOTIFY_REDIRECT_URI": app_url + "/callback/",
        "SPOTIFY_TOKEN_STORE": f"sqlite:///{tmp_path}/tokens.sqlite3",
        "SECRET_KEY": "example-test-secret-" + "x" * 16,
    }
    fake = ["quart_spotify_auth", "fake", "--port", str(fake_port)]
    served = [part.replace("PORT", str(port)) for part in command]
    async with (
        _process(fake, fake_port, {}),
        _process(served, port, env),
        httpx.AsyncClient(timeout=30) as http,
    ):
        location = app_url + start
        while not location.startswith(fake_url):  # the app's redirects, to Spotify's page
            reply = await http.get(location)
            assert reply.status_code in (302, 303), (name, location, reply.text[:300])
            location = urljoin(location, reply.headers["Location"])
        query = dict(parse_qsl(urlsplit(location).query))
        assert query["client_id"] == "demo-client" and query["code_challenge_method"] == "S256"
        consent = await http.post(
            fake_url + "/authorize", data={**query, "user": "bob", "action": "approve"}
        )
        callback = consent.headers["Location"]
        assert callback.startswith(app_url + "/callback/")
        assert (await http.get(callback)).status_code in (302, 303)
        logged_in = await http.get(app_url + page)
        assert logged_in.status_code == 200 and piece in logged_in.text
        if name == "multiworker":  # a reload opens a new connection, maybe to another worker
            assert logged_in.headers["connection"] == "close"
        # Each example logs out with a POST from its own site; another site's is refused.
        logout = app_url + LOGOUT.get(name, "/logout")
        refused = await http.post(logout, headers={"Sec-Fetch-Site": "cross-site"})
        assert refused.status_code == 403, (name, refused.status_code)
        assert (await http.get(app_url + page)).status_code == 200  # still logged in
        done = await http.post(logout, headers={"Sec-Fetch-Site": "same-origin"})
        assert done.status_code in (302, 303), (name, done.status_code, done.text[:300])
        # It lands on a page of the app's: a redirect on to Spotify would log straight back
        # in a user who agreed before (Spotify skips its consent page for them).
        landing = urljoin(logout, done.headers["Location"])
        for _ in range(5):
            assert landing.startswith(app_url + "/"), (name, landing)
            reply = await http.get(landing)
            if reply.status_code not in (302, 303):
                break
            landing = urljoin(landing, reply.headers["Location"])
        assert reply.status_code == 200 and "Log in" in reply.text, (name, reply.text[:300])
        after = await http.get(app_url + page)
        assert piece not in after.text, (name, after.status_code)


#: Where an example logs out, when not at ``/logout`` (the playback one uses the blueprint's).
LOGOUT = {"playback": "/spotify/logout?next=/bye"}  # as its page's form posts


#: Each example on three workers, with the server its docstring names for production.
MANY_WORKERS = [
    ("quickstart", ["hypercorn", "--workers", "3", "--bind", "127.0.0.1:PORT",
                    "examples.quickstart:app"], "/login", "/", "Logged in with Spotify"),
    ("basic", ["hypercorn", "--workers", "3", "--bind", "127.0.0.1:PORT", "examples.basic:app"],
     "/", "/home", '"scopes"'),
    ("flask_app", ["gunicorn", "-w", "3", "-b", "127.0.0.1:PORT", "examples.flask_app:app"],
     "/", "/home", "const token = "),
    ("multiworker", ["hypercorn", "--workers", "3", "--bind", "127.0.0.1:PORT",
                     "examples.multiworker:app"], "/", "/worker", '"worker_pid"'),
    ("playback", ["hypercorn", "--workers", "3", "--bind", "127.0.0.1:PORT",
                  "examples.playback.app:app"], "/", "/", "getOAuthToken"),
]  # fmt: skip


async def _log_in(http: httpx.AsyncClient, app_url: str, fake_url: str, start: str) -> None:
    location = app_url + start
    while not location.startswith(fake_url):
        reply = await http.get(location)
        assert reply.status_code in (302, 303), (location, reply.status_code, reply.text[:300])
        location = urljoin(location, reply.headers["Location"])
    query = dict(parse_qsl(urlsplit(location).query))
    consent = await http.post(
        fake_url + "/authorize", data={**query, "user": "alice", "action": "approve"}
    )
    callback = await http.get(consent.headers["Location"])
    assert callback.status_code in (302, 303), (callback.status_code, callback.text[:300])


@pytest.mark.slow
@pytest.mark.parametrize(
    ("name", "command", "start", "page", "piece"), MANY_WORKERS, ids=[e[0] for e in MANY_WORKERS]
)
async def test_each_example_as_shipped_on_three_workers_and_across_a_restart(
    name: str, command: list[str], start: str, page: str, piece: str, tmp_path: Path
) -> None:
    """No SECRET_KEY and the default store, as a newcomer runs them: the examples folder as
    shipped, in a folder of its own (its instance folder is made beside it). Ten logins, each
    followed by reads on new connections, which land on any of the three workers; then a
    restart, after which the first login still reads."""
    shutil.copytree(Path(__file__).parent.parent / "examples", tmp_path / "examples")
    fake_port, port = free_port(), free_port()
    fake_url, app_url = f"http://127.0.0.1:{fake_port}", f"http://127.0.0.1:{port}"
    env = {
        "SPOTIFY_ACCOUNTS_URL": fake_url,
        "SPOTIFY_API_URL": fake_url + "/v1",
        "SPOTIFY_CLIENT_ID": "demo-client",
        "SPOTIFY_REDIRECT_URI": app_url + "/callback/",
        "SECRET_KEY": "",  # unset: as in a fresh terminal
        "SPOTIFY_TOKEN_STORE": "",
        "PYTHONPATH": str(tmp_path),
    }
    served = [part.replace("PORT", str(port)) for part in command]
    browsers = [httpx.AsyncClient(timeout=30, headers={"Connection": "close"}) for _ in range(10)]
    fake = ["quart_spotify_auth", "fake", "--port", str(fake_port)]
    async with contextlib.AsyncExitStack() as stack:
        for browser in browsers:
            await stack.enter_async_context(browser)
        await stack.enter_async_context(_process(fake, fake_port, {}, cwd=tmp_path))
        async with _process(served, port, env, cwd=tmp_path):
            for browser in browsers:
                await _log_in(browser, app_url, fake_url, start)
                for _ in range(3):  # Connection: close: each read is a new connection
                    reply = await browser.get(app_url + page)
                    assert reply.status_code == 200, (name, reply.text[:300])
                    assert piece in reply.text
        assert (tmp_path / "instance" / "secret_key").stat().st_mode & 0o077 == 0
        async with _process(served, port, env, cwd=tmp_path):  # started again
            for browser in (browsers[0], browsers[-1]):
                reply = await browser.get(app_url + page)
                assert reply.status_code == 200 and piece in reply.text, (name, reply.text[:300])
