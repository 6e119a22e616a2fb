"""Renewal at scale: many tracked tokens, expiries spread over a window, refreshed by one
background renewer through an in-process transport (a minimal token endpoint, so the
measure is the renewer, not a server).

Reports: tokens refreshed before their expiry (must be all), the most refreshes the token
endpoint was answering at once (never above the bound), memory per tracked token beside the
token itself (tracemalloc), and CPU per refresh: the whole process, and the scheduler alone
(heap push + pop).

:func:`run_sqlite` is the same on the default store, a SQLite file: every login, schedule
entry, claim and renewed record goes through the file, so the measure is the renewer on the
database (none late), and the bytes each token takes on disk.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import os
import random
import secrets
import sys
import tempfile
import time
import tracemalloc
from typing import Any

import httpx

from quart_spotify_auth import MemoryTokenStore, TokenRecord
from quart_spotify_auth.adapter import build_core
from quart_spotify_auth.core import Core
from quart_spotify_auth.stores.sql import SQLTokenStore


class Endpoint:
    """A token endpoint answering refreshes at once; it records when each original token was
    refreshed so lateness can be checked."""

    def __init__(self, lifetime: float, expected: int) -> None:
        self.lifetime = lifetime
        self.deadline: dict[str, float] = {}  # refresh token -> expiry of the access token
        self.due: dict[str, float] = {}  # refresh token -> when it was scheduled (if known)
        self.lags: list[float] = []  # seconds from scheduled to refreshed
        self.late = 0
        self.refreshes = 0
        self.in_flight = 0
        self.max_in_flight = 0
        self.expected = expected
        self.done = asyncio.Event()

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        await asyncio.sleep(0)  # let the other refreshes in flight show
        self.in_flight -= 1
        form = dict(httpx.QueryParams(request.content.decode()))
        refresh = form["refresh_token"]
        self.refreshes += 1
        if time.time() > self.deadline.get(refresh, float("inf")):
            self.late += 1
        if refresh in self.due:
            self.lags.append(time.time() - self.due.pop(refresh))
        self.deadline[refresh] = time.time() + self.lifetime
        if self.refreshes >= self.expected:
            self.done.set()
        body = {"access_token": secrets.token_urlsafe(32), "token_type": "Bearer",
                "expires_in": self.lifetime, "scope": "user-read-private"}  # fmt: skip
        return httpx.Response(200, content=json.dumps(body).encode(),
                              headers={"content-type": "application/json"})  # fmt: skip


def _setup(
    tokens: int, window: float, concurrency: int, store: Any
) -> tuple[Endpoint, Core, list[tuple[str, TokenRecord]]]:
    """The endpoint, one app's core on ``store``, and ``tokens`` logins whose first refresh
    points are spread evenly over ``window`` seconds from now."""
    lifetime = 2 * window  # refresh at the midpoint: each token is due once in the window
    endpoint = Endpoint(lifetime, tokens)
    config = {
        "SPOTIFY_CLIENT_ID": "id",
        "SPOTIFY_CLIENT_SECRET": "secret",
        "SPOTIFY_ACCOUNTS_URL": "https://x",
        "SPOTIFY_REFRESH_MARGIN": lifetime,
        "SPOTIFY_RENEW_CONCURRENCY": concurrency,
        "SPOTIFY_KEEP_WARM": 0,
    }
    transport = httpx.MockTransport(endpoint)
    core = build_core(config, {}, secret_key="bench", store=store,
                      transport=transport)  # fmt: skip
    now = time.time()
    records = []
    for i in range(tokens):
        issued = now - window + window * (i + 1) / tokens  # due = issued + window
        refresh = secrets.token_urlsafe(32)
        endpoint.deadline[refresh] = issued + lifetime
        records.append(
            (f"user:{i}", TokenRecord(secrets.token_urlsafe(32), refresh, issued + lifetime,
                                      issued, frozenset({"user-read-private"}), issued))
        )  # fmt: skip
    return endpoint, core, records


async def _renew_all(
    endpoint: Endpoint, core: Core, concurrency: int, observe: float | None = None
) -> dict[str, Any]:
    """Run the renewer until every token was refreshed (or for ``observe`` seconds)."""
    cpu0, wall0 = time.process_time(), time.perf_counter()
    await core.start()
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(endpoint.done.wait(), observe)
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    await core.stop()
    lags = sorted(endpoint.lags) or [0.0]
    return {
        "refreshes": endpoint.refreshes,
        "late": endpoint.late,
        "max_in_flight": endpoint.max_in_flight,
        "bound": concurrency,
        "cpu_per_refresh_us": round(cpu / max(1, endpoint.refreshes) * 1e6, 1),
        "cpu_share_of_a_core": round(cpu / wall, 3),
        "wall_s": round(wall, 1),
        **(
            {
                "lag_p50_ms": round(lags[len(lags) // 2] * 1e3, 1),
                "lag_max_ms": round(lags[-1] * 1e3, 1),
            }
            if endpoint.lags
            else {}
        ),
    }


async def run(tokens: int = 100_000, window: float = 60.0, concurrency: int = 16) -> dict[str, Any]:
    """``tokens`` tokens in the memory store, renewed over ``window`` seconds."""
    store = MemoryTokenStore()
    endpoint, core, records = _setup(tokens, window, concurrency, store)
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    for key, record in records:
        await core.refresher.login(key, record)
    gc.collect()
    tracked = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    # The store keeps a copy of each record (with its version); its strings are shared with
    # the caller's. What is left is the cost of tracking: dict entries, heap entries, stamps.
    record_size = sys.getsizeof(next(iter(store._records.values())))
    renewed = await _renew_all(endpoint, core, concurrency)
    return {
        "tokens": tokens,
        "window_s": window,
        **renewed,
        "bytes_per_tracked_token": round(tracked / tokens - record_size),
        "scheduler_cpu_per_refresh_us": await _scheduler_cost(tokens),
    }


async def run_sqlite(
    tokens: int = 100_000, window: float = 3600.0, observe: float = 120.0, concurrency: int = 16
) -> dict[str, Any]:
    """``tokens`` tokens in a SQLite file, due over ``window`` seconds (an hour: Spotify's
    token lifetime, so each user is renewed once an hour), and one app's renewer watched for
    ``observe`` seconds of it: how far behind its schedule each refresh ran (lag), the CPU it
    took, and the bytes each token takes on disk.

    The logins are written first in one transaction, encoded by the store and scheduled by the
    refresher as a login would be (writing 100,000 one by one is not what is measured)."""
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "tokens.sqlite3")
        store = SQLTokenStore(f"sqlite:///{path}")
        endpoint, core, records = _setup(tokens, window, concurrency, store)
        await store.open()
        seeding = time.perf_counter()
        rows = []
        for version, (key, record) in enumerate(records, 1):
            due = core.refresher.due(key, record)
            endpoint.due[str(record.refresh_token)] = due or 0.0
            rows.append({
                "key": key, "version": version, "record": store._codec.record(key, record),
                "due": due, "used": record.issued_at,
                "expires": min(record.issued_at + store._idle, record.reauthorize_by),
            })  # fmt: skip
        await store.transaction(
            lambda connection: connection.execute(store.schema.tokens.insert(), rows)
        )
        seeded = time.perf_counter() - seeding
        await store.close()  # checkpointed: the file alone holds the tokens
        size = os.path.getsize(path)
        renewed = await _renew_all(endpoint, core, concurrency, observe)
        return {
            "tokens": tokens,
            "window_s": window,
            **renewed,
            "bytes_per_token_on_disk": round(size / tokens),
            "seed_s": round(seeded, 1),
        }


async def _scheduler_cost(tokens: int) -> float:
    """CPU of the scheduling alone: the store's schedule write and hand-out for each token
    (what the renewer adds per refresh beside the refresh itself), in microseconds."""
    store = MemoryTokenStore()
    dues = [random.random() * 3600 for _ in range(tokens)]
    keys = [f"user:{i}" for i in range(tokens)]
    start = time.process_time()
    for key, due in zip(keys, dues, strict=True):
        await store.reschedule(key, due)
    handed = 0
    while handed < tokens:
        handed += len((await store.due(3600.0, 64)).entries)
    return round((time.process_time() - start) / tokens * 1e6, 2)


if __name__ == "__main__":
    print(asyncio.run(run(10_000, 10)))
    print(asyncio.run(run_sqlite(10_000, 600, 30)))
