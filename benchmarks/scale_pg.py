"""A million tokens on PostgreSQL: the largest app Spotify allows (extended quota starts at
250,000 monthly users), renewed by two app processes sharing one database.

``tokens`` logins are written into a PostgreSQL cluster of the benchmark's own (``COPY``,
encoded by the store as a login would be), each with Spotify's one-hour access token, their
expiries spread evenly over the next hour, so the renewal schedule is as busy as it can be
with every user renewed once an hour: ``tokens / 3600`` refreshes a second, all the time.
Two processes then run an app's renewer each (the default settings: 300 s margin, up to 16
refreshes at once) for ``observe`` seconds of that hour, against an in-process token endpoint
(a ``MockTransport``), so the measure is the renewers and the database, not a server.

Reports: tokens renewed late (after their access token expired, or due and never renewed;
must be 0), tokens renewed twice, how far behind its schedule each refresh ran (lag), the
refreshes per second at the schedule's peak, the CPU share of each app process and of the
database, and the database's size per login (``pg_total_relation_size`` of the tables).

``python -m benchmarks scale-postgresql`` (``--quick``: 100,000 tokens, 30 s).
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import secrets
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from quart_spotify_auth import TokenRecord
from quart_spotify_auth.adapter import build_core
from quart_spotify_auth.stores.sql import SQLTokenStore
from tests.servers import PostgreSQLServer

from .servers import children, cpu_seconds, reaped_cpu_seconds

LIFETIME = 3600.0  # Spotify's access tokens
#: The settings both app processes run with: the defaults, but for the client.
CONFIG = {
    "SPOTIFY_CLIENT_ID": "id",
    "SPOTIFY_CLIENT_SECRET": "secret",
    "SPOTIFY_ACCOUNTS_URL": "https://accounts.invalid",
}
#: Seconds between the last login written and the renewers' start (both start together).
START_AFTER = 5.0


def expiry(index: int, tokens: int, start: float) -> float:
    """When login ``index``'s access token expires: spread evenly over the hour from ``start``
    plus the margin and its most jitter, so none is due before the renewers start."""
    return start + 330.0 + LIFETIME * (index + 1) / tokens


class Endpoint:
    """A token endpoint answering every refresh at once; it notes which login (its refresh
    token is ``r<index>``) was refreshed when."""

    def __init__(self) -> None:
        self.refreshed: list[tuple[int, float]] = []

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        form = dict(httpx.QueryParams(request.content.decode()))
        self.refreshed.append((int(form["refresh_token"][1:]), time.time()))
        body = {"access_token": secrets.token_urlsafe(32), "token_type": "Bearer",
                "expires_in": int(LIFETIME), "scope": "user-read-private"}  # fmt: skip
        return httpx.Response(200, json=body)


async def _seed(url: str, tokens: int, start: float) -> tuple[float, dict[int, float]]:
    """Write the logins (COPY, in chunks); the seconds it took and each login's due time."""
    import asyncpg

    store = SQLTokenStore(url)
    core = build_core(CONFIG, {}, secret_key="bench", store=store)
    await store.open()  # the tables
    began = time.perf_counter()
    connection = await asyncpg.connect(url)
    dues: dict[int, float] = {}
    try:
        table = store.schema.tokens.name
        columns = ["key", "version", "record", "due", "used", "expires"]
        chunk = 50_000
        for first in range(0, tokens, chunk):
            rows = []
            for i in range(first, min(tokens, first + chunk)):
                expires = expiry(i, tokens, start)
                issued = expires - LIFETIME
                key = f"user:{i}"
                record = TokenRecord(secrets.token_urlsafe(32), f"r{i}", expires, issued,
                                     frozenset({"user-read-private"}), issued)  # fmt: skip
                due = core.refresher.due(key, record)
                assert due is not None
                dues[i] = due
                stay = min(issued + store._idle, record.reauthorize_by)
                rows.append((key, i + 1, store._codec.record(key, record), due, issued, stay))
            await connection.copy_records_to_table(table, records=rows, columns=columns)
        meta = store.schema.meta.name
        versions = f"UPDATE {meta} SET value = $1 WHERE name = 'versions'"
        await connection.execute(versions, tokens)
        await connection.execute(f"ANALYZE {table}")
    finally:
        await connection.close()
        await store.close()
    return time.perf_counter() - began, dues


async def _size(url: str) -> int:
    import asyncpg

    connection = await asyncpg.connect(url)
    try:
        prefix = SQLTokenStore(url).schema.prefix
        total = 0
        for table in ("tokens", "claims", "meta"):
            total += int(await connection.fetchval("SELECT pg_total_relation_size($1)",
                                                   f"{prefix}{table}"))  # fmt: skip
        return total
    finally:
        await connection.close()


