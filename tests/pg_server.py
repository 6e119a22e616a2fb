"""A real PostgreSQL for the tests: a fresh cluster (initdb) in a temporary folder on a free
port, started and stopped with pg_ctl (as the postgres user when the tests run as root, since
PostgreSQL refuses to run as root)."""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile

import pytest

from quart_spotify_auth.serving import free_port

from .redis_server import IN_CI


def _bin(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    return candidates[-1] if candidates else None


def require_postgresql() -> tuple[str, str]:
    """initdb and pg_ctl; a skip on a user's machine without them, a failure in CI."""
    initdb, pg_ctl = _bin("initdb"), _bin("pg_ctl")
    if initdb is None or pg_ctl is None:
        if IN_CI:
            pytest.fail("PostgreSQL is not installed, and CI=true needs it (see .ci/run)")
        pytest.skip("PostgreSQL is not installed (apt-get install postgresql)")
    return initdb, pg_ctl


class PostgreSQLServer:
    def __init__(self) -> None:
        self.initdb, self.pg_ctl = require_postgresql()
        self.port = free_port()
        self.url = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"
        self._dir = tempfile.mkdtemp(prefix="qsa-pg-")
        self._as_root = os.geteuid() == 0
        if self._as_root:
            shutil.chown(self._dir, "postgres", "postgres")
        self._run(self.initdb, "-D", self._dir, "-U", "postgres", "-A", "trust", "-E", "UTF8",
                  "--no-sync")  # fmt: skip

    def _run(self, *command: str) -> None:
        prefix = ["runuser", "-u", "postgres", "--"] if self._as_root else []
        subprocess.run([*prefix, *command], check=True, stdout=subprocess.DEVNULL)

    def start(self) -> None:
        options = f"-p {self.port} -k {self._dir} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._run(self.pg_ctl, "-D", self._dir, "-l", f"{self._dir}/log", "-w", "-o", options,
                  "start")  # fmt: skip

    def stop(self) -> None:
        self._run(self.pg_ctl, "-D", self._dir, "-m", "fast", "-w", "stop")

    def remove(self) -> None:
        shutil.rmtree(self._dir, ignore_errors=True)
