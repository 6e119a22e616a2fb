"""Tokens beyond the request, over real processes: a hypercorn-served app, jobs in processes of
their own over the same store (Quart and the Flask shim), the admin's command line, and a move
of every login from SQLite to PostgreSQL with the app stopped and started again."""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

import pytest
from quart import Quart
from quart.testing import WebsocketResponseError

from benchmarks.servers import Server
from quart_spotify_auth import ConfigurationError, LoginRequired, SpotifyAuth, TokenRecord
from quart_spotify_auth.serving import free_port, serve
from quart_spotify_auth.stores.sql import SQLTokenStore
from quart_spotify_auth.testing import FakeSpotify, make_fake

from ._httplib import CHOICE, httpx
from .apps import make_app
from .conftest import Browser
from .servers import PostgreSQLServer, until
from .test_examples import _log_in, _process


def _env(fake_url: str, port: int, tmp_path: Path, **more: str) -> dict[str, str]:
    """``tests.served_app``'s environment: SQLite in ``tmp_path``, users by ``X-Test-User``."""
    return {
        "TEST_FAKE_URL": fake_url,
        "TEST_PORT": str(port),
        "TEST_INSTANCE": str(tmp_path),
        "TEST_IDENTITY": "1",
        **more,
    }


def _run(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """``python ARGS`` in a process of its own, from the project's folder."""
    clean = {k: v for k, v in os.environ.items() if "SPOTIFY" not in k.upper()}
    return subprocess.run(
        [sys.executable, *args],
        env={**clean, **CHOICE, "PYTHONPATH": os.pathsep.join(sys.path), **env},
        cwd=Path(__file__).parent.parent,
        capture_output=True,
        text=True,
        timeout=120,
    )


async def _job(*args: str, env: dict[str, str]) -> dict[str, object]:
    done = await asyncio.to_thread(_run, "-m", "tests.job", *args, env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    found: dict[str, object] = json.loads(done.stdout.splitlines()[-1])
    return found


async def _cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return await asyncio.to_thread(_run, "-m", "quart_spotify_auth", *args, env=env)


@contextlib.asynccontextmanager
async def _user(app_url: str, fake_url: str, user_id: str | None) -> AsyncIterator[Browser]:
    """A browser logged in as ``user_id`` of the app (``None``: by its own login id)."""
    async with Browser(app_url, fake_url) as browser:
        if user_id is not None:
            browser.http.headers["X-Test-User"] = user_id
        assert (await browser.login("alice" if user_id != "bob" else "bob")).status_code == 302
        yield browser


async def _token(browser: Browser) -> str | int:
    reply = await browser.get("/token")
    return reply.json()["access_token"] if reply.status_code == 200 else reply.status_code


async def test_a_job_process_uses_renews_and_forgets_a_users_tokens_beside_the_app(
    fake: FakeSpotify, tmp_path: Path
) -> None:
    """Quart and Flask jobs, each in a process of its own, read the same SQLite file as the
    served app: the same user's token, a renewal the app then serves, and a logout it sees."""
    port = free_port()
    async with serve(fake) as fake_url:
        env = _env(fake_url, port, tmp_path)
        app = Server("tests.served_app:app", env=env, workers=2, port=port)
        async with app, _user(app.url, fake_url, "ada") as ada, _user(app.url, fake_url, None):
            served = await _token(ada)
            refreshes = fake.requests["token:refresh_token"]
            seen = await _job("quart", "ada", env=env)
            assert seen["before"] == served and seen["after"] != served  # hers, then renewed
            assert fake.requests["token:refresh_token"] == refreshes + 1
            assert await _token(ada) == seen["after"]  # the app serves the job's renewal
            logins = {row["key"]: row for row in seen["logins"]}  # type: ignore[attr-defined]
            assert len(logins) == 2 and logins["user:ada"]["user_id"] == "ada"
            assert str(served) not in json.dumps(seen["logins"])  # never a token in the listing
            # Not logged in: as in a request, a 401.
            nobody = await _job("quart", "nobody", env=env)
            assert nobody["error"] == "LoginRequired 401" and nobody["logged_in"] is False
            # The Flask shim's job: the same token; its logout is the app's too.
            flask = await _job("flask", "ada", env=env)
            assert flask["token"] == seen["after"] and flask["logged_in"] is False
            assert "user:ada" in flask["keys"]  # type: ignore[operator]
            assert await _token(ada) == 401


async def test_the_jobs_example_as_shipped(tmp_path: Path) -> None:
    """examples/jobs.py as its docstring runs it: the fake, the app on two workers, two users
    signed in and linked; then ``quart --app examples.jobs nightly`` names each of them."""
    shutil.copytree(Path(__file__).parent.parent / "examples", tmp_path / "examples")
    fake_port, port = free_port(), free_port()
    fake_url, app_url = f"http://127.0.0.1:{fake_port}", f"http://127.0.0.1:{port}"
    env = {
        "SPOTIFY_ACCOUNTS_URL": fake_url,
        "SPOTIFY_API_URL": fake_url + "/v1",
        "SPOTIFY_CLIENT_ID": "demo-client",
        "SPOTIFY_REDIRECT_URI": app_url + "/callback/",
        "SECRET_KEY": "",
        "SPOTIFY_TOKEN_STORE": "",
        "PYTHONPATH": str(tmp_path),
    }
    fake = ["quart_spotify_auth", "fake", "--port", str(fake_port)]
    served = ["hypercorn", "--workers", "2", "--bind", f"127.0.0.1:{port}", "examples.jobs:app"]
    async with (
        _process(fake, fake_port, {}, cwd=tmp_path),
        _process(served, port, env, cwd=tmp_path),
    ):
        for name in ("ada", "grace"):
            async with httpx.AsyncClient(timeout=30) as http:
                await _log_in(http, app_url, fake_url, f"/signin?user={name}")
                assert (await http.get(app_url + "/")).json()["user"] == name
        environment = {k: v for k, v in {**os.environ, **env}.items() if v != ""}
        job = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "quart", "--app", "examples.jobs", "nightly",
            cwd=tmp_path, env=environment,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        out, err = await job.communicate()
    assert job.returncode == 0, err.decode()[-2000:]
    assert sorted(out.decode().splitlines()) == ["ada: Alice", "grace: Alice"], err.decode()
    assert b"Warning" not in err and b"Error" not in err


async def test_the_websocket_in_the_jobs_example_finds_its_user_by_id(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A websocket has no request: the example's handler finds its user with for_user."""
    for name, value in (("SPOTIFY_CLIENT_ID", "test-client"), ("SPOTIFY_TOKEN_STORE", "memory")):
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("SECRET_KEY", "a-websocket-test-secret-key-long-enough")
    sys.modules.pop("examples.jobs", None)
    example = importlib.import_module("examples.jobs")
    fake = make_fake(redirect_uri="http://127.0.0.1:5000/callback/")
    example.app.config["SPOTIFY_ACCOUNTS_URL"] = "https://fake.invalid"
    example.app.config["SPOTIFY_API_URL"] = "https://fake.invalid/v1"
    transport = httpx.ASGITransport(app=fake)
    SpotifyAuth(example.app, transport=transport, identity=example.signed_in_user)
    async with example.app.test_app():
        client = example.app.test_client()
        for refused in ("Sign in first", "Not logged in with Spotify"):  # signed in, not linked
            with pytest.raises(WebsocketResponseError) as info:
                async with client.websocket("/ws") as socket:
                    await socket.send("name?")
            assert info.value.response.status_code == 401
            assert refused in (await info.value.response.get_data(as_text=True))
            await client.get("/signin?user=ada")
        assert (await client.get("/signin?user=ada")).headers["Location"] == "/login"
        authorize = (await client.get("/login")).headers["Location"]
        callback = urlsplit(fake.decide(authorize, user="bob"))
        await client.get(callback.path, query_string=dict(parse_qsl(callback.query)))
        assert (await (await client.get("/")).get_json())["user"] == "ada"
        async with client.websocket("/ws") as socket:
            for _ in range(2):
                await socket.send("name?")
                assert json.loads(await socket.receive()) == {"display_name": "Bob"}


async def test_for_user_needs_an_identity_hook_and_a_user_id(fake: FakeSpotify) -> None:
    app, spotify = make_app()
    async with app.app_context():
        with pytest.raises(ConfigurationError, match="identity"):
            spotify.for_user("ada")
    keyed = Quart(__name__)
    keyed.config.update(SECRET_KEY="k" * 32, SPOTIFY_CLIENT_ID="c", SPOTIFY_TOKEN_STORE="memory")
    users = SpotifyAuth(keyed, identity=lambda: None)
    with pytest.raises(ValueError, match="user's id"):
        users.for_user("", app=keyed)
    with pytest.raises(TypeError, match="str or int"):
        users.for_user(1.5, app=keyed)  # type: ignore[arg-type]
    user = users.for_user(42, app=keyed)  # outside any app context, with app=
    assert repr(user) == "User('42')" and not await user.is_logged_in()
    with pytest.raises(LoginRequired):
        await user.get_access_token()


async def test_admins_list_and_forget_logins_from_the_command_line(
    fake: FakeSpotify, tmp_path: Path
) -> None:
    port = free_port()
    async with serve(fake) as fake_url:
        env = _env(fake_url, port, tmp_path)
        app = Server("tests.served_app:app", env=env, port=port)
        async with app, _user(app.url, fake_url, "ada") as ada, _user(app.url, fake_url, "bob"):
            token = await _token(ada)
            # An idle login, last used three days ago, in the same store.
            store = SQLTokenStore(f"sqlite:///{tmp_path}/quart_spotify_auth.sqlite3")
            now = time.time()
            record = TokenRecord("idle-token", "r", now + 3600, now, frozenset(), now - 4 * 86400)
            await store.put("user:idle", record, used=now - 3 * 86400)
            await store.close()
            spec = ["--app", "tests.served_app:app"]
            table = await _cli("logins", *spec, env=env)
            assert table.returncode == 0, table.stderr
            lines = table.stdout.splitlines()
            assert lines[0].split()[:2] == ["KEY", "USER"] and "3 login(s)" in lines[-1]
            assert any(line.split()[:2] == ["user:ada", "ada"] for line in lines)
            assert isinstance(token, str) and token not in table.stdout + table.stderr
            listed = json.loads((await _cli("logins", *spec, "--json", env=env)).stdout)
            assert sorted(row["key"] for row in listed) == ["user:ada", "user:bob", "user:idle"]
            assert "idle-token" not in json.dumps(listed)
            # forget --idle 2: only the login unused for three days goes.
            idle = await _cli("logins", "forget", "--idle", "2", *spec, env=env)
            assert idle.returncode == 0 and "Forgot 1 login(s)" in idle.stdout, idle.stderr
            # forget KEY: that user must log in again, in the served app too.
            forgot = await _cli("logins", "forget", "user:ada", *spec, env=env)
            assert forgot.returncode == 0, forgot.stderr
            assert await _token(ada) == 401
            listed = json.loads((await _cli("logins", *spec, "--json", env=env)).stdout)
            assert [row["key"] for row in listed] == ["user:bob"]
            again = await _cli("logins", "forget", "user:ada", *spec, env=env)
            assert again.returncode == 1 and "No login is stored under 'user:ada'" in again.stderr
    for wrong, said in (
        (["logins", "forget", *spec], "a KEY or --idle DAYS"),
        (["logins", "user:ada", *spec], "invalid choice"),
        (["logins", "forget", "--idle", "0", *spec], "not a number of days above 0"),
        (["logins", "--app", "no_such_module:app"], "Cannot load the app"),
        (["migrate", *spec, "--to", "redis://:hunter2@127.0.0.1:1/0"], "store is unavailable"),
        # Read as SPOTIFY_TOKEN_STORE is: postgres:// is PostgreSQL, an unknown one is named.
        (["migrate", *spec, "--to", "postgres://u:hunter2@127.0.0.1:1/app"], "PostgreSQL"),
        (["migrate", *spec, "--to", "mysql://u:hunter2@db/app"], "not a store this package"),
        (["migrate", *spec, "--to", "memory"], "memory keeps nothing"),
        (["migrate", *spec, "--to", ""], "--to names no store"),
        (["migrate", *spec, "--to", f"sqlite:///{tmp_path}/quart_spotify_auth.sqlite3"],
         "names the store the app uses already"),
    ):  # fmt: skip
        done = await _cli(*wrong, env=env)
        assert done.returncode in (1, 2) and said in done.stderr, (wrong, done.stderr)
        assert "hunter2" not in done.stdout + done.stderr
    in_memory = await _cli("logins", *spec, env={**env, "TEST_STORE": "memory"})
    assert in_memory.returncode == 1 and "MemoryTokenStore" in in_memory.stderr


async def test_every_login_moves_from_sqlite_to_postgresql_and_nobody_logs_in_again(
    fake: FakeSpotify, pg_server: PostgreSQLServer, sql_prefix: str, tmp_path: Path
) -> None:
    """Browsers and users log in on SQLite; the app stops; migrate; it starts on PostgreSQL:
    the same cookies and users are logged in, and renewal goes on with no refresh refused."""
    fake.rotate_confidential = True  # a refresh token used twice would be refused
    fake.access_ttl = 6  # renewed in the background from 3 s on
    port = free_port()
    async with serve(fake) as fake_url:
        env = _env(fake_url, port, tmp_path, TEST_PREFIX=sql_prefix)
        browser, ada = (Browser(f"http://127.0.0.1:{port}", fake_url) for _ in range(2))
        ada.http.headers["X-Test-User"] = "ada"
        async with browser, ada:
            async with Server("tests.served_app:app", env=env, port=port):
                for each in (browser, ada):
                    assert (await each.login()).status_code == 302
                    assert isinstance(await _token(each), str)
            spec = ["--app", "tests.served_app:app", "--to", pg_server.url]
            dry = await _cli("migrate", *spec, "--dry-run", env=env)
            assert dry.returncode == 0 and "2 login(s) would be copied" in dry.stdout, dry.stderr
            moved = await _cli("migrate", *spec, env=env)
            assert moved.returncode == 0 and "2 login(s) copied" in moved.stdout, moved.stderr
            assert f"SPOTIFY_TOKEN_STORE={pg_server.url}" in moved.stdout  # the next step
            again = await _cli("migrate", *spec, env=env)
            assert "0 login(s) copied" in again.stdout and "2 already there" in again.stdout
            before = fake.requests["token:refresh_token"]
            on_pg = {**env, "TEST_STORE": pg_server.url}
            async with Server("tests.served_app:app", env=on_pg, port=port):
                for each in (browser, ada):
                    assert isinstance(await _token(each), str)  # the same cookie, logged in
                await until(
                    lambda: fake.requests["token:refresh_token"] >= before + 4, "renewals", 60
                )
                for each in (browser, ada):
                    assert isinstance(await _token(each), str)
    assert fake.requests["refused:invalid_grant"] == 0