async def run_postgresql(
    tokens: int = 1_000_000, observe: float = 120.0, processes: int = 2
) -> dict[str, Any]:
    """``tokens`` logins in PostgreSQL, ``processes`` renewers watched for ``observe`` s."""
    server = PostgreSQLServer()
    server.start()
    try:
        # The schedule starts once the logins are written: allow 6 s per 100,000 (about
        # twice what it takes here); a late start would show as lag, and as late tokens.
        start = time.time() + 6.0 * tokens / 100_000 + START_AFTER
        seeded, dues = await _seed(server.url, tokens, start)
        size = await _size(server.url)
        database = _postmaster(server)
        command = ["-m", "benchmarks.scale_pg", server.url, str(tokens), str(start), str(observe)]
        workers = [
            await asyncio.create_subprocess_exec(
                sys.executable, *command, stdout=asyncio.subprocess.PIPE
            )
            for _ in range(processes)
        ]
        # The database's CPU while the renewers run (sampled before their connections close).
        await asyncio.sleep(max(0.0, start - time.time()))
        before = _cpu_by_process(database)
        await asyncio.sleep(observe - 1.0)
        after = _cpu_by_process(database)
        # (a process gone meanwhile is in the reaped total, its CPU before taken off)
        db_cpu = (sum(after.values()) - sum(before.values())) / (observe - 1)
        outs = [await worker.communicate() for worker in workers]
        if any(worker.returncode for worker in workers):
            raise RuntimeError("a renewer process failed")
        reports = [json.loads(out.decode().strip().splitlines()[-1]) for out, _ in outs]
    finally:
        server.remove()
    return _report(tokens, observe, start, seeded, size, dues, reports, db_cpu)


def _cpu_by_process(postmaster: int) -> dict[int, float]:
    """The CPU seconds of the database's processes (the postmaster and its children), and
    under ``-1`` those of its children that ended (a connection closed, an autovacuum
    worker): unseen, a connection made and closed within the window counted nothing."""
    found = {pid: cpu_seconds(pid) for pid in [postmaster, *children(postmaster)]}
    found[-1] = reaped_cpu_seconds(postmaster)
    return {pid: cpu for pid, cpu in found.items() if cpu is not None}


def _postmaster(server: PostgreSQLServer) -> int:
    return int(Path(server._dir, "postmaster.pid").read_text().split()[0])


def _report(
    tokens: int,
    observe: float,
    start: float,
    seeded: float,
    size: int,
    dues: dict[int, float],
    reports: list[dict[str, Any]],
    db_cpu: float,
) -> dict[str, Any]:
    end = start + observe
    refreshed = [(i, at) for report in reports for i, at in report["refreshed"]]
    first: dict[int, float] = {}
    for i, at in refreshed:
        first[i] = min(at, first.get(i, at))
    late = sum(1 for i, at in first.items() if at > expiry(i, tokens, start))
    # Due in the window (with 5 s to spare) and never renewed; or expired in it unrenewed.
    missed = sum(1 for i, due in dues.items() if due < end - 5.0 and i not in first)
    lags = sorted(at - dues[i] for i, at in first.items())
    per_second = collections.Counter(int(at - start) for _, at in refreshed)
    return {
        "tokens": tokens,
        "observed_s": observe,
        "processes": len(reports),
        "seed_s": round(seeded, 1),
        "scheduled_per_s": round(tokens / LIFETIME, 1),
        "refreshes": len(refreshed),
        "late": late + missed,
        "missed": missed,
        "renewed_twice": len(refreshed) - len(first),
        "lag_p50_ms": round(lags[len(lags) // 2] * 1e3, 1) if lags else None,
        "lag_p99_ms": round(lags[int(len(lags) * 0.99)] * 1e3, 1) if lags else None,
        "lag_max_ms": round(lags[-1] * 1e3, 1) if lags else None,
        "peak_refreshes_per_s": max(per_second.values(), default=0),
        "cpu_share_per_process": [r["cpu_share"] for r in reports],
        "database_cpu_share": round(db_cpu, 3),
        "bytes_per_login_in_database": round(size / tokens),
    }


async def _renewer(url: str, tokens: int, start: float, observe: float) -> dict[str, Any]:
    """One app process's renewer, from ``start`` for ``observe`` seconds."""
    endpoint = Endpoint()
    store = SQLTokenStore(url)
    core = build_core(CONFIG, {}, secret_key="bench", store=store,
                      transport=httpx.MockTransport(endpoint))  # fmt: skip
    await asyncio.sleep(max(0.0, start - time.time()))
    cpu, wall = time.process_time(), time.perf_counter()
    await core.start()
    await asyncio.sleep(max(0.0, start + observe - time.time()))
    await core.stop()
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    return {"refreshed": endpoint.refreshed, "cpu_share": round(cpu / wall, 3)}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="python -m benchmarks.scale_pg")
    parser.add_argument("url")
    parser.add_argument("tokens", type=int)
    parser.add_argument("start", type=float)
    parser.add_argument("observe", type=float)
    args = parser.parse_args()
    print(json.dumps(asyncio.run(_renewer(args.url, args.tokens, args.start, args.observe))))
