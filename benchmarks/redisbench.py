"""The shared store: the hot path with Redis, single-flight across worker processes, and
Redis round trips per ``get_access_token``. Starts its own ``redis-server`` on a free port."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
from redis.asyncio import Redis

from quart_spotify_auth.serving import free_port, wait_for_port

from . import web
from .servers import hypercorn
from .web import _session_cookie


class RedisProcess:
    """A ``redis-server`` on a free loopback port. ``persistent`` keeps its data in
    ``folder`` (append-only file, fsync on every write) so that :meth:`restart` loses nothing,
    as a production Redis would be set up."""

    def __init__(self, folder: str, *, persistent: bool = False) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server is not installed (apt-get install redis-server)")
        self.binary, self.folder, self.port = binary, folder, free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.persistent = persistent
        self.process: subprocess.Popen[bytes] | None = None

    async def start(self) -> None:
        self.process = subprocess.Popen(
            [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "yes" if self.persistent else "no", "--appendfsync", "always",
             "--dir", self.folder],
            stdout=subprocess.DEVNULL,
        )  # fmt: skip
        await wait_for_port("127.0.0.1", self.port)

    def stop(self) -> None:
        """A clean shutdown (SIGTERM): what a restart by an operator or a deploy does."""
        if self.process is not None:
            self.process.terminate()
            self.process.wait()
            self.process = None

    async def restart(self) -> float:
        """Stop and start again on the same port and data; returns the seconds it was away."""
        began = time.perf_counter()
        self.stop()
        await self.start()
        return time.perf_counter() - began


@contextlib.asynccontextmanager
async def redis_server() -> AsyncIterator[str]:
    async with redis_process() as server:
        yield server.url


@contextlib.asynccontextmanager
async def redis_process(*, persistent: bool = False) -> AsyncIterator[RedisProcess]:
    with tempfile.TemporaryDirectory() as folder:
        server = RedisProcess(folder, persistent=persistent)
        await server.start()
        try:
            yield server
        finally:
            server.stop()


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
