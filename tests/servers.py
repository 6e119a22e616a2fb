"""Real servers for the tests and the benchmarks: a ``redis-server`` and a PostgreSQL cluster,
each on a free loopback port in a temporary folder, started, stopped (a restart keeps their
data) and removed. PostgreSQL refuses to run as root: as root, its commands run as the
postgres user. Nothing here depends on pytest (the benchmarks use it too)."""

from __future__ import annotations

import asyncio
import glob
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable

from quart_spotify_auth.serving import free_port

__all__ = ["IN_CI", "PostgreSQLServer", "RedisServer", "postgresql_bin", "redis_bin", "until"]

IN_CI = os.environ.get("CI", "").lower() == "true"


def redis_bin() -> str | None:
    return shutil.which("redis-server")


def postgresql_bin(name: str) -> str | None:
    """A PostgreSQL command: on the PATH, or in Debian's versioned folder."""
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    return candidates[-1] if candidates else None


class RedisServer:
    """``persistent``: an append-only file with fsync on every write, so a restart (or a kill)
    loses nothing, as a production Redis would be set up."""

    def __init__(self, port: int | None = None, *, persistent: bool = False) -> None:
        binary = redis_bin()
        if binary is None:
            raise RuntimeError("redis-server is not installed (apt-get install redis-server)")
        self.binary = binary
        self.port = port or free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self._dir = tempfile.mkdtemp(prefix="qsa-redis-")
        self._process: subprocess.Popen[bytes] | None = None
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

    def stop(self, *, clean: bool = False) -> None:
        """A kill, or with ``clean`` a SIGTERM (what an operator's restart does)."""
        if self._process is not None:
            if clean:
                self._process.terminate()
            else:
                self._process.kill()
            self._process.wait()
            self._process = None

    def restart(self) -> float:
        """A clean stop and a start on the same port and data; the seconds it was away."""
        began = time.perf_counter()
        self.stop(clean=True)
        self.start()
        return time.perf_counter() - began

    def remove(self) -> None:
        self.stop()
        shutil.rmtree(self._dir, ignore_errors=True)


class PostgreSQLServer:
    """A fresh cluster (initdb, trust authentication, fsync off) for one test session."""

    def __init__(self) -> None:
        initdb, pg_ctl = postgresql_bin("initdb"), postgresql_bin("pg_ctl")
        if initdb is None or pg_ctl is None:
            raise RuntimeError("PostgreSQL is not installed (apt-get install postgresql)")
        self.pg_ctl = pg_ctl
        self.port = free_port()
        self.url = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"
        self._dir = tempfile.mkdtemp(prefix="qsa-pg-")
        self._as_root = os.geteuid() == 0
        if self._as_root:
            shutil.chown(self._dir, "postgres", "postgres")
        self._run(initdb, "-D", self._dir, "-U", "postgres", "-A", "trust", "-E", "UTF8",
                  "--no-sync")  # fmt: skip
        with open(os.path.join(self._dir, "postgresql.conf"), "a") as conf:
            conf.write(
                f"port = {self.port}\nlisten_addresses = '127.0.0.1'\n"
                f"unix_socket_directories = '{self._dir}'\nfsync = off\n"
            )

    def _run(self, *command: str) -> None:
        prefix = ["runuser", "-u", "postgres", "--"] if self._as_root else []
        subprocess.run([*prefix, *command], check=True, stdout=subprocess.DEVNULL)

    def start(self) -> None:
        self._run(self.pg_ctl, "-D", self._dir, "-l", f"{self._dir}/log", "-w", "start")

    def stop(self) -> None:
        self._run(self.pg_ctl, "-D", self._dir, "-m", "fast", "-w", "stop")

    def stopped(self) -> bool:
        return not os.path.exists(os.path.join(self._dir, "postmaster.pid"))

    def restart(self) -> float:
        began = time.perf_counter()
        self.stop()
        self.start()
        return time.perf_counter() - began

    def remove(self) -> None:
        if not self.stopped():
            self.stop()
        shutil.rmtree(self._dir, ignore_errors=True)


async def until(
    condition: Callable[[], object], what: str = "a condition", timeout: float = 30.0
) -> None:
    """Wait for a condition another server (the fake, Redis, a worker) reaches: polled, and
    bounded by ``timeout`` (a ceiling for a slow machine, not an expected time)."""
    try:
        async with asyncio.timeout(timeout):
            while not condition():
                await asyncio.sleep(0.02)
    except TimeoutError:
        raise TimeoutError(f"not reached in {timeout} s: {what}") from None
