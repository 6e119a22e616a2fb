"""Instructions per login, counted by valgrind's callgrind: what a login costs on each store,
repeatable whatever else the machine is doing (the served measures move by several points).

Each store's logins run in one process (:func:`child`: the login's own code, the app's test
harness and the fake Spotify through ASGI, no network), under callgrind twice, ``FEW`` and
``MANY`` logins; the difference over ``MANY - FEW`` is one login's instructions, start-up
left out. Hash seeds are fixed, so two runs count within a few tenths of a percent.

``python -m benchmarks login-instructions`` (skipped where valgrind is not installed).
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import sys
import tempfile
from typing import Any

FEW, MANY = 50, 250


async def _logins(store_url: str, count: int) -> int:
    """``count`` logins, a browser each: how many distinct tokens they got (0: the last one
    is not in the store)."""
    import httpx
    from quart.testing import TestApp

    from quart_spotify_auth.core import Caller
    from quart_spotify_auth.extension import current_core
    from quart_spotify_auth.testing import _log_in, make_fake
    from tests.apps import make_app

    fake = make_fake()
    app, _ = make_app(transport=httpx.ASGITransport(app=fake), store_url=store_url)
    # (Quart gives a test app's start 6 s: under callgrind, many times slower, a busy machine
    # went past it)
    harness = TestApp(app, startup_timeout=600, shutdown_timeout=600)
    async with harness, app.test_request_context("/"):
        core = current_core(app)
        tokens: set[str] = set()
        session: dict[str, Any] = {}
        for _ in range(count):  # a new browser each time
            session = {}
            tokens.add((await _log_in(core, session, fake, "alice", None, None)).access_token)
        key = core.key(Caller(session))  # the last login is in the store (one read, whatever
        last = await core.store.get(key) if key is not None else None  # the count)
        return len(tokens) if last is not None and last.access_token in tokens else 0


def child(store: str, count: int) -> int:
    """``count`` logins on ``store`` ("memory" or "sqlite", a file of its own)."""
    with tempfile.TemporaryDirectory() as folder:
        url = "memory" if store == "memory" else f"sqlite:///{folder}/tokens.sqlite3"
        return asyncio.run(_logins(url, count))


async def _count(valgrind: str, store: str, logins: int) -> int:
    process = await asyncio.create_subprocess_exec(
        valgrind, "--tool=callgrind", "--callgrind-out-file=/dev/null",
        sys.executable, "-m", "benchmarks.instructions", store, str(logins),
        env={**os.environ, "PYTHONHASHSEED": "0"},
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    _, err = await process.communicate()
    found = re.search(rb"refs:\s*([\d,]+)", err)
    if process.returncode or found is None:
        raise RuntimeError(f"callgrind failed on {store}: {err.decode()[-500:]}")
    return int(found.group(1).replace(b",", b""))


async def run() -> dict[str, Any]:
    valgrind = shutil.which("valgrind")
    if valgrind is None:
        return {"skipped": "valgrind is not installed"}
    results: dict[str, Any] = {}
    for store in ("memory", "sqlite"):
        few, many = await asyncio.gather(
            _count(valgrind, store, FEW), _count(valgrind, store, MANY)
        )
        results[f"{store}_per_login"] = round((many - few) / (MANY - FEW))
    results["sqlite_over_memory"] = round(
        results["sqlite_per_login"] / results["memory_per_login"], 3
    )
    return results


if __name__ == "__main__":  # a count of logins that did not all land is no count
    logins = int(sys.argv[2])
    sys.exit(0 if child(sys.argv[1], logins) == logins else f"not {logins} logins")
