"""What a newcomer meets first: a secret key every worker and restart shares, callbacks and
401s that name the real cause when keys disagree, and identity hooks whose "no user" values
(``False``, ``0``, ``" "``, ``[]``) never put strangers on one key."""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from quart import Quart, request

from benchmarks.servers import Server
from quart_spotify_auth import ConfigurationError, SpotifyAuth, instance_secret_key
from quart_spotify_auth.adapter import identity_of
from quart_spotify_auth.serving import free_port, serve
from quart_spotify_auth.stores.redis import RedisTokenStore
from quart_spotify_auth.testing import FakeSpotify

from .apps import make_app, make_flask_app
from .conftest import Browser, ServedFlask, Stack
from .servers import RedisServer
from .test_durable import _unwritable

# -- instance_secret_key -----------------------------------------------------------------------


def _instance_app(folder: Path) -> Quart:
    return Quart(__name__, instance_path=str(folder))


def test_the_secret_key_comes_from_the_environment_first(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SECRET_KEY", "  from-the-environment  ")
    assert instance_secret_key(_instance_app(tmp_path)) == "from-the-environment"
    assert not (tmp_path / "secret_key").exists()  # nothing written when the variable is set


def test_a_generated_key_is_kept_for_its_owner_and_read_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SECRET_KEY", raising=False)
    folder = tmp_path / "instance"  # made when missing
    key = instance_secret_key(_instance_app(folder))
    assert len(key) == 64 and int(key, 16) >= 0
    assert stat.S_IMODE((folder / "secret_key").stat().st_mode) == 0o600
    assert instance_secret_key(_instance_app(folder)) == key  # a restart reads the same key
    assert sorted(p.name for p in folder.iterdir()) == ["secret_key"]  # no draft left behind


def test_a_key_file_others_can_read_is_made_private(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SECRET_KEY", raising=False)
    (tmp_path / "secret_key").write_text("k" * 40)
    (tmp_path / "secret_key").chmod(0o644)
    assert instance_secret_key(_instance_app(tmp_path)) == "k" * 40
    assert stat.S_IMODE((tmp_path / "secret_key").stat().st_mode) == 0o600


def test_a_too_short_key_file_is_refused_with_the_fix(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SECRET_KEY", raising=False)
    (tmp_path / "secret_key").write_text("short\n")
    with pytest.raises(ConfigurationError, match="too few") as info:
        instance_secret_key(_instance_app(tmp_path))
    assert str(tmp_path / "secret_key") in str(info.value)


def test_an_unwritable_instance_folder_names_the_folder_and_secret_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SECRET_KEY", raising=False)
    blocked = tmp_path / "file"
    blocked.write_text("")  # a file where the folder should be: even root cannot make it
    with pytest.raises(ConfigurationError) as info:
        instance_secret_key(_instance_app(blocked / "instance"))
    message = str(info.value)
    assert str(blocked / "instance") in message and "SECRET_KEY" in message


def _key_in_a_process(folder: str, start: Any, queue: Any) -> None:
    start.wait()
    queue.put(instance_secret_key(Quart("worker", instance_path=folder)))


def test_workers_starting_at_once_all_get_one_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SECRET_KEY", raising=False)
    context = multiprocessing.get_context("fork")
    start, queue = context.Event(), context.Queue()
    workers = [
        context.Process(target=_key_in_a_process, args=(str(tmp_path), start, queue))
        for _ in range(6)
    ]
    for worker in workers:
        worker.start()
    start.set()  # all race to make the file
    keys = {queue.get(timeout=30) for _ in workers}
    for worker in workers:
        worker.join(30)
    assert len(keys) == 1 and (tmp_path / "secret_key").read_text().strip() in keys


# -- the cause a failed callback or a 401 names ------------------------------------------------


def _served(fake_url: str, port: int, secret_key: str, tmp_path: Path) -> Server:
    env = {
        "TEST_FAKE_URL": fake_url,
        "TEST_PORT": str(port),
        "TEST_SECRET_KEY": secret_key,
        "TEST_STORE": f"sqlite:///{tmp_path}/tokens.sqlite3",
    }
    return Server("tests.served_app:app", env=env, port=port)


async def test_a_restart_with_another_secret_key_names_the_key_not_the_host(
    fake: FakeSpotify, tmp_path: Path
) -> None:
    """The seed's trap, as workers with keys of their own meet it: the login starts under one
    key and its callback (and the next page) reaches a process with another."""
    port = free_port()
    async with serve(fake) as fake_url:
        async with Browser(f"http://127.0.0.1:{port}", fake_url) as browser:
            async with _served(fake_url, port, "first-key-" + "a" * 30, tmp_path):
                callback = await browser.consent(await browser.start_login())
                stale = browser.http.cookies.get("session")
                assert stale
            async with _served(fake_url, port, "second-key-" + "b" * 30, tmp_path):
                reply = await browser.http.get(callback)
                assert reply.status_code == 400
                assert "different secret key" in reply.text and "instance_secret_key" in reply.text
                assert "different host" not in reply.text
                token = await browser.get("/token")
                assert token.status_code == 401 and "different secret key" in token.text
                # Without any cookie the cause is still the host or blocked cookies.
                browser.http.cookies.clear()
                reply = await browser.http.get(callback)
                assert reply.status_code == 400 and "different host" in reply.text
                assert "secret key" not in reply.text
                assert (await browser.get("/token")).text.count("secret key") == 0
    assert fake.requests.get("token:authorization_code", 0) == 0  # no code was spent


@pytest.mark.parametrize("stack", [{}], indirect=True)
async def test_a_tampered_session_cookie_is_a_foreign_key_too(stack: Stack) -> None:
    async with stack.browser() as browser:
        callback = await browser.consent(await browser.start_login())
        value = browser.http.cookies["session"]
        browser.http.cookies.clear()
        browser.http.cookies.set(
            "session", value[:-4] + ("AAAA" if value[-4:] != "AAAA" else "BBBB")
        )
        reply = await browser.http.get(callback)
        assert reply.status_code == 400 and "different secret key" in reply.text


# -- identity hooks: "no user" in every spelling ---------------------------------------------


@pytest.mark.parametrize("nobody", [None, False, 0, "", "   ", []], ids=repr)
def test_identity_of_treats_every_falsy_or_blank_value_as_no_user(nobody: object) -> None:
    assert identity_of(nobody) is None


def test_identity_of_keeps_str_and_int_ids_and_refuses_the_rest() -> None:
    assert identity_of("alice") == "alice" and identity_of(42) == "42"
    for wrong in (True, 4.5, {"id": 1}, ["a"], object()):
        with pytest.raises(TypeError, match="must return the user's id as a str or int"):
            identity_of(wrong)


def _anonymous_is(nobody: object) -> Any:
    # flask-login's idiom: current_user.is_authenticated and current_user.id
    return lambda: request.headers.get("X-User") or nobody


@pytest.mark.parametrize(
    "stack",
    [{"identity": _anonymous_is(value)} for value in (False, 0, " ", list[str]())],
    ids=["False", "0", "blank", "empty-list"],
    indirect=True,
)
async def test_anonymous_visitors_of_an_identity_app_never_share_a_login(stack: Stack) -> None:
    async with stack.browser() as first, stack.browser() as stranger:
        assert (await first.login("alice")).status_code == 302
        mine = await first.get("/token")
        assert mine.status_code == 200
        # A fresh browser without cookies is nobody: not the first visitor's login.
        assert (await stranger.get("/token")).status_code == 401
        assert (await stranger.post("/logout")).status_code == 200
        assert (await first.get("/token")).json() == mine.json()  # still logged in
        # A user the app knows is keyed by its id, apart from the anonymous browser.
        assert (
            await stranger.http.get(stranger.app_url + "/token", headers={"X-User": "7"})
        ).status_code == 401


async def test_an_identity_hook_returning_an_object_is_a_clear_error(fake: FakeSpotify) -> None:
    app = Quart(__name__)
    app.config.update(SECRET_KEY="k" * 32, SPOTIFY_CLIENT_ID="c", SPOTIFY_TOKEN_STORE="memory")
    not_an_id: Any = {"id": 1}
    spotify = SpotifyAuth(app, identity=lambda: not_an_id)
    async with app.test_app(), app.test_request_context("/token"):
        with pytest.raises(TypeError, match="identity hook returned dict"):
            await spotify.get_access_token()


# -- the examples' own processes: run as their docstrings say -----------------------------------


def test_the_quickstart_runs_without_secret_key_in_a_fresh_folder(tmp_path: Path) -> None:
    """The README's quickstart, saved as app.py in an empty folder, imports and configures
    with only SPOTIFY_CLIENT_ID set: the key is made in ./instance, for its owner."""
    source = Path(__file__).parent.parent / "examples" / "quickstart.py"
    (tmp_path / "app.py").write_text(source.read_text())
    env = {k: v for k, v in os.environ.items() if k != "SECRET_KEY"}
    env["SPOTIFY_CLIENT_ID"] = "demo-client"
    code = "import app; print(app.app.secret_key)"
    first = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    assert first.returncode == 0, first.stderr
    again = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    assert first.stdout == again.stdout and len(first.stdout.strip()) == 64
    assert stat.S_IMODE((tmp_path / "instance" / "secret_key").stat().st_mode) == 0o600


# -- SPOTIFY_TOKEN_ENCRYPTION_MIGRATING never unbinds a bound record -----------------------------


async def test_migrating_still_refuses_a_bound_record_moved_under_another_key(
    fake: FakeSpotify, redis_server: RedisServer, redis_prefix: str
) -> None:
    """Someone with write access to Redis and no encryption key copies the victim's current,
    encrypted record under their own browser's key, while the app reads old records in clear
    (the migration window). Their browser must not get the victim's token."""
    from cryptography.fernet import Fernet

    key = Fernet.generate_key().decode()
    store = RedisTokenStore(
        redis_server.url, prefix=redis_prefix, encryption_keys=[key], migrating=True, cache_ttl=0
    )
    port = free_port()
    async with serve(fake) as fake_url:
        app, _ = make_app(
            accounts_url=fake_url, redirect_uri=f"http://127.0.0.1:{port}/callback/", store=store
        )
        async with (
            serve(app, port=port) as app_url,
            Browser(app_url, fake_url) as victim,
            Browser(app_url, fake_url) as attacker,
        ):
            await victim.login("alice")
            await attacker.login("bob")
            assert (await victim.get("/token")).status_code == 200
            assert (await attacker.get("/token")).status_code == 200
            redis = store.redis
            first, second = [k async for k in redis.scan_iter(f"{redis_prefix}t:browser:*")]
            one: Any = await redis.hgetall(first)
            other: Any = await redis.hgetall(second)
            await redis.hset(first, mapping=other)  # each record under the other's key
            await redis.hset(second, mapping=one)
            for browser in (victim, attacker):  # no login now, and never the other's
                assert (await browser.get("/token")).status_code == 401


# -- an instance folder the app cannot write --------------------------------------------------


async def test_an_unwritable_instance_folder_is_named_at_start_and_a_503_for_requests(
    fake: FakeSpotify, tmp_path: Path
) -> None:
    """hypercorn's worker used to die at startup with a bare PermissionError, and the Flask
    shim's /login was a 500; the log line spoke to end users."""
    instance = tmp_path / "instance"
    instance.mkdir()
    port = free_port()
    log = tmp_path / "quart.log"
    with _unwritable(instance):
        async with serve(fake) as fake_url:
            env = {"TEST_FAKE_URL": fake_url, "TEST_PORT": str(port), "TEST_STORE": "",
                   "TEST_INSTANCE": str(instance)}  # fmt: skip
            async with (
                Server("tests.served_app:app", env=env, port=port, log=log) as server,
                Browser(server.url, fake_url) as browser,
            ):
                callback = await browser.consent(await browser.start_login())
                reply = await browser.http.get(callback)
                assert reply.status_code == 503 and "could not be saved" in reply.text
                assert (await browser.get("/token")).status_code in (401, 503)
            text = log.read_text()
            assert "Traceback" not in text and "LifespanFailure" not in text
            said = [line for line in text.splitlines() if "cannot be opened" in line]
            assert len(said) == 1 and str(instance / "quart_spotify_auth.sqlite3") in said[0]
            assert "503 until it" in said[0] and "login is kept" not in text
            # The Flask shim: the same app, the same folder.
            flask_port = free_port()
            app, spotify = make_flask_app(
                accounts_url=fake_url,
                redirect_uri=f"http://127.0.0.1:{flask_port}/callback/",
                store_url=None,
                instance_path=str(instance),
            )
            with ServedFlask(app, flask_port) as served:
                async with Browser(served.url, fake_url) as browser:
                    callback = await browser.consent(await browser.start_login())
                    reply = await browser.http.get(callback)
                    assert reply.status_code == 503 and "could not be saved" in reply.text
            await asyncio.get_running_loop().run_in_executor(None, spotify.close, app)
