"""Instructions per request of served apps, counted by valgrind's callgrind, repeatable
whatever else the machine is doing (the CPU ratios move by several points a run): what
``/token`` (``get_access_token()``) costs over ``/constant`` (:func:`run`), and what a login
costs each contender of the login measure (:func:`logins`).

``benchmarks.apps:hotpath`` (and the same hot path on Flask through the shim,
``benchmarks.apps:flask_hotpath``, served as a WSGI app in hypercorn's threads) is served by
hypercorn in one process under callgrind, counting nothing until a measured batch starts; the
fake Spotify runs in its own process, uncounted. For each app and store, after a login and a
warm-up, batches of ``REQUESTS`` requests on eight connections, ``/constant`` and ``/token``
in turn, twice each: between callgrind's zeroing and its dump, the server's own instructions
(hypercorn, the framework, the extension, the store). The least of each path's two is kept.
What the kernel does for a request (the same for both paths: the replies have the same
length) is not counted.

A login is counted the same way, each contender's app in turn under callgrind: batches of
complete logins by four browsers at a time, the app's own work for each (not the fake's).

``python -m benchmarks hotpath-instructions`` and ``served-login-instructions`` (skipped where
valgrind is not installed).
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import os
import re
import shutil
import sys
import tempfile
from collections.abc import AsyncIterator, Awaitable
from pathlib import Path
from typing import Any

import httpx

from quart_spotify_auth.serving import free_port, wait_for_port

from .servers import hypercorn
from .stores import HOT_PATHS, store
from .web import _session_cookie

#: Requests in one counted batch.
REQUESTS = 1000
#: The hot paths counted: the timed measure's (name -> its app, its store's kind) on the stores
#: that need no server of their own.
APPS = {name: (app, kind) for name, app, kind in HOT_PATHS if kind in ("memory", "sqlite")}


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


async def _batch(pid: int, folder: Path, load: Awaitable[None]) -> int:
    """The server's instructions while ``load`` runs."""
    await _control("--instr=on", str(pid))
    await _control("--zero", str(pid))
    await load
    await _control("--instr=off", str(pid))
    before = set(folder.glob("dump.*"))
    await _control("--dump", str(pid))
    (dump,) = set(folder.glob("dump.*")) - before
    return totals(dump.read_text())


async def _hot_path(target: str, store_url: str, folder: Path, count: int) -> dict[str, Any]:
    async with hypercorn("benchmarks.apps:fake") as fake_url:
        port = free_port()
        env = {"BENCH_APP_PORT": str(port), "BENCH_FAKE_URL": fake_url,
               "BENCH_TARGET": target, "SPOTIFY_TOKEN_STORE": store_url}  # fmt: skip
        async with _counted_server(env, folder) as pid:
            app_url = f"http://127.0.0.1:{port}"
            cookie = await _session_cookie(app_url)
            for path in ("/constant", "/token"):  # warm: imports, caches, the token read
                await _requests(app_url + path, cookie, 300)
            counted: dict[str, list[int]] = {"/constant": [], "/token": []}
            for path in ("/constant", "/token", "/token", "/constant"):
                load = _requests(app_url + path, cookie, count)
                counted[path].append(await _batch(pid, folder, load))
    constant, token = (min(counted[p]) / count for p in ("/constant", "/token"))
    return {
        "constant_per_request": round(constant),
        "token_per_request": round(token),
        "token_over_constant": round(token - constant),
        # As the hot path's CPU ratio: above 0.95 when the token costs under 5 % of a request.
        "ratio": round(constant / token, 4),
        "batches": {p: [round(n / count) for n in v] for p, v in counted.items()},
    }


#: The login benchmark's contenders (``benchmarks.web.logins_beside_authlib``'s), counted.
LOGIN_CONTENDERS = {
    "ours": ("benchmarks.soak_ours:ours", {"BENCH_STORE": "memory"}),
    "ours_sqlite": ("benchmarks.soak_ours:ours", {"BENCH_STORE": "default"}),
    "authlib_httpx": ("benchmarks.soak_peer:peer", {"BENCH_HTTP_LIBRARY": "httpx"}),
    "ours_httpx2": ("benchmarks.soak_ours:ours", {"BENCH_STORE": "memory",
                                                   "BENCH_HTTP_LIBRARY": "httpx2"}),
    "ours_sqlite_httpx2": ("benchmarks.soak_ours:ours", {"BENCH_STORE": "default",
                                                          "BENCH_HTTP_LIBRARY": "httpx2"}),
    "authlib": ("benchmarks.soak_peer:peer", {}),
}  # fmt: skip


