"""Run the benchmarks: ``python -m benchmarks [NAME ...] [--quick] [--soak-seconds N]``
(``nox -s bench``).

Speed is reported as ratios measured side by side in one run, never as a pass/fail time. The
soak writes its figures and plot into ``docs/benchmarks.md`` (not with ``--quick``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import time
from collections.abc import Awaitable, Callable
from typing import Any

from . import (
    flood,
    instructions,
    migrate,
    profile,
    rollover,
    scale,
    scale_pg,
    served_instructions,
    singleflight,
    soak,
    stores,
    web,
)

Measure = Callable[[argparse.Namespace], Awaitable[dict[str, Any]]]


def _soak(args: argparse.Namespace) -> Awaitable[dict[str, Any]]:
    if args.quick:
        options = soak.Options(seconds=20, browsers=200, rate=20, lifetime=8, docs=False)
    else:
        options = soak.Options(seconds=args.soak_seconds, browsers=args.browsers)
    return soak.run(options)


MEASURES: dict[str, Measure] = {
    "hotpath": lambda a: stores.hot_path(seconds=2 if a.quick else 3, rounds=3 if a.quick else 8),
    "profile": lambda a: profile.run(),
    "login-instructions": lambda a: instructions.run(),
    "hotpath-instructions": lambda a: served_instructions.run(300 if a.quick else 1000),
    "served-login-instructions": lambda a: served_instructions.logins(100 if a.quick else 300),
    "login": lambda a: web.logins(seconds=2 if a.quick else 4, rounds=3 if a.quick else 5),
    "login-authlib": lambda a: web.logins_beside_authlib(
        seconds=2 if a.quick else 4, rounds=3 if a.quick else 5
    ),
    "singleflight": lambda a: singleflight.run(callers=200 if a.quick else 1000),
    "scale": lambda a: scale.run(
        tokens=10_000 if a.quick else 100_000, window=10 if a.quick else 60
    ),
    "scale-sqlite": lambda a: scale.run_sqlite(
        tokens=10_000 if a.quick else 100_000, observe=30 if a.quick else 120
    ),
    "scale-postgresql": lambda a: scale_pg.run_postgresql(
        tokens=100_000 if a.quick else 1_000_000, observe=30 if a.quick else 120
    ),
    "rollover": lambda a: rollover.run(seconds=5 if a.quick else 10, runs=1 if a.quick else 3),
    "flood": lambda a: flood.run(rounds=2 if a.quick else 5, delay=2.0 if a.quick else 3.0),
    "workers-singleflight": lambda a: stores.single_flight(callers=200 if a.quick else 1000),
    "migrate": lambda a: migrate.run(logins=2_000 if a.quick else 10_000),
    "soak": _soak,
}


async def main(names: list[str], args: argparse.Namespace) -> dict[str, Any]:
    results: dict[str, Any] = {}
    for name in names:
        start = time.perf_counter()
        results[name] = await MEASURES[name](args)
        results[name]["took_s"] = round(time.perf_counter() - start, 1)
        print(f"{name}: {json.dumps(results[name], default=_round)}", flush=True)
    return results


def _round(value: object) -> object:
    return round(value, 3) if isinstance(value, float) else str(value)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="python -m benchmarks")
    parser.add_argument("names", nargs="*", choices=[*MEASURES, []], default=[])
    parser.add_argument("--quick", action="store_true", help="shorter runs")
    parser.add_argument(
        "--soak-seconds", type=float, default=60.0, help="load per soak contender (default 60)"
    )
    parser.add_argument("--browsers", type=int, default=1000, help="soak browsers (1000)")
    args = parser.parse_args()
    print(f"python {platform.python_version()} on {platform.machine()}, {time.ctime()}")
    asyncio.run(main(args.names or list(MEASURES), args))
