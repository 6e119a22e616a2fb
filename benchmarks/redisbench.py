"""The shared store: the hot path with Redis, single-flight across worker processes, and
Redis round trips per ``get_access_token``. Starts its own ``redis-server`` on a free port."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
from redis.asyncio import Redis

from quart_spotify_auth.serving import free_port
from tests.servers import RedisServer

from . import web
from .servers import hypercorn
from .web import _session_cookie


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
async def redis_server() -> AsyncIterator[str]:
    async with redis_process() as server:
        yield server.url


async def hot_path(*, seconds: float, rounds: int) -> dict[str, Any]:
    """``/token`` over ``/constant`` with the Redis store (the web measure, same code), and
    the Redis commands the token handler cost per request."""
    async with redis_server() as redis_url:
        redis = Redis.from_url(redis_url)
        before = await _commands(redis)
        result = await web.hot_path(
            seconds=seconds, rounds=rounds, env={"SPOTIFY_TOKEN_STORE": redis_url}
        )
        after = await _commands(redis)
        await redis.aclose()
    served = sum(after.values()) - sum(before.values()) - _renewer(after, before)
    result["redis_commands_per_get_access_token"] = round(
        served / result["token_requests_served"], 4
    )
    return result


async def _commands(redis: Redis) -> dict[str, int]:
    info = await redis.info("commandstats")
    return {k.removeprefix("cmdstat_"): int(v["calls"]) for k, v in info.items()}


def _renewer(after: dict[str, int], before: dict[str, int]) -> int:
    """Commands of the renewers' schedule polling and of our own INFO calls."""
    names = ("zrangebyscore", "zremrangebyscore", "zrange", "info")
    return sum(after.get(n, 0) - before.get(n, 0) for n in names)


async def single_flight(*, callers: int = 1000, workers: int = 4) -> dict[str, Any]:
    """``callers`` concurrent requests spread over ``workers`` processes find one expired token."""
    async with redis_server() as redis_url, hypercorn("benchmarks.apps:fake") as fake_url:
        port = free_port()
        env = {"BENCH_APP_PORT": str(port), "BENCH_FAKE_URL": fake_url,
               "SPOTIFY_TOKEN_STORE": redis_url, "BENCH_AUTO_RENEW": "0"}  # fmt: skip
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
    statuses = {r.status_code for r in replies}
    return {
        "callers": callers,
        "workers": workers,
        "statuses": sorted(statuses),
        "distinct_tokens": len({r.text for r in replies}),
        "token_requests": state["requests"].get("token:refresh_token", 0),
        "seconds": round(took, 2),
    }
