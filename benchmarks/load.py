"""A small HTTP/1.1 load generator, run in its own process so it does not share the server's
event loop: ``python -m benchmarks.load URL --seconds 3 --connections 32 --header K:V``.

It keeps ``connections`` keep-alive connections busy with GET requests for a fixed time and
prints one JSON line: requests completed, per-status counts, dropped connections and latency
percentiles. With ``--users N`` the requests cycle through ``X-User: u0 .. u{N-1}``.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import statistics
import time
from collections import Counter
from collections.abc import Iterator
from urllib.parse import urlsplit


class Tally:
    def __init__(self) -> None:
        self.latencies: list[float] = []
        self.statuses: Counter[str] = Counter()
        self.reconnects = 0


async def _worker(
    host: str, port: int, requests: Iterator[bytes], deadline: float, tally: Tally
) -> None:
    reader, writer = await asyncio.open_connection(host, port)
    try:
        while time.perf_counter() < deadline:
            start = time.perf_counter()
            writer.write(next(requests))
            status_line = await reader.readline()
            if not status_line:
                # hypercorn closes a keep-alive connection after 1,000 requests: reconnect
                tally.reconnects += 1
                writer.close()
                reader, writer = await asyncio.open_connection(host, port)
                continue
            length = 0
            while True:
                line = await reader.readline()
                if line in (b"\r\n", b""):
                    break
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            if length:
                await reader.readexactly(length)
            tally.latencies.append(time.perf_counter() - start)
            tally.statuses[status_line.split()[1].decode()] += 1
    finally:
        writer.close()


async def run(
    url: str, seconds: float, connections: int, headers: dict[str, str], users: int = 0
) -> dict[str, object]:
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    path = parts.path + (f"?{parts.query}" if parts.query else "")
    head = f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\n"
    head += "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    variants = (
        [(head + f"X-User: u{u}\r\n\r\n").encode() for u in range(users)]
        if users
        else [(head + "\r\n").encode()]
    )
    tally = Tally()
    deadline = time.perf_counter() + seconds

    def cycle(offset: int) -> Iterator[bytes]:
        rotated = variants[offset % len(variants) :] + variants[: offset % len(variants)]
        return itertools.cycle(rotated)

    await asyncio.gather(
        *(_worker(host, port, cycle(i * 7), deadline, tally) for i in range(connections))
    )
    latencies = tally.latencies
    return {
        "requests": len(latencies),
        "rps": len(latencies) / seconds,
        "statuses": dict(tally.statuses),
        "reconnects": tally.reconnects,
        "p50_ms": percentile(latencies, 0.50) * 1000,
        "p99_ms": percentile(latencies, 0.99) * 1000,
        "mean_ms": statistics.fmean(latencies) * 1000,
    }


def percentile(values: list[float], p: float) -> float:
    """The ``p`` quantile (0..1) of ``values`` (nearest rank), 0 when there are none."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p * len(ordered)))] if ordered else 0.0


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("url")
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--header", action="append", default=[])
    parser.add_argument("--users", type=int, default=0, help="cycle X-User: u0..u{USERS-1}")
    args = parser.parse_args()
    headers = dict(h.split(":", 1) for h in args.header)
    result = asyncio.run(run(args.url, args.seconds, args.connections, headers, args.users))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
