"""Web measures: the hot path and logins, each against hypercorn-served processes.

- hot path: requests/s of ``/token`` (a handler returning ``get_access_token()``) over
  ``/constant`` (the same handler returning a constant), both loaded from another process in
  alternating rounds of one run; the ratio of the medians. Beside it, and the figure held to
  the target (>= 0.95), the server's CPU time per request, constant over token: the median
  of each round's pair (measured back to back) and their spread, as a shared, noisy machine
  disturbs throughput more.
- login: complete logins/s over bare token requests/s against the same FakeSpotify (the limit).
- logins beside Authlib: complete logins/s, and the server's CPU per login, of the soak's app
  on quart-spotify-auth (memory store, and the default SQLite store; on httpx, our default,
  and on httpx2, the library Authlib 1.9 runs on when installed) beside the same app written
  with Authlib's ``AsyncOAuth2Client`` (``benchmarks.soak_peer``), against one auto-approving
  FakeSpotify, in rotating rounds of one run.
"""

from __future__ import annotations

import contextlib
import statistics
import tempfile
from typing import Any

import httpx

from quart_spotify_auth.serving import free_port

from .servers import children, hypercorn, run_json, served, system_cpu, total_cpu


async def _session_cookie(app_url: str) -> str:
    async with httpx.AsyncClient() as http:
        authorize = (await http.get(app_url + "/login")).headers["location"]
        callback = (await http.get(authorize)).headers["location"]
        reply = await http.get(callback)
        assert reply.status_code == 200, reply.text
        return f"session={http.cookies['session']}"


async def hot_path(
    *,
    seconds: float,
    rounds: int,
    connections: int = 32,
    app: str = "benchmarks.apps:hotpath",
    env: dict[str, str] | None = None,
) -> dict[str, Any]:
    port = free_port()
    async with hypercorn("benchmarks.apps:fake") as fake_url:
        env = {"BENCH_APP_PORT": str(port), "BENCH_FAKE_URL": fake_url, **(env or {})}
        async with served(app, env=env, port=port) as (app_url, server_pid):
            workers = children(server_pid) or [server_pid]
            cookie = await _session_cookie(app_url)
            runs: dict[str, list[dict[str, Any]]] = {"constant": [], "token": []}
            for i in range(rounds):
                order = ("constant", "token") if i % 2 == 0 else ("token", "constant")
                for path in order:
                    cpu = total_cpu(workers)
                    result = await run_json(
                        "benchmarks.load", f"{app_url}/{path}", "--seconds", str(seconds),
                        "--connections", str(connections), "--header", f"Cookie:{cookie}",
                    )  # fmt: skip
                    used = total_cpu(workers) - cpu
                    assert set(result["statuses"]) == {"200"}, result
                    result["cpu_us_per_request"] = used / result["requests"] * 1e6
                    runs[path].append(result)
    constant = statistics.median(r["rps"] for r in runs["constant"])
    token = statistics.median(r["rps"] for r in runs["token"])
    constant_cpu = statistics.median(r["cpu_us_per_request"] for r in runs["constant"])
    token_cpu = statistics.median(r["cpu_us_per_request"] for r in runs["token"])
    # Each round's pair, measured back to back: the spread says how far one pair can be off.
    pairs = sorted(
        c["cpu_us_per_request"] / t["cpu_us_per_request"]
        for c, t in zip(runs["constant"], runs["token"], strict=True)
    )
    return {
        "constant_rps": constant,
        "token_rps": token,
        "ratio": token / constant,
        "constant_cpu_us": round(constant_cpu, 1),
        "token_cpu_us": round(token_cpu, 1),
        "cpu_ratio": round(statistics.median(pairs), 3),
        "cpu_ratio_spread": [round(pairs[0], 3), round(pairs[-1], 3)],
        "constant_p99_ms": statistics.median(r["p99_ms"] for r in runs["constant"]),
        "token_p99_ms": statistics.median(r["p99_ms"] for r in runs["token"]),
        "rounds": rounds,
        "seconds": seconds,
        "token_requests_served": sum(r["requests"] for r in runs["token"]),
    }


async def logins(*, seconds: float, rounds: int, concurrency: int = 16) -> dict[str, Any]:
    port = free_port()
    async with hypercorn("benchmarks.apps:fake") as fake_url:
        env = {"BENCH_APP_PORT": str(port), "BENCH_FAKE_URL": fake_url}
        async with hypercorn("benchmarks.apps:hotpath", env=env, port=port) as app_url:
            runs: dict[str, list[float]] = {"login": [], "token": []}
            for i in range(rounds):
                order = ("login", "token") if i % 2 == 0 else ("token", "login")
                for mode in order:
                    result = await run_json(
                        "benchmarks.logins", mode, app_url, fake_url, "--seconds", str(seconds),
                        "--concurrency", str(concurrency),
                    )  # fmt: skip
                    assert result["failed"] == 0, result
                    runs[mode].append(result["per_second"])
    login = statistics.median(runs["login"])
    token = statistics.median(runs["token"])
    return {"logins_per_s": login, "token_requests_per_s": token, "ratio": login / token}


