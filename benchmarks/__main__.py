"""Run the benchmarks: ``python -m benchmarks [NAME ...] [--quick]`` (``nox -s bench``).

Speed is reported as ratios measured side by side in one run, never as a pass/fail time.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import time
from collections.abc import Awaitable, Callable
from typing import Any

from . import redisbench, rollover, scale, singleflight, web

Measure = Callable[[bool], Awaitable[dict[str, Any]]]

MEASURES: dict[str, Measure] = {
    "hotpath": lambda quick: web.hot_path(seconds=2 if quick else 4, rounds=3 if quick else 5),
    "login": lambda quick: web.logins(seconds=2 if quick else 4, rounds=3 if quick else 5),
    "singleflight": lambda quick: singleflight.run(callers=200 if quick else 1000),
    "scale": lambda quick: scale.run(
        tokens=10_000 if quick else 100_000, window=10 if quick else 60
    ),
    "rollover": lambda quick: rollover.run(seconds=5 if quick else 10),
    "redis-hotpath": lambda quick: redisbench.hot_path(
        seconds=2 if quick else 4, rounds=3 if quick else 5
    ),
    "redis-singleflight": lambda quick: redisbench.single_flight(callers=200 if quick else 1000),
    "flask-hotpath": lambda quick: web.hot_path(
        seconds=2 if quick else 4, rounds=3 if quick else 5, app="benchmarks.apps:flask_hotpath"
    ),
}


async def main(names: list[str], quick: bool) -> dict[str, Any]:
    results: dict[str, Any] = {}
    for name in names:
        start = time.perf_counter()
        results[name] = await MEASURES[name](quick)
        results[name]["took_s"] = round(time.perf_counter() - start, 1)
        print(f"{name}: {json.dumps(results[name], default=_round)}", flush=True)
    return results


def _round(value: object) -> object:
    return round(value, 3) if isinstance(value, float) else str(value)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="python -m benchmarks")
    parser.add_argument("names", nargs="*", choices=[*MEASURES, []], default=[])
    parser.add_argument("--quick", action="store_true", help="shorter runs")
    args = parser.parse_args()
    print(f"python {platform.python_version()} on {platform.machine()}, {time.ctime()}")
    asyncio.run(main(args.names or list(MEASURES), args.quick))
