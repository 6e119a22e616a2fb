"""A real ``redis-server`` for the tests: started on a free port, stopped afterwards."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time

import pytest

from quart_spotify_auth.serving import free_port

IN_CI = os.environ.get("CI", "").lower() == "true"


def require_redis_server() -> str:
    """The path of redis-server; a skip on a user's machine without it, a failure in CI."""
    path = shutil.which("redis-server")
    if path is None:
        if IN_CI:
            pytest.fail("redis-server is not installed, and CI=true needs it (see .ci/run)")
        pytest.skip("redis-server is not installed")
    return path


class RedisServer:
    def __init__(self, port: int | None = None, *, persistent: bool = False) -> None:
        self.binary = require_redis_server()
        self.port = port or free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self._dir = tempfile.mkdtemp(prefix="qsa-redis-")
        self._process: subprocess.Popen[bytes] | None = None
        # Persistent: an append-only file, so data survives a kill and restart.
        self._persist = ["--appendonly", "yes", "--appendfsync", "always"] if persistent else [
            "--appendonly", "no"
        ]  # fmt: skip

    def start(self) -> None:
        self._process = subprocess.Popen(
            [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             *self._persist, "--dir", self._dir],
            stdout=subprocess.DEVNULL,
        )  # fmt: skip
        deadline = time.monotonic() + 10
        while not self._pong():
            if time.monotonic() > deadline or self._process.poll() is not None:
                raise RuntimeError("redis-server did not start")
            time.sleep(0.02)

    def _pong(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def stop(self) -> None:
        if self._process is not None:
            self._process.kill()
            self._process.wait()
            self._process = None
