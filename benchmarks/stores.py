"""The stores side by side, in one run: the hot path with each store (and the Flask shim),
single-flight across worker processes on each shared store, and Redis commands per
``get_access_token``. Redis and PostgreSQL are servers of the benchmark's own, on free ports;
SQLite is a file in a temporary folder."""

from __future__ import annotations

import asyncio
import contextlib
import tempfile
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
from redis.asyncio import Redis

from quart_spotify_auth.serving import free_port
from tests.servers import PostgreSQLServer, RedisServer

from . import web
from .servers import hypercorn
from .web import _session_cookie

#: What the hot path is measured with: (name, the app, its store).
HOT_PATHS = [
    ("memory", "benchmarks.apps:hotpath", "memory"),
    ("sqlite (default)", "benchmarks.apps:hotpath", "sqlite"),
    ("redis", "benchmarks.apps:hotpath", "redis"),
    ("postgresql", "benchmarks.apps:hotpath", "postgresql"),
    ("flask shim, memory", "benchmarks.apps:flask_hotpath", "memory"),
    ("flask shim, sqlite", "benchmarks.apps:flask_hotpath", "sqlite"),
]


@contextlib.asynccontextmanager
async def redis_process(*, persistent: bool = False) -> AsyncIterator[RedisServer]:
    """A ``redis-server`` of the benchmark's own (tests.servers), removed after."""
    server = RedisServer(persistent=persistent)
    server.start()
    try:
        yield server
    finally:
        server.remove()


@contextlib.asynccontextmanager
async def store(kind: str) -> AsyncIterator[str]:
    """The ``SPOTIFY_TOKEN_STORE`` of a fresh store of ``kind``."""
    if kind == "memory":
        yield "memory"
    elif kind == "sqlite":
        with tempfile.TemporaryDirectory() as folder:
            yield f"sqlite:///{folder}/quart_spotify_auth.sqlite3"
    elif kind == "redis":
        async with redis_process() as server:
            yield server.url
    else:
        pg = PostgreSQLServer()
        pg.start()
        try:
            yield pg.url
        finally:
            pg.remove()  # stops it first


async def hot_path(*, seconds: float, rounds: int) -> dict[str, Any]:
    """``/token`` over ``/constant`` for each store, one after the other in one run; with
    Redis, also the Redis commands the token handler cost per request."""
    results: dict[str, Any] = {}
    for name, app, kind in HOT_PATHS:
        async with store(kind) as url:
            env = {"SPOTIFY_TOKEN_STORE": url}
            redis = Redis.from_url(url) if kind == "redis" else None
            before = await _commands(redis) if redis else {}
            result = await web.hot_path(seconds=seconds, rounds=rounds, app=app, env=env)
            if redis is not None:
                after = await _commands(redis)
                await redis.aclose()
                served = sum(after.values()) - sum(before.values()) - _renewer(after, before)
                result["redis_commands_per_get_access_token"] = round(
                    served / result["token_requests_served"], 4
                )
        results[name] = result
        low, high = result["cpu_ratio_spread"]
        print(f"  hot path, {name}: CPU {result['cpu_ratio']:.3f} ({low}-{high})", flush=True)
    return results


async def _commands(redis: Redis) -> dict[str, int]:
    info = await redis.info("commandstats")
    return {k.removeprefix("cmdstat_"): int(v["calls"]) for k, v in info.items()}


def _renewer(after: dict[str, int], before: dict[str, int]) -> int:
    """Commands of the renewers' schedule reads (a script each), connection handshakes, and of
    our own INFO calls."""
    names = ("eval", "zrangebyscore", "zremrangebyscore", "zrange", "zscore", "info", "hello")
    return sum(after.get(n, 0) - before.get(n, 0) for n in (*names, "client"))


async def single_flight(*, callers: int = 1000, workers: int = 4) -> dict[str, Any]:
    """For each shared store: ``callers`` concurrent requests spread over ``workers`` processes
    find one expired token; the token requests they made."""
    results: dict[str, Any] = {"callers": callers, "workers": workers}
    for kind in ("sqlite", "redis", "postgresql"):
        async with store(kind) as url:
            results[kind] = await _single_flight(url, callers, workers)
    return results


async def _single_flight(url: str, callers: int, workers: int) -> dict[str, Any]:
    async with hypercorn("benchmarks.apps:fake") as fake_url:
        port = free_port()
        env = {"BENCH_APP_PORT": str(port), "BENCH_FAKE_URL": fake_url,
               "SPOTIFY_TOKEN_STORE": url, "BENCH_AUTO_RENEW": "0"}  # fmt: skip
        async with (
            hypercorn("benchmarks.apps:hotpath", env=env, port=port, workers=workers) as app_url,
            httpx.AsyncClient(limits=httpx.Limits(max_connections=64), timeout=60) as http,
        ):
            await http.post(fake_url + "/_fake/control", json={"access_ttl": 1})
            cookie = await _session_cookie(app_url)
            await asyncio.sleep(1.0)  # the token's lifetime: expired now
            await http.post(
                fake_url + "/_fake/control", json={"access_ttl": 3600, "reset_counters": True}
            )
            start = time.perf_counter()
            replies = await asyncio.gather(
                *(http.get(app_url + "/token", headers={"Cookie": cookie}) for _ in range(callers))
            )
            took = time.perf_counter() - start
            state = (await http.get(fake_url + "/_fake/state")).json()
    return {
        "statuses": sorted({r.status_code for r in replies}),
        "distinct_tokens": len({r.text for r in replies}),
        "token_requests": state["requests"].get("token:refresh_token", 0),
        "seconds": round(took, 2),
    }
