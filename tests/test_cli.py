"""`python -m quart_spotify_auth`: the demo command and the settings check."""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from quart_spotify_auth import DEFAULTS
from quart_spotify_auth.__main__ import main
from quart_spotify_auth.serving import free_port, wait_for_port

from ._httplib import CHOICE, httpx
from .servers import PostgreSQLServer, RedisServer


def test_check_reports_a_bad_configuration(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("SPOTIFY_CLIENT_ID", "id")
    monkeypatch.setenv("SPOTIFY_REDIRECT_URI", "http://localhost:5000/callback/")
    assert main(["check"]) == 1
    assert "127.0.0.1:5000" in capsys.readouterr().err


def test_check_accepts_a_good_configuration(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("SPOTIFY_CLIENT_ID", "id")
    monkeypatch.setenv("SPOTIFY_CLIENT_SECRET", "shh-secret")
    assert main(["check"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("OK") and "shh-secret" not in out


async def test_demo_command_serves_the_app_and_the_fake() -> None:
    port, fake_port = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("SPOTIFY_")} | CHOICE
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "quart_spotify_auth", "demo", "--port", str(port),
        "--fake-port", str(fake_port),
        stdout=asyncio.subprocess.PIPE, env=env,
    )  # fmt: skip
    try:
        assert process.stdout is not None
        first = await asyncio.wait_for(process.stdout.readline(), 30)
        assert f"open http://127.0.0.1:{port}/" in first.decode()
        second = (await process.stdout.readline()).decode()
        assert "fake Spotify" in second
        await wait_for_port("127.0.0.1", port)
        async with httpx.AsyncClient() as http:
            home = await http.get(f"http://127.0.0.1:{port}/")
            assert home.status_code == 200 and "Log in with Spotify" in home.text
            login = await http.get(f"http://127.0.0.1:{port}/login")
            assert login.headers["location"] == "/spotify/login?next=/"
            login = await http.get(f"http://127.0.0.1:{port}/spotify/login?next=/")
            assert login.headers["location"].startswith(f"http://127.0.0.1:{fake_port}/authorize")
            assert f"127.0.0.1%3A{port}%2Fcallback" in login.headers["location"]
    finally:
        process.terminate()
        assert await asyncio.wait_for(process.wait(), 30) is not None


async def test_fake_command_serves_a_fake_for_your_app() -> None:
    port = free_port()
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "quart_spotify_auth", "fake", "--port", str(port),
        "--client-id", "mine", "--client-secret", "shh",
        stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        assert process.stdout is not None
        first = await asyncio.wait_for(process.stdout.readline(), 30)
        assert f"http://127.0.0.1:{port}" in first.decode()
        await wait_for_port("127.0.0.1", port)
        async with httpx.AsyncClient() as http:
            page = await http.get(
                f"http://127.0.0.1:{port}/authorize",
                params={"client_id": "mine", "response_type": "code",
                        "redirect_uri": "http://127.0.0.1:8123/callback/"},
            )  # fmt: skip
            assert page.status_code == 200 and 'id="agree"' in page.text
    finally:
        process.terminate()
        await asyncio.wait_for(process.wait(), 30)


@pytest.mark.parametrize("command", ["demo", "fake"])
async def test_a_taken_port_is_an_error_that_names_it(command: str) -> None:
    port = free_port()
    with socket.socket() as other:  # another program listens there
        other.bind(("127.0.0.1", port))
        other.listen()
        # The demo's fake takes PORT + 1 unless told: give it a free port of its own, so only
        # PORT can be the busy one.
        fake = ["--fake-port", str(free_port())] if command == "demo" else []
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "quart_spotify_auth", command, "--port", str(port), *fake,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
            env={k: v for k, v in os.environ.items() if not k.startswith("SPOTIFY_")} | CHOICE,
        )  # fmt: skip
        out, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 2
    assert "open http" not in out.decode()  # it never claimed to serve
    assert f"127.0.0.1:{port} is already in use" in err.decode() and "--port" in err.decode()


async def test_serve_refuses_a_taken_port() -> None:
    from quart_spotify_auth.serving import PortInUse, serve
    from quart_spotify_auth.testing import make_fake

    port = free_port()
    with socket.socket() as other:
        other.bind(("127.0.0.1", port))
        other.listen()
        with pytest.raises(PortInUse, match=str(port)):
            async with serve(make_fake(), port=port):
                raise AssertionError("served on a taken port")


# -- first contact (issue 18): every command over a real process ---------------------------


def _cli(
    *args: str, env: dict[str, str] | None = None, cwd: str | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """``python -m quart_spotify_auth ARGS`` in a process of its own, with no ``SPOTIFY_*``
    variable but those of ``env`` (and the suite's HTTP library)."""
    clean = {k: v for k, v in os.environ.items() if "SPOTIFY" not in k.upper()}
    return subprocess.run(
        [sys.executable, "-m", "quart_spotify_auth", *args],
        env={**clean, **CHOICE, "PYTHONPATH": os.pathsep.join(sys.path), **(env or {})},
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_check_reads_only_what_the_app_reads_and_names_typos() -> None:
    # The app reads SPOTIFY_SCOPES only from app.config: check said it was used. The two
    # misspelt secrets passed silently, and the app ran as a public client.
    done = _cli(
        "check",
        env={
            "SPOTIFY_CLIENT_ID": "my-id",
            "SPOTIFY_SCOPES": "user-top-read",
            "SPOTFY_CLIENT_SECRET": "typo-secret-1",
            "SPOTIFY_CLIENT_SECERT": "typo-secret-2",
            "SPOTIFY_TOKEN_STORE": "memory",
        },
    )
    assert done.returncode == 0, done.stderr
    assert "user-top-read" not in done.stdout
    assert re.search(r"SPOTIFY_SCOPES\s+''\s+default \(environment ignored\)", done.stdout)
    assert "SPOTIFY_SCOPES is ignored" in done.stderr
    assert "SPOTFY_CLIENT_SECRET is not a setting" in done.stderr
    assert "SPOTIFY_CLIENT_SECERT is not a setting" in done.stderr
    assert done.stderr.count("did you mean SPOTIFY_CLIENT_SECRET?") == 2
    assert "typo-secret" not in done.stdout + done.stderr  # a value is never shown
    for key in DEFAULTS:  # every setting, not four
        assert re.search(rf"^  {key} ", done.stdout, re.MULTILINE), key
    assert re.search(r"SPOTIFY_CLIENT_ID\s+'my-id'\s+environment", done.stdout)
    strict = _cli("check", "--strict", env={"SPOTIFY_CLIENT_ID": "x", "SPOTIFY_SCOPES": "s"})
    assert strict.returncode == 1 and "SPOTIFY_SCOPES is ignored" in strict.stderr
    assert "OK:" not in strict.stdout and "Not OK under --strict" in strict.stdout


def test_check_masks_every_secret() -> None:
    key = "a" * 43 + "="
    done = _cli(
        "check",
        env={
            "SPOTIFY_CLIENT_ID": "my-id",
            "SPOTIFY_CLIENT_SECRET": "hunter1",
            "SPOTIFY_TOKEN_ENCRYPTION_KEYS": key,
            "SPOTIFY_TOKEN_STORE": f"redis://:hunter2@127.0.0.1:{free_port()}/0",
        },
    )
    shown = done.stdout + done.stderr
    assert "hunter" not in shown and key not in shown
    assert re.search(r"SPOTIFY_CLIENT_SECRET\s+'\*\*\*'", done.stdout)
    assert re.search(r"SPOTIFY_TOKEN_ENCRYPTION_KEYS\s+1 key\(s\), '\*\*\*'", done.stdout)
    assert "redis://:***@127.0.0.1:" in done.stdout


@pytest.mark.parametrize("kind", ["redis", "postgresql"])
def test_check_fails_when_the_store_cannot_be_reached(kind: str) -> None:
    port = free_port()  # nothing listens there
    url = {
        "redis": f"redis://:hunter2@127.0.0.1:{port}/0",
        "postgresql": f"postgresql://me:hunter2@127.0.0.1:{port}/db",
    }[kind]
    done = _cli("check", env={"SPOTIFY_CLIENT_ID": "x", "SPOTIFY_TOKEN_STORE": url})
    assert done.returncode == 1
    masked = url.replace("hunter2", "***")
    assert f"Store error: the token store {masked} cannot be reached" in done.stderr
    assert "hunter2" not in done.stdout + done.stderr
    assert not done.stdout.startswith("OK")


def test_check_opens_and_closes_a_working_store(
    tmp_path: Path, redis_server: RedisServer, pg_server: PostgreSQLServer
) -> None:
    for url in (
        "memory",
        f"sqlite:///{tmp_path}/tokens.sqlite3",
        redis_server.url,
        pg_server.url,
    ):
        done = _cli("check", env={"SPOTIFY_CLIENT_ID": "x", "SPOTIFY_TOKEN_STORE": url})
        assert done.returncode == 0, (url, done.stderr)
        assert done.stdout.startswith("OK") and "the token store answered" in done.stdout
    assert (tmp_path / "tokens.sqlite3").exists()
    unwritable = _cli(
        "check",
        env={"SPOTIFY_CLIENT_ID": "x", "SPOTIFY_TOKEN_STORE": "sqlite:////proc/no/tokens.db"},
    )
    assert unwritable.returncode == 1
    assert "Store error: the token store sqlite:////proc/no/tokens.db" in unwritable.stderr


def test_check_an_app_as_flask_and_hypercorn_name_it(tmp_path: Path) -> None:
    (tmp_path / "quartapp.py").write_text(
        "from quart import Quart\n"
        "from quart_spotify_auth import SpotifyAuth\n"
        "app = Quart(__name__)\n"
        "app.secret_key = 'k' * 32\n"
        "app.config.update(SPOTIFY_CLIENT_ID='cid', SPOTIFY_CLIENT_SECERT='typo-secret',\n"
        "                  SPOTIFY_SCOPES='user-top-read', SPOTIFY_TOKEN_STORE='memory')\n"
        "spotify = SpotifyAuth(app)\n"
    )
    (tmp_path / "flaskapp.py").write_text(
        "from flask import Flask\n"
        "from quart_spotify_auth.flask import SpotifyAuth\n"
        "def create_app():\n"
        "    app = Flask(__name__)\n"
        "    app.secret_key = 'k' * 32\n"
        "    app.config['SPOTIFY_CLIENT_ID'] = 'cid'\n"
        "    SpotifyAuth(app, SPOTIFY_SHOW_DIALOG=True)\n"
        "    return app\n"
    )
    done = _cli("check", "--app", "quartapp:app", cwd=str(tmp_path))
    assert done.returncode == 0, done.stderr
    assert re.search(r"SPOTIFY_SCOPES\s+'user-top-read'\s+app.config", done.stdout)
    assert "SPOTIFY_CLIENT_SECERT is not a setting" in done.stderr
    assert "typo-secret" not in done.stdout + done.stderr
    done = _cli("check", "--app", "flaskapp:create_app()", cwd=str(tmp_path))
    assert done.returncode == 0, done.stderr
    assert re.search(r"SPOTIFY_SHOW_DIALOG\s+True\s+SpotifyAuth\(\.\.\.\) argument", done.stdout)
    instance = tmp_path / "instance"
    assert f"None (SQLite in {instance})" in done.stdout  # the app's default store, tried
    assert (instance / "quart_spotify_auth.sqlite3").exists()
    missing = _cli("check", "--app", "nowhere:app", cwd=str(tmp_path))
    assert missing.returncode == 1 and "Cannot load the app nowhere:app" in missing.stderr


def test_every_command_explains_itself_and_its_defaults() -> None:
    from quart_spotify_auth.__main__ import _parser

    commands = next(
        a for a in _parser()._actions if isinstance(a, argparse._SubParsersAction)
    ).choices
    assert set(commands) == {"demo", "fake", "check", "logins", "migrate", "schema"}
    for name, parser in commands.items():
        assert parser.description, name
        for action in parser._actions:
            assert action.help, (name, action.dest)
    shown = " ".join(_cli("fake", "--help").stdout.split())  # as one line, however wrapped
    assert "Serve only the fake Spotify" in shown
    assert "(default: 3600)" in shown and "(default: 5001)" in shown
    assert "(default: PORT + 1)" in " ".join(_cli("demo", "--help").stdout.split())


async def test_a_taken_fake_port_is_named_as_such() -> None:
    port, fake_port = free_port(), free_port()
    with socket.socket() as other:
        other.bind(("127.0.0.1", fake_port))
        other.listen()
        done = await asyncio.to_thread(
            _cli, "demo", "--port", str(port), "--fake-port", str(fake_port)
        )
    assert done.returncode == 2
    said = done.stderr
    assert f"127.0.0.1:{fake_port} is already in use" in said and "(--fake-port)" in said


def test_schema_prefix_is_made_fit_as_the_store_does(tmp_path: Path) -> None:
    done = _cli("schema", "--prefix", "myapp", "--dialect", "sqlite")
    assert done.returncode == 0
    assert "CREATE TABLE myapp_tokens" in done.stdout and "myapptokens" not in done.stdout
    assert "CREATE TABLE myapp_claims" in done.stdout
    default = _cli("schema", "--prefix", "quart_spotify_auth:").stdout
    assert default == _cli("schema").stdout
    from quart_spotify_auth.stores.sqlschema import Schema

    assert Schema("myapp").tokens.name == "myapp_tokens"  # the store's own tables


@pytest.mark.parametrize(
    ("option", "value", "says"),
    [
        ("--token-lifetime", "-5", "--token-lifetime: '-5' is not a number of seconds above 0"),
        ("--token-lifetime", "nan", "--token-lifetime"),
        ("--redirect-uri", "http://localhost:8000/callback/", "http://127.0.0.1:8000/callback/"),
        ("--redirect-uri", "http://example.com/callback/", "plain http"),
    ],
)
def test_the_fake_refuses_what_spotify_would(option: str, value: str, says: str) -> None:
    done = _cli("fake", "--port", str(free_port()), option, value, timeout=30)
    assert done.returncode == 2
    assert says in done.stderr
