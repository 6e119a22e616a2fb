"""Where a request's CPU goes, in one process (no server, no network): what the hot path and
the SQLite store cost in themselves, so the served measures' ratios can be read.

- app: CPU per request of the hot-path app called straight through ASGI, ``/constant`` and
  ``/token`` (``get_access_token()``) with a logged-in session cookie, on the memory store and
  on the default SQLite store; the least of three rounds of 3,000 requests each.
- store: CPU per call of the SQLite store's own operations (a read past the cache, a login's
  write, a claim), the thread they run on included.

``python -m benchmarks profile``.
"""

from __future__ import annotations

import asyncio
import functools
import tempfile
import time
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
from quart import Quart

from quart_spotify_auth import TokenRecord
from quart_spotify_auth.testing import log_in, make_fake
from tests.apps import make_app


async def _call(app: Quart, path: str, cookie: str) -> int:
    """One GET of ``path`` through ``app``'s ASGI interface; its status."""
    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET",
        "scheme": "http", "path": path, "raw_path": path.encode(), "query_string": b"",
        "root_path": "", "headers": [(b"host", b"127.0.0.1"), (b"cookie", cookie.encode())],
        "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 80), "extensions": {},
    }  # fmt: skip
    sent: list[dict[str, Any]] = []
    asked = False

    async def receive() -> dict[str, Any]:
        nonlocal asked
        if not asked:
            asked = True
            return {"type": "http.request", "body": b"", "more_body": False}
        await asyncio.Event().wait()  # no disconnect while the app answers
        raise AssertionError("unreachable")

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await app(scope, receive, send)  # type: ignore[arg-type]
    return int(sent[0]["status"])


def _least_of(rounds: int, count: int, call: Callable[[], Awaitable[Any]]) -> Awaitable[float]:
    async def measure() -> float:
        least = float("inf")
        for _ in range(rounds):
            began = time.process_time()
            for _ in range(count):
                await call()
            least = min(least, (time.process_time() - began) / count * 1e6)
        return round(least, 1)

    return measure()


async def _app_costs(store_url: str) -> dict[str, float]:
    fake = make_fake()
    app, spotify = make_app(transport=httpx.ASGITransport(app=fake), store_url=store_url)

    @app.route("/constant")
    async def constant() -> str:
        return "x" * 43

    @app.route("/bare-token")
    async def bare_token() -> str:
        return (await spotify.get_access_token()).access_token

    async with app.test_app():
        client = app.test_client()
        await log_in(client, fake, "alice")
        jar = client.cookie_jar
        assert jar is not None
        cookie = f"session={next(c.value for c in jar if c.name == 'session')}"
        assert await _call(app, "/bare-token", cookie) == 200
        costs: dict[str, float] = {}
        for path in ("/constant", "/bare-token", "/constant", "/bare-token"):
            for _ in range(300):  # warm
                await _call(app, path, cookie)
            cost = await _least_of(3, 3000, functools.partial(_call, app, path, cookie))
            costs[path] = min(cost, costs.get(path, cost))
    return {
        "constant_us": costs["/constant"],
        "token_us": costs["/bare-token"],
        "token_over_constant_us": round(costs["/bare-token"] - costs["/constant"], 1),
    }


async def _store_costs(folder: str) -> dict[str, float]:
    app, spotify = make_app(store_url=f"sqlite:///{folder}/store.sqlite3")
    store = spotify.core(app).store
    now = time.time()
    record = TokenRecord("a" * 200, "r" * 200, now + 3600, now, frozenset({"streaming"}), now)
    await store.open()
    await store.put("browser:x", record, due=now + 3000, used=now)
    counter = iter(range(10**9))
    try:
        return {
            "read_us": await _least_of(3, 1000, lambda: store.get("browser:x")),
            "login_write_us": await _least_of(
                3, 1000, lambda: store.put(f"browser:{next(counter)}", record, due=now, used=now)
            ),
            "claim_us": await _least_of(
                3, 1000, lambda: store.claim(f"state:{next(counter)}", 600, "bench")
            ),
        }
    finally:
        await store.close()


async def run() -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as folder:
        return {
            "app_memory": await _app_costs("memory"),
            "app_sqlite": await _app_costs(f"sqlite:///{folder}/app.sqlite3"),
            "sqlite_store": await _store_costs(folder),
        }
