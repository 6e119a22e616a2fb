"""`python -m quart_spotify_auth`: the demo command and the settings check."""

from __future__ import annotations

import asyncio
import os
import socket
import sys

import httpx
import pytest

from quart_spotify_auth.__main__ import main
from quart_spotify_auth.serving import free_port, wait_for_port


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
    env = {k: v for k, v in os.environ.items() if not k.startswith("SPOTIFY_")}
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
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "quart_spotify_auth", command, "--port", str(port),
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
            env={k: v for k, v in os.environ.items() if not k.startswith("SPOTIFY_")},
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