async def _logins(app_url: str, count: int, browsers: int = 4) -> None:
    """``count`` complete logins (the app's /login, the fake's consent, the callback), a new
    browser each, ``browsers`` at a time; each must land."""
    left = count

    async def one_browser() -> None:
        nonlocal left
        async with httpx.AsyncClient(timeout=120) as http:
            while left > 0:
                left -= 1
                http.cookies.clear()
                authorize = (await http.get(app_url + "/login")).headers["location"]
                callback = (await http.get(authorize)).headers["location"]
                reply = await http.get(callback)
                if reply.status_code != 200:
                    raise RuntimeError(f"a login failed ({reply.status_code}): {reply.text[:200]}")

    await asyncio.gather(*(one_browser() for _ in range(browsers)))


async def logins(
    count: int = 300, names: tuple[str, ...] = tuple(LOGIN_CONTENDERS)
) -> dict[str, Any]:
    """Each login contender's own instructions per login, served (the least of two batches of
    ``count``), and Authlib's over ours on the same HTTP library, as the CPU measure reads."""
    if shutil.which("valgrind") is None or shutil.which("callgrind_control") is None:
        return {"skipped": "valgrind is not installed"}
    per_login: dict[str, list[int]] = {}
    with tempfile.TemporaryDirectory() as folder:
        async with hypercorn("benchmarks.apps:soak_login_fake") as fake_url:
            for name in names:
                target, extra = LOGIN_CONTENDERS[name]
                port = free_port()
                env = {"BENCH_APP_PORT": str(port), "BENCH_FAKE_URL": fake_url,
                       "BENCH_INSTANCE": f"{folder}/{name}", "BENCH_TARGET": target,
                       **extra}  # fmt: skip
                async with _counted_server(env, Path(folder)) as pid:
                    app_url = f"http://127.0.0.1:{port}"
                    await _logins(app_url, 100)  # warm
                    batches = [
                        await _batch(pid, Path(folder), _logins(app_url, count)) for _ in range(2)
                    ]
                per_login[name] = [round(n / count) for n in batches]
    least = {name: min(v) for name, v in per_login.items()}
    results: dict[str, Any] = {"logins": count, "per_login": per_login}
    for peer, ours in (("authlib_httpx", "ours"), ("authlib_httpx", "ours_sqlite"),
                       ("authlib", "ours_httpx2"), ("authlib", "ours_sqlite_httpx2")):  # fmt: skip
        if peer in least and ours in least:
            results[f"{peer}_over_{ours}"] = round(least[peer] / least[ours], 3)
    return results


async def run(count: int = REQUESTS, apps: tuple[str, ...] = tuple(APPS)) -> dict[str, Any]:
    if shutil.which("valgrind") is None or shutil.which("callgrind_control") is None:
        return {"skipped": "valgrind is not installed"}
    results: dict[str, Any] = {"requests": count}
    with tempfile.TemporaryDirectory() as folder:
        for name in apps:
            target, kind = APPS[name]
            async with store(kind) as store_url:
                results[name] = await _hot_path(target, store_url, Path(folder), count)
    return results


def serve() -> None:
    """``BENCH_TARGET`` (the hot-path app by default) under hypercorn in this one process:
    callgrind counts one process."""
    from hypercorn.asyncio import serve as serving
    from hypercorn.config import Config

    module, _, name = os.environ.get("BENCH_TARGET", "benchmarks.apps:hotpath").partition(":")
    app = getattr(importlib.import_module(module), name)
    config = Config()
    config.bind = [f"127.0.0.1:{os.environ['BENCH_APP_PORT']}"]
    config.accesslog = None
    asyncio.run(serving(app, config))


if __name__ == "__main__":
    if sys.argv[1:] == ["serve"]:
        serve()
