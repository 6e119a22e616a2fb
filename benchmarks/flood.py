"""Flood: a logged-in user's renewal while forged login callbacks hold code exchanges.

Spotify is slow to exchange codes (the fake takes ``delay`` seconds over each one, then
refuses the forged code); refreshes are answered at once. 150 callbacks carrying valid states
and forged codes arrive together; once every connection the flood can take is taken, the user
renews (``force_renewal``, ``POST /renew``). The same app with the exchange budget (at most
``EXCHANGES`` of the ``POOL_CONNECTIONS`` connections) and without it (the old behaviour: any
number), beside the same renewal with no flood, in alternating rounds of one run.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import time
from collections import Counter
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx

from quart_spotify_auth.accounts import EXCHANGES, POOL_CONNECTIONS
from quart_spotify_auth.serving import free_port

from .servers import hypercorn, served

#: A browser's session holds at most five logins started and not finished.
PER_SESSION = 5


async def _exchanges(http: httpx.AsyncClient, fake_url: str) -> int:
    state = (await http.get(fake_url + "/_fake/state")).json()
    return int(state["requests"].get("token:authorization_code", 0))


async def _renewal(user: httpx.AsyncClient, app_url: str) -> float:
    """Seconds a renewal took."""
    start = time.perf_counter()
    reply = await user.post(app_url + "/renew")
    took = time.perf_counter() - start
    assert reply.status_code == 200, reply.text
    return took


async def _flooded_renewal(
    user: httpx.AsyncClient, app_url: str, fake_url: str, callbacks: int, holds: int
) -> tuple[float, Counter[int]]:
    """The renewal's seconds once ``holds`` forged callbacks hold an exchange, and how the
    callbacks were answered."""
    sessions = [httpx.AsyncClient(timeout=120) for _ in range(callbacks // PER_SESSION)]
    try:
        forged = []
        for http in sessions:
            for _ in range(PER_SESSION):
                authorize = (await http.get(app_url + "/login")).headers["location"]
                forged.append((http, parse_qs(urlsplit(authorize).query)["state"][0]))
        before = await _exchanges(user, fake_url)
        flood = [
            asyncio.create_task(
                http.get(app_url + "/callback/", params={"code": "forged", "state": state})
            )
            for http, state in forged
        ]
        while await _exchanges(user, fake_url) < before + holds:
            await asyncio.sleep(0.02)
        took = await _renewal(user, app_url)
        answers = Counter(reply.status_code for reply in await asyncio.gather(*flood))
    finally:
        for http in sessions:
            await http.aclose()
    return took, answers


async def run(*, rounds: int, delay: float, callbacks: int = 150) -> dict[str, Any]:
    results: dict[str, Any] = {"callbacks": callbacks, "code_exchange_s": delay, "rounds": rounds}
    modes = {"budget": EXCHANGES, "no budget": 10 * POOL_CONNECTIONS}
    env = {"BENCH_CODE_DELAY": str(delay)}
    async with hypercorn("benchmarks.apps:slow_codes_fake", env=env) as fake_url:
        for mode, exchanges in modes.items():
            port = free_port()
            env = {"BENCH_APP_PORT": str(port), "BENCH_FAKE_URL": fake_url}
            if mode == "no budget":
                env["BENCH_EXCHANGES"] = str(exchanges)
            holds = min(callbacks, exchanges, POOL_CONNECTIONS)
            quiet = Path(os.devnull)  # the app's warnings (each forged code refused)
            async with (
                served("benchmarks.apps:hotpath", env=env, port=port, log=quiet) as (app_url, _),
                httpx.AsyncClient(timeout=120) as user,
            ):
                authorize = (await user.get(app_url + "/login")).headers["location"]
                callback = (await user.get(authorize)).headers["location"]
                assert (await user.get(callback)).status_code == 200
                idle, flooded, answers = [], [], Counter[int]()
                for _ in range(rounds):
                    idle.append(await _renewal(user, app_url))
                    took, answered = await _flooded_renewal(
                        user, app_url, fake_url, callbacks, holds
                    )
                    flooded.append(took)
                    answers += answered
            results[mode] = {
                "exchanges_held": holds,
                "renewal_ms_no_flood": round(statistics.median(idle) * 1000, 1),
                "renewal_ms_flood": round(statistics.median(flooded) * 1000, 1),
                "flood_over_no_flood": round(
                    statistics.median(flooded) / statistics.median(idle), 2
                ),
                "callbacks_answered": {str(k): v for k, v in sorted(answers.items())},
            }
    return results
