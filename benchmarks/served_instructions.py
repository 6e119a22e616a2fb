"""Instructions per request of the served hot path, counted by valgrind's callgrind: what
``/token`` (``get_access_token()``) costs over ``/constant`` in a served app, repeatable
whatever else the machine is doing (the hot path's CPU ratio moves by several points a run).

``benchmarks.apps:hotpath`` is served by hypercorn in one process under callgrind, counting
nothing until a measured batch starts; the fake Spotify runs in its own process, uncounted.
For each store, after a login and a warm-up, batches of ``REQUESTS`` requests on eight
connections, ``/constant`` and ``/token`` in turn, twice each: between callgrind's zeroing
and its dump, the server's own instructions (hypercorn, Quart, the extension, the store). The
least of each path's two is kept. What the kernel does for a request (the same for both paths:
the replies have the same length) is not counted.

``python -m benchmarks hotpath-instructions`` (skipped where valgrind is not installed).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shutil
import sys
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx

from quart_spotify_auth.serving import free_port, wait_for_port

from .servers import hypercorn
from .web import _session_cookie

#: Requests in one counted batch.
REQUESTS = 1000
#: The stores measured, as ``SPOTIFY_TOKEN_STORE`` (``{folder}``: a folder of the run's own).
STORES = {"memory": "memory", "sqlite": "sqlite:///{folder}/hotpath.sqlite3"}


def totals(dump: str) -> int:
    """The instructions a callgrind dump counted (its ``totals:`` line)."""
    found = re.search(r"^totals:\s*(\d+)", dump, re.M)
    if found is None:
        raise ValueError("not a callgrind dump: no totals line")
    return int(found.group(1))


async def _requests(url: str, cookie: str, count: int, connections: int = 8) -> None:
    """``count`` GETs of ``url`` with ``cookie``, ``connections`` at a time; each must be a 200."""
    left = count
    limits = httpx.Limits(max_keepalive_connections=connections)
    async with httpx.AsyncClient(limits=limits, timeout=120) as http:

        async def one_connection() -> None:
            nonlocal left
            while left > 0:
                left -= 1
                reply = await http.get(url, headers={"Cookie": cookie})
                if reply.status_code != 200:
                    raise RuntimeError(f"{url} answered {reply.status_code}: {reply.text[:200]}")

        await asyncio.gather(*(one_connection() for _ in range(connections)))


async def _control(*args: str) -> None:
    process = await asyncio.create_subprocess_exec(
        "callgrind_control", *args,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    if await process.wait():
        raise RuntimeError(f"callgrind_control {' '.join(args)} failed")


@contextlib.asynccontextmanager
async def _counted_server(env: dict[str, str], folder: Path) -> AsyncIterator[int]:
    """The hot-path app served under callgrind (counting off); yields the process id."""
    process = await asyncio.create_subprocess_exec(
        "valgrind", "--tool=callgrind", "--instr-atstart=no",
        f"--callgrind-out-file={folder}/dump.%p",
        sys.executable, "-m", "benchmarks.served_instructions", "serve",
        env={**os.environ, **env, "PYTHONHASHSEED": "0"},
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    try:
        waiting = asyncio.ensure_future(process.wait())
        await wait_for_port("127.0.0.1", int(env["BENCH_APP_PORT"]), timeout=300, task=waiting)
        yield process.pid
    finally:
        if process.returncode is None:
            process.terminate()
        await process.wait()


async def _batch(pid: int, folder: Path, url: str, cookie: str, count: int) -> int:
    """The server's instructions for ``count`` requests of ``url``."""
    await _control("--instr=on", str(pid))
    await _control("--zero", str(pid))
    await _requests(url, cookie, count)
    await _control("--instr=off", str(pid))
    before = set(folder.glob("dump.*"))
    await _control("--dump", str(pid))
    (dump,) = set(folder.glob("dump.*")) - before
    return totals(dump.read_text())


async def _store(store_url: str, folder: Path, count: int) -> dict[str, Any]:
    async with hypercorn("benchmarks.apps:fake") as fake_url:
        port = free_port()
        env = {"BENCH_APP_PORT": str(port), "BENCH_FAKE_URL": fake_url,
               "SPOTIFY_TOKEN_STORE": store_url}  # fmt: skip
        async with _counted_server(env, folder) as pid:
            app_url = f"http://127.0.0.1:{port}"
            cookie = await _session_cookie(app_url)
            for path in ("/constant", "/token"):  # warm: imports, caches, the token read
                await _requests(app_url + path, cookie, 300)
            counted: dict[str, list[int]] = {"/constant": [], "/token": []}
            for path in ("/constant", "/token", "/token", "/constant"):
                counted[path].append(await _batch(pid, folder, app_url + path, cookie, count))
    constant, token = (min(counted[p]) / count for p in ("/constant", "/token"))
    return {
        "constant_per_request": round(constant),
        "token_per_request": round(token),
        "token_over_constant": round(token - constant),
        # As the hot path's CPU ratio: above 0.95 when the token costs under 5 % of a request.
        "ratio": round(constant / token, 4),
        "batches": {p: [round(n / count) for n in v] for p, v in counted.items()},
    }


async def run(count: int = REQUESTS, stores: tuple[str, ...] = tuple(STORES)) -> dict[str, Any]:
    if shutil.which("valgrind") is None or shutil.which("callgrind_control") is None:
        return {"skipped": "valgrind is not installed"}
    results: dict[str, Any] = {"requests": count}
    with tempfile.TemporaryDirectory() as folder:
        for name in stores:
            results[name] = await _store(STORES[name].format(folder=folder), Path(folder), count)
    return results


def serve() -> None:
    """The hot-path app under hypercorn in this one process (callgrind counts one process)."""
    from hypercorn.asyncio import serve as serving
    from hypercorn.config import Config

    from .apps import hotpath

    config = Config()
    config.bind = [f"127.0.0.1:{os.environ['BENCH_APP_PORT']}"]
    config.accesslog = None
    asyncio.run(serving(hotpath, config))


if __name__ == "__main__":
    if sys.argv[1:] == ["serve"]:
        serve()
