"""The benchmarks' contenders work: a measure whose app cannot log in measures nothing (the
Authlib app broke once, unseen, when Authlib moved to httpx2). A few logins of each, over
real HTTP, through the measure itself; the figures are for ``nox -s bench``, not here."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from ._httplib import needs_real_httpx
from .conftest import require

needs_real_httpx("The benchmarks (their load runs on httpx)")

from benchmarks import web  # noqa: E402


@pytest.mark.slow
async def test_every_login_contender_logs_in() -> None:
    result = await web.logins_beside_authlib(seconds=0.5, rounds=1, concurrency=2)
    contenders = ["ours", "ours_sqlite", "ours_httpx2", "ours_sqlite_httpx2"]
    for name in [*contenders, "authlib", "authlib_httpx"]:  # the measure fails on a failed login
        assert result[f"{name}_logins_per_s"] > 0, (name, result)
        assert result[f"{name}_cpu_us_per_login"] > 0, (name, result)
        assert 0 <= result[f"{name}_system_cpu_us_per_login"] <= result[f"{name}_cpu_us_per_login"]
    assert result["authlib_httpx_library"] == "httpx"  # as where httpx2 is not installed


@pytest.mark.parametrize("store", ["memory", "sqlite"])
def test_the_instruction_count_counts_logins_that_land(store: str) -> None:
    """``login-instructions`` counts what its child process's logins cost: each must get a
    token of its own, and the last be in the store (else the child exits with an error)."""
    from benchmarks import instructions

    assert instructions.child(store, 3) == 3


@pytest.mark.slow
async def test_the_served_hot_path_count_counts_each_batch_of_requests() -> None:
    """``hotpath-instructions`` counts the served app's own work per request, on Quart and on
    the Flask shim: each batch a count of its own (a dump per batch), the token path above the
    constant one."""
    from benchmarks import served_instructions

    _require_valgrind()
    apps = ("memory", "flask shim, memory")
    result = await served_instructions.run(count=20, apps=apps)
    for name in apps:
        counted = result[name]
        assert len(counted["batches"]["/constant"]) == len(counted["batches"]["/token"]) == 2
        assert 100_000 < counted["constant_per_request"] < counted["token_per_request"]
        assert 0.5 < counted["ratio"] < 1


@pytest.mark.slow
async def test_the_served_login_count_counts_logins_that_land() -> None:
    """``served-login-instructions`` counts each contender's app while its logins land (a
    failed one stops the measure): ours on the default store and Authlib's, on httpx."""
    from benchmarks import served_instructions

    _require_valgrind()
    result = await served_instructions.logins(count=10, names=("ours_sqlite", "authlib_httpx"))
    for name in ("ours_sqlite", "authlib_httpx"):
        assert all(1_000_000 < n < 100_000_000 for n in result["per_login"][name]), result
    assert 0.5 < result["authlib_httpx_over_ours_sqlite"] < 2


def _require_valgrind() -> None:
    found = shutil.which("valgrind") is not None and shutil.which("callgrind_control") is not None
    require("valgrind", found, "apt-get install valgrind")


@pytest.mark.slow
@pytest.mark.parametrize("warm", [True, False])
async def test_a_single_flight_round_counts_only_its_callers_token_requests(
    warm: bool, tmp_path: Path
) -> None:
    """``singleflight`` times each contender warm (one refresh made before, untimed) and on
    its first refresh: the timed part's token requests are the callers' own, one for a
    single flight, whichever way."""
    import httpx

    from benchmarks import singleflight
    from benchmarks.servers import hypercorn

    async with hypercorn("benchmarks.apps:fake") as fake_url, httpx.AsyncClient() as http:
        for store in (f"sqlite:///{tmp_path}/tokens.sqlite3", "memory"):
            bench = singleflight.Round(http, fake_url, 50, warm)
            assert await singleflight.ours(bench, store) > 0
            assert bench.requests == 1, store
        bench = singleflight.Round(http, fake_url, 50, warm)
        assert await singleflight.authlib_shared(bench) > 0
        assert bench.requests == 1