async def logins_beside_authlib(
    *, seconds: float, rounds: int, concurrency: int = 16
) -> dict[str, Any]:
    contenders = {
        "ours": ("benchmarks.soak_ours:ours", {"BENCH_STORE": "memory"}),
        "ours_sqlite": ("benchmarks.soak_ours:ours", {"BENCH_STORE": "default"}),
        # On httpx2, the HTTP library Authlib's client runs on when it is installed.
        "ours_httpx2": (
            "benchmarks.soak_ours:ours",
            {"BENCH_STORE": "memory", "BENCH_HTTP_LIBRARY": "httpx2"},
        ),
        "ours_sqlite_httpx2": (
            "benchmarks.soak_ours:ours",
            {"BENCH_STORE": "default", "BENCH_HTTP_LIBRARY": "httpx2"},
        ),
        "authlib": ("benchmarks.soak_peer:peer", {}),
        # Authlib where httpx2 is not installed: on httpx, as ours runs by default.
        "authlib_httpx": ("benchmarks.soak_peer:peer", {"BENCH_HTTP_LIBRARY": "httpx"}),
    }
    rates: dict[str, list[float]] = {name: [] for name in contenders}
    cpu: dict[str, list[float]] = {name: [] for name in contenders}
    kernel: dict[str, list[float]] = {name: [] for name in contenders}
    libraries: dict[str, str] = {}
    with tempfile.TemporaryDirectory() as instance:
        async with (
            hypercorn("benchmarks.apps:soak_login_fake") as fake_url,
            contextlib.AsyncExitStack() as stack,
        ):
            apps: dict[str, tuple[str, list[int]]] = {}
            for name, (target, extra) in contenders.items():
                port = free_port()
                env = {
                    "BENCH_APP_PORT": str(port),
                    "BENCH_FAKE_URL": fake_url,
                    "BENCH_INSTANCE": f"{instance}/{name}",
                    **extra,
                }
                url, pid = await stack.enter_async_context(served(target, env=env, port=port))
                apps[name] = (url, children(pid) or [pid])
            async with httpx.AsyncClient() as http:  # what each Authlib app runs on
                for name in ("authlib", "authlib_httpx"):
                    libraries[name] = (await http.get(apps[name][0] + "/library")).json()["library"]
            names = list(contenders)
            for i in range(rounds):
                for name in names[i % len(names) :] + names[: i % len(names)]:
                    url, workers = apps[name]
                    before, in_kernel = total_cpu(workers), system_cpu(workers)
                    result = await run_json(
                        "benchmarks.logins", "login", url, fake_url,
                        "--seconds", str(seconds), "--concurrency", str(concurrency),
                    )  # fmt: skip
                    used = total_cpu(workers) - before
                    assert result["failed"] == 0, (name, result)
                    rates[name].append(result["per_second"])
                    cpu[name].append(used / result["ok"] * 1e6)
                    kernel[name].append((system_cpu(workers) - in_kernel) / result["ok"] * 1e6)
    rate = {name: statistics.median(values) for name, values in rates.items()}
    cost = {name: statistics.median(values) for name, values in cpu.items()}
    return {
        **{f"{name}_logins_per_s": round(value, 1) for name, value in rate.items()},
        **{f"{name}_cpu_us_per_login": round(value) for name, value in cost.items()},
        # Of which the kernel's (system calls: the default store's durable writes are some).
        **{
            f"{name}_system_cpu_us_per_login": round(statistics.median(values))
            for name, values in kernel.items()
        },
        "ours_over_authlib": round(rate["ours"] / rate["authlib"], 3),
        "ours_sqlite_over_authlib": round(rate["ours_sqlite"] / rate["authlib"], 3),
        # CPU per login, Authlib's over ours: above 1 when a login costs us less.
        "cpu_authlib_over_ours": round(cost["authlib"] / cost["ours"], 3),
        "cpu_authlib_over_ours_sqlite": round(cost["authlib"] / cost["ours_sqlite"], 3),
        # The same, each contender on the HTTP library Authlib runs on (httpx2).
        "cpu_authlib_over_ours_httpx2": round(cost["authlib"] / cost["ours_httpx2"], 3),
        "cpu_authlib_over_ours_sqlite_httpx2": round(
            cost["authlib"] / cost["ours_sqlite_httpx2"], 3
        ),
        "authlib_library": libraries["authlib"],
        "authlib_httpx_library": libraries["authlib_httpx"],
        # Both on httpx: Authlib where httpx2 is not installed, ours by default.
        "cpu_authlib_httpx_over_ours": round(cost["authlib_httpx"] / cost["ours"], 3),
        "cpu_authlib_httpx_over_ours_sqlite": round(cost["authlib_httpx"] / cost["ours_sqlite"], 3),
        # The same ratios round by round (each round ran every contender): least and most.
        "spread": {
            f"{peer}/{ours}": _spread(cpu[peer], cpu[ours])
            for peer, ours in (
                ("authlib", "ours_httpx2"),
                ("authlib", "ours_sqlite_httpx2"),
                ("authlib_httpx", "ours"),
                ("authlib_httpx", "ours_sqlite"),
            )
        },
        "rounds": rounds,
        "seconds": seconds,
    }


def _spread(peer: list[float], ours: list[float]) -> list[float]:
    """The least and the most of the per-round ratios ``peer / ours``."""
    ratios = [p / o for p, o in zip(peer, ours, strict=True)]
    return [round(min(ratios), 3), round(max(ratios), 3)]
