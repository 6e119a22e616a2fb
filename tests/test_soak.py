"""The soak (``benchmarks/soak.py``) on a small scale, as a test of the whole: hypercorn serving
the app (one worker with the memory store; three with Redis; three on the default store) and
FakeSpotify, simulated browsers in another process, and the fault schedule (a 5xx burst,
429s, slow token replies, for Redis a restart of ``redis-server``, and on the default store
the app killed with SIGKILL and started again) while tokens living 4 s roll over several
times.

Whatever the faults, nobody is mixed up, nobody loses a login, no error is other than a 503
that says why, and each token is refreshed once per period: at least as often as needed, never
more often than the renewal policy allows.
"""

from __future__ import annotations

import asyncio
import math
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from ._httplib import needs_real_httpx

needs_real_httpx("The soak (benchmarks/soak.py: its browsers)")

from benchmarks import soak  # noqa: E402
from benchmarks.servers import Server  # noqa: E402

from .conftest import require_redis  # noqa: E402

OPTIONS = soak.Options(seconds=12, browsers=40, rate=8, burst=2, lifetime=4, margin=1.5, docs=False)
CONTENDERS = [c for c in soak.CONTENDERS if c.name != "peer"]  # the peer needs Authlib


def _most_refreshes(raw: dict[str, Any], options: soak.Options) -> int:
    """Refreshes the policy allows at most: one per (lifetime - margin - the most jitter) of
    each browser's time since login, plus one."""
    report = raw["report"]
    end = report["ended_at"] - report["load_started_at"]
    shortest = options.lifetime - 1.1 * options.margin
    return sum(math.ceil((end - at) / shortest) + 1 for at in report["login_at"])


@pytest.mark.slow
@pytest.mark.parametrize("contender", CONTENDERS, ids=[c.name for c in CONTENDERS])
async def test_soak_with_faults_keeps_everyone_logged_in_as_themselves(
    contender: soak.Contender, tmp_path: Path
) -> None:
    if contender.redis:
        require_redis()
    raw = await soak.run_one(contender, OPTIONS, tmp_path)
    result = soak.summarise(raw, OPTIONS)

    expected = ["5xx burst", "429, Retry-After: 1", "slow token replies (1 s)"]
    restart = "app killed (SIGKILL) and started"
    assert [f["label"] for f in raw["faults"]] == expected + (
        ["Redis restart"] if contender.redis else []
    ) + ([restart] if contender.default_store else [])
    tokens = raw["token_requests"]
    served = sum(v for k, v in tokens.items() if k.startswith("token:"))
    assert tokens["token"] > served, "the 5xx burst and the 429s refused no token request"

    assert result["logins"] == "40/40"
    assert result["requests"] == OPTIONS.seconds * OPTIONS.rate * OPTIONS.burst
    assert result["mixups"] == 0
    assert result["logins_lost"] == 0
    # While the app is down its port refuses connections; nothing else but a 503 that says why.
    down = [(a, b) for label, a, b in soak.windows(raw) if label == restart]
    elsewhere = Counter(
        o[2]
        for o in raw["report"]["outcomes"]
        if o[2] != "200" and not any(soak.during(o, a, b) for a, b in down)
    )
    assert set(elsewhere) <= {"503"}, elsewhere
    assert "traceback" not in result["app_log"], (tmp_path / f"{contender.name}.log").read_text()

    assert result["refreshes_needed"] >= 2 * 40, "tokens did not roll over several times"
    assert result["refreshes_made"] >= result["refreshes_needed"]
    assert result["refreshes_made"] <= _most_refreshes(raw, OPTIONS)


def test_a_request_in_flight_when_a_fault_began_counts_in_its_window() -> None:
    """Due 50 ms before the app was killed, its reply still awaited when it died: the kill's
    refused connection (seen in a soak on a loaded machine), not one outside any fault."""
    killed, back = 7.80, 19.15
    assert soak.during([7.75, 148.28, "connection", False], killed, back)
    assert not soak.during([7.50, 100.0, "200", False], killed, back)  # answered before
    assert not soak.during([19.15, 5.0, "200", False], killed, back)  # due after


@pytest.mark.slow
async def test_the_sweep_waits_for_a_restart_that_outlasts_the_load(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On a loaded machine the app killed mid-run took longer to start again than the load
    had left, and the sweep found nothing listening: logins_lost == every browser, each a
    refused connection, though no login was lost. The sweep waits for the faults to end and
    the app to answer."""
    options = soak.Options(
        seconds=6, browsers=10, rate=4, burst=1, lifetime=4, margin=1.5, docs=False
    )
    start, started = Server.start, set()

    async def slow_restart(server: Server) -> None:
        if id(server) in started:  # a restart, as slow as on a starved machine: the load ends
            await asyncio.sleep(options.seconds)
        started.add(id(server))
        await start(server)

    monkeypatch.setattr(Server, "start", slow_restart)  # the class soak's runner uses
    contender = next(c for c in soak.CONTENDERS if c.default_store)
    raw = await soak.run_one(contender, options, tmp_path)
    report = raw["report"]
    restarted = next(f for f in raw["faults"] if f["label"].startswith("app killed"))
    assert restarted["at"] + restarted["seconds"] > report["load_started_at"] + options.seconds
    assert report["sweep"] == {"checked": 10, "lost": 0, "lost_by_kind": {}, "mixups": 0}
    assert report["sweep_started_at"] >= restarted["at"] + restarted["seconds"]
