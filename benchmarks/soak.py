"""The soak: many browsers, short-lived tokens, Spotify failing on a schedule; quart-spotify-auth
beside the Authlib app a user would otherwise write, same load, same faults, one run.

Each contender gets a fresh FakeSpotify and its app, both served by hypercorn in their own
processes, and ``benchmarks.browsers`` in a third process: every browser logs in as its own
user and then keeps calling ``/me`` (the user's access token, then ``/v1/me``). Meanwhile this
process injects the faults through the fake's control endpoint (and restarts ``redis-server``
for the Redis contender), and samples once a second the fake's token requests by grant and the
app workers' CPU time and resident memory. It writes the figures and a plot into
``docs/benchmarks.md``.

``python -m benchmarks soak`` (part of ``nox -s bench``); longer: ``--soak-seconds 180``.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import itertools
import json
import math
import platform
import sys
import tempfile
import time
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from quart_spotify_auth.serving import free_port
from tests.servers import RedisServer

from .load import percentile
from .servers import Server, children, rss_mb, served, total_cpu
from .stores import redis_process

DOCS = Path(__file__).resolve().parent.parent / "docs"


def _tag(options: Options) -> str:
    """The default run's section and plot are ``soak``; a run of another length has its own."""
    return "soak" if options.seconds == 60 else f"soak-{options.seconds:g}s"


@dataclass
class Contender:
    name: str
    label: str
    target: str
    workers: int = 1
    redis: bool = False
    #: The default store (a SQLite file), and the app killed (SIGKILL) and started again.
    default_store: bool = False


CONTENDERS = [
    Contender("ours", "quart-spotify-auth, 1 worker, memory store", "benchmarks.soak_ours:ours"),
    Contender("peer", "Authlib AsyncOAuth2Client app, 1 worker", "benchmarks.soak_peer:peer"),
    Contender(
        "ours_redis",
        "quart-spotify-auth, 3 workers, Redis store",
        "benchmarks.soak_ours:ours",
        workers=3,
        redis=True,
    ),
    Contender(
        "ours_sqlite",
        "quart-spotify-auth, 3 workers, default store (SQLite), killed and restarted",
        "benchmarks.soak_ours:ours",
        workers=3,
        default_store=True,
    ),
]


@dataclass
class Fault:
    label: str
    at: float  # seconds into the load
    seconds: float
    on: dict[str, Any] = field(default_factory=dict)
    off: dict[str, Any] = field(default_factory=dict)
    redis_restart: bool = False
    app_restart: bool = False


def faults(seconds: float) -> list[Fault]:
    """The fault schedule: one cycle a minute (a shorter run gets one cycle, shrunk to fit),
    each cycle over by 70% of its length, so the end of the run shows recovery."""
    period = min(60.0, seconds)
    scale = period / 60
    plan = []
    for cycle in range(max(1, int(seconds // period))):
        at = cycle * period
        plan += [
            Fault(
                "5xx burst", at + 0.15 * period, 3 * scale, {"fail_next": 10**9}, {"fail_next": 0}
            ),
            Fault(
                "429, Retry-After: 1",
                at + 0.3 * period,
                3 * scale,
                {"rate_limit_next": 10**9, "retry_after": 1},
                {"rate_limit_next": 0},
            ),
            Fault(
                "slow token replies (1 s)",
                at + 0.45 * period,
                5 * scale,
                {"slow": 1.0},
                {"slow": 0},
            ),
            Fault("Redis restart", at + 0.65 * period, 0, redis_restart=True),
            Fault("app killed (SIGKILL) and started", at + 0.65 * period, 0, app_restart=True),
        ]
    return plan


@dataclass
class Options:
    seconds: float = 60.0
    browsers: int = 1000
    rate: float = 30.0  # visits per second (two cores run the app, the fake and the browsers)
    burst: int = 2  # concurrent requests per visit
    lifetime: float = 20.0  # access token lifetime
    margin: float = 5.0  # our refresh margin, and Authlib's leeway
    docs: bool = True


async def _inject(
    control: httpx.AsyncClient,
    fake_url: str,
    fault: Fault,
    redis: RedisServer | None,
    app: Server,
) -> dict[str, Any]:
    """Run one fault; returns when it happened and how long it lasted, in epoch seconds."""
    began = time.time()
    if fault.redis_restart:
        assert redis is not None
        away = await asyncio.to_thread(redis.restart)
        return {"label": fault.label, "at": began, "seconds": round(away, 2)}
    if fault.app_restart:
        await app.kill()
        await app.start()
        return {"label": fault.label, "at": began, "seconds": round(time.time() - began, 2)}
    await control.post(fake_url + "/_fake/control", json=fault.on)
    await asyncio.sleep(fault.seconds)
    await control.post(fake_url + "/_fake/control", json=fault.off)
    return {"label": fault.label, "at": began, "seconds": round(time.time() - began, 2)}


async def _schedule(
    control: httpx.AsyncClient,
    fake_url: str,
    plan: list[Fault],
    start: float,
    redis: RedisServer | None,
    app: Server,
    restart_app: bool,
) -> list[dict[str, Any]]:
    done = []
    for fault in plan:
        if (fault.redis_restart and redis is None) or (fault.app_restart and not restart_app):
            continue
        await asyncio.sleep(max(0.0, start + fault.at - time.time()))
        done.append(await _inject(control, fake_url, fault, redis, app))
    return done


async def _sample(
    control: httpx.AsyncClient, fake_url: str, app: Server, samples: list[dict[str, Any]]
) -> None:
    """Once a second until cancelled: the fake's request counters and the workers' memory
    (and CPU time: a restarted app's workers start again from zero)."""
    while True:
        state = (await control.get(fake_url + "/_fake/state")).json()
        workers = children(app.pid)
        memory = [m for m in map(rss_mb, workers) if m is not None]
        cpu = total_cpu(workers)
        samples.append(
            {"at": time.time(), "requests": state["requests"], "rss_mb": memory, "cpu_s": cpu}
        )
        await asyncio.sleep(1.0)


async def _answering(control: httpx.AsyncClient, url: str, timeout: float = 60.0) -> None:
    """Return once the app answers HTTP (any status: a worker has it loaded)."""
    async with asyncio.timeout(timeout):
        while True:
            try:
                await control.get(url + "/")
                return
            except httpx.TransportError:
                await asyncio.sleep(0.1)


@contextlib.asynccontextmanager
async def _maybe_redis(wanted: bool) -> AsyncIterator[RedisServer | None]:
    if not wanted:
        yield None
        return
    async with redis_process(persistent=True) as server:
        yield server


async def run_one(contender: Contender, options: Options, logs: Path) -> dict[str, Any]:
    """One contender from a fresh fake: log in, load with faults, sweep; the raw figures.
    The servers' output goes to files in ``logs``."""
    app_log = logs / f"{contender.name}.log"
    env = {"BENCH_USERS": str(options.browsers)}
    async with (
        _maybe_redis(contender.redis) as redis,
        served("benchmarks.soak_fake:fake", env=env, log=logs / f"{contender.name}-fake.log") as (
            fake_url,
            _,
        ),
        httpx.AsyncClient(timeout=30) as control,
    ):
        port = free_port()
        env |= {
            "BENCH_APP_PORT": str(port),
            "BENCH_FAKE_URL": fake_url,
            "BENCH_MARGIN": str(options.margin),
        }
        if redis is not None:
            env["BENCH_STORE"] = redis.url
        if contender.default_store:
            env |= {"BENCH_STORE": "default", "BENCH_INSTANCE": str(logs / contender.name)}
        await control.post(fake_url + "/_fake/control", json={"access_ttl": options.lifetime})
        async with Server(
            contender.target, env=env, port=port, workers=contender.workers, log=app_log
        ) as app:
            app_url = app.url
            browsers = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "benchmarks.browsers", app_url,
                "--browsers", str(options.browsers), "--seconds", str(options.seconds),
                "--rate", str(options.rate), "--burst", str(options.burst),
                "--login-seconds", str(options.lifetime), "--sweep-when-told",
                stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
            )  # fmt: skip
            assert browsers.stdout is not None
            start_line = await browsers.stdout.readline()
            if not start_line:
                raise RuntimeError(f"{contender.name}: the browsers stopped before the load")
            start = json.loads(start_line)["at"]
            samples: list[dict[str, Any]] = []
            sampler = asyncio.create_task(_sample(control, fake_url, app, samples))
            plan = faults(options.seconds)
            restart = contender.default_store
            injected = await _schedule(control, fake_url, plan, start, redis, app, restart)
            # The sweep checks every login once the faults are over and the app answers: on a
            # loaded machine a restarted app may still be starting when the load ends, and the
            # browsers would find nothing listening (logins_lost == every browser, each a
            # refused connection), which says nothing of the logins.
            await _answering(control, app.url)
            out, _ = await browsers.communicate(b"sweep\n")
            sampler.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sampler
            if browsers.returncode:
                raise RuntimeError(f"{contender.name}: the browsers failed")
            report: dict[str, Any] = json.loads(out.decode().strip().splitlines()[-1])
            final = (await control.get(fake_url + "/_fake/state")).json()["requests"]
    return {
        "contender": contender,
        "report": report,
        "samples": samples,
        "faults": injected,
        "start": start,
        "token_requests": final,
        "app_log": _log_summary(app_log),
    }


def _log_summary(path: Path) -> dict[str, int]:
    """What the app logged: its warning lines by message (numbers and names after a colon
    dropped), and tracebacks (unhandled errors)."""
    counts: dict[str, int] = {}
    for line in path.read_text(errors="replace").splitlines():
        if line.startswith("Traceback"):
            counts["traceback"] = counts.get("traceback", 0) + 1
        elif line and not line[0].isspace() and "Deprecat" not in line:
            message = line.split(":", 1)[0][:60]
            counts[message] = counts.get(message, 0) + 1
    return counts


def _cpu_steps(samples: list[dict[str, Any]]) -> list[float]:
    """The workers' CPU seconds between samples (none counted across an app restart)."""
    return [max(b["cpu_s"] - a["cpu_s"], 0.0) for a, b in itertools.pairwise(samples)]


def _needed(report: dict[str, Any], lifetime: float) -> int:
    """Refreshes needed to keep every browser's token valid from its login to the end."""
    end = report["ended_at"] - report["load_started_at"]
    return sum(math.floor((end - at) / lifetime) for at in report["login_at"])


#: After a fault ends, this long still counts as its aftermath.
RECOVERY = 5.0


def windows(raw: dict[str, Any]) -> list[tuple[str, float, float]]:
    """Each injected fault as (label, start, end of its aftermath), in seconds into the load."""
    return [
        (f["label"], f["at"] - raw["start"], f["at"] - raw["start"] + f["seconds"] + RECOVERY)
        for f in raw["faults"]
    ]


def during(outcome: list[Any], start: float, end: float) -> bool:
    """Whether a request (``[due, latency_ms, ...]``) was in flight at some time in
    ``[start, end)``: one due just before a fault may still fail in it (on a loaded machine a
    request due 50 ms before the app was killed was still waiting for its reply then)."""
    due, latency_ms = float(outcome[0]), float(outcome[1])
    return due < end and due + latency_ms / 1000 >= start


def buckets(raw: dict[str, Any], width: float = 1.0) -> list[dict[str, float]]:
    """Requests by when they were due: count, errors, p50 and p99 latency per ``width`` s."""
    grouped: dict[int, list[list[Any]]] = {}
    for outcome in raw["report"]["outcomes"]:
        grouped.setdefault(int(outcome[0] // width), []).append(outcome)
    return [
        {
            "t": i * width,
            "requests": len(group),
            "errors": sum(o[2] != "200" for o in group),
            "p50_ms": percentile([o[1] for o in group], 0.5),
            "p99_ms": percentile([o[1] for o in group], 0.99),
        }
        for i, group in sorted(grouped.items())
    ]


def summarise(raw: dict[str, Any], options: Options) -> dict[str, Any]:
    report, tokens = raw["report"], raw["token_requests"]
    outcomes = report["outcomes"]
    latencies = [o[1] for o in outcomes]
    errors = dict(Counter(o[2] for o in outcomes if o[2] != "200"))
    spans = windows(raw)
    quiet = [o[1] for o in outcomes if not any(during(o, a, b) for _, a, b in spans)]
    by_fault: dict[str, dict[str, float]] = {}
    for label, a, b in spans:
        inside = [o for o in outcomes if during(o, a, b)]
        entry = by_fault.setdefault(label, {"errors": 0, "p99_ms": 0.0})
        entry["errors"] += sum(o[2] != "200" for o in inside)
        entry["p99_ms"] = max(entry["p99_ms"], percentile([o[1] for o in inside], 0.99))
    memory = [max(s["rss_mb"]) for s in raw["samples"] if s["rss_mb"]]
    samples = raw["samples"]
    by_grant = {k.split(":", 1)[1]: v for k, v in tokens.items() if k.startswith("token:")}
    return {
        "logins": f"{report['logins']}/{report['browsers']}",
        "login_failures": report["login_failures"],
        "login_p50_p99_ms": [round(percentile(report["login_took_ms"], p)) for p in (0.5, 0.99)],
        "requests": len(outcomes),
        "errors": sum(errors.values()),
        "errors_by_kind": errors,
        "mixups": sum(o[3] for o in outcomes) + report["sweep"]["mixups"],
        "logins_lost": report["sweep"]["lost"],
        "p50_ms": round(percentile(latencies, 0.5), 1),
        "p99_ms": round(percentile(latencies, 0.99), 1),
        "max_ms": round(max(latencies, default=0.0), 1),
        "quiet_p50_ms": round(percentile(quiet, 0.5), 1),
        "quiet_p99_ms": round(percentile(quiet, 0.99), 1),
        "by_fault": {
            k: {"errors": v["errors"], "p99_ms": round(v["p99_ms"], 1)} for k, v in by_fault.items()
        },
        "token_requests": tokens.get("token", 0),
        "token_requests_by_grant": by_grant,
        "refreshes_made": by_grant.get("refresh_token", 0),
        "refreshes_needed": _needed(report, options.lifetime),
        "worker_rss_mb": [round(memory[i], 1) for i in (0, len(memory) // 2, -1)] if memory else [],
        "worker_cpu_s": round(sum(_cpu_steps(samples)), 1),
        "app_log": raw["app_log"],
        "faults": [
            f"{f['label']} at {f['at'] - raw['start']:.0f} s for {f['seconds']:.1f} s"
            for f in raw["faults"]
        ],
    }


async def run(options: Options) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="soak-") as logs:
        raws = [await run_one(contender, options, Path(logs)) for contender in CONTENDERS]
    results = {raw["contender"].name: summarise(raw, options) for raw in raws}
    if options.docs:
        plot(raws, DOCS / f"{_tag(options)}.png")
        write_docs(results, options)
    return {
        "browsers": options.browsers,
        "seconds": options.seconds,
        "token_lifetime_s": options.lifetime,
        **results,
    }


# -- pictures and the page --------------------------------------------------------------


def plot(raws: list[dict[str, Any]], path: Path) -> None:
    """Latency, refresh requests, worker CPU and memory over time, one line per contender,
    the fault windows shaded."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colours = {
        "ours": "tab:green",
        "peer": "tab:red",
        "ours_redis": "tab:blue",
        "ours_sqlite": "tab:purple",
    }
    figure, (latency, refreshes, cpu, memory) = plt.subplots(
        4, 1, figsize=(10, 12), sharex=True, gridspec_kw={"height_ratios": [3, 2, 2, 2]}
    )
    for raw in raws:
        contender, colour = raw["contender"], colours[raw["contender"].name]
        per_second = buckets(raw)
        times = [b["t"] + 0.5 for b in per_second]
        latency.plot(times, [b["p99_ms"] for b in per_second], color=colour, label=contender.label)
        latency.plot(times, [b["p50_ms"] for b in per_second], color=colour, linestyle=":")
        samples = raw["samples"]
        at = [s["at"] - raw["start"] for s in samples]
        counts = [s["requests"].get("token:refresh_token", 0) for s in samples]
        rates = [
            (counts[i] - counts[i - 1]) / max(at[i] - at[i - 1], 1e-9) for i in range(1, len(at))
        ]
        refreshes.plot(at[1:], rates, color=colour, label=contender.label)
        steps = _cpu_steps(samples)
        busy = [100 * steps[i - 1] / max(at[i] - at[i - 1], 1e-9) for i in range(1, len(at))]
        cpu.plot(at[1:], busy, color=colour)
        memory.plot(
            [a for a, s in zip(at, samples, strict=True) if s["rss_mb"]],
            [max(s["rss_mb"]) for s in samples if s["rss_mb"]],
            color=colour,
        )
    labelled: set[float] = set()
    for raw in raws:  # the schedule is the same for all; Redis restarts only in one
        for fault in raw["faults"]:
            start = round(fault["at"] - raw["start"])
            if start in labelled:
                continue
            labelled.add(start)
            for axes in (latency, refreshes, cpu, memory):
                axes.axvspan(start, start + max(fault["seconds"], 0.5), color="0.88", zorder=0)
            latency.annotate(
                fault["label"],
                (start, 0.98),
                xycoords=("data", "axes fraction"),
                rotation=90,
                va="top",
                ha="right",
                fontsize=8,
            )
    latency.set_yscale("log")
    latency.set_ylabel("latency, ms (p99 solid, p50 dotted)")
    latency.legend(loc="lower left", bbox_to_anchor=(0, 1.0), ncol=3, fontsize=8, frameon=False)
    figure.suptitle("Soak: each second's requests; grey bands are the injected faults")
    refreshes.set_ylabel("refresh token requests / s\n(served by the fake)")
    cpu.set_ylabel("worker CPU, % of a core\n(all workers)")
    memory.set_ylabel("worker RSS, MB\n(largest worker)")
    memory.set_xlabel("seconds into the load")
    figure.tight_layout()
    figure.savefig(path, dpi=80)
    plt.close(figure)


def _cell(value: Any) -> str:
    if isinstance(value, dict):
        return ", ".join(f"{k}: {_cell(v)}" for k, v in sorted(value.items())) or "none"
    if isinstance(value, list):
        return " / ".join(_cell(v) for v in value)
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    return str(value)


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(row) + " |" for row in rows]


def write_docs(results: dict[str, dict[str, Any]], options: Options) -> None:
    """Replace the soak section of docs/benchmarks.md with this run's figures."""
    labels = {c.name: c.label for c in CONTENDERS}
    shown = list(results.values())

    def row(title: str, make: Any) -> list[str]:
        return [title, *(make(r) for r in shown)]

    summary = [
        row("logins", lambda r: r["logins"] + (
            f" ({_cell(r['login_failures'])})" if r["login_failures"] else "")),
        row("login time p50 / p99, ms", lambda r: _cell(r["login_p50_p99_ms"])),
        row("requests to `/me`", lambda r: _cell(r["requests"])),
        row("**cross-user mix-ups**", lambda r: f"**{r['mixups']}**"),
        row("**logins lost** (each browser checked at the end)",
            lambda r: f"**{r['logins_lost']}**"),
        row("user-visible errors", lambda r: f"{r['errors']} ({_cell(r['errors_by_kind'])})"),
        row("latency p50 / p99 / max, ms",
            lambda r: f"{r['p50_ms']} / {r['p99_ms']} / {r['max_ms']}"),
        row("latency away from faults, p50 / p99, ms",
            lambda r: f"{r['quiet_p50_ms']} / {r['quiet_p99_ms']}"),
        row("token requests (all, incl. refused)", lambda r: _cell(r["token_requests"])),
        row("token requests served, by grant", lambda r: _cell(r["token_requests_by_grant"])),
        row("refreshes made / needed",
            lambda r: f"{r['refreshes_made']:,} / {r['refreshes_needed']:,}"),
        row("worker RSS after logins / half-way / end, MB", lambda r: _cell(r["worker_rss_mb"])),
        row("worker CPU during the load, s", lambda r: str(r["worker_cpu_s"])),
    ]  # fmt: skip
    faults_seen = list(dict.fromkeys(k for r in shown for k in r["by_fault"]))
    per_fault = [
        [label, *(
            f"{r['by_fault'][label]['errors']} / {r['by_fault'][label]['p99_ms']}"
            if label in r["by_fault"] else "(not run)"
            for r in shown
        )]
        for label in faults_seen
    ]  # fmt: skip
    names = [labels[n] for n in results]
    first = max(shown, key=lambda r: len(r["faults"]))
    command = "python -m benchmarks soak" + (
        f" --soak-seconds {options.seconds:g}" if options.seconds != 60 else ""
    )
    tag = _tag(options)
    begin, end = f"<!-- {tag}: written by python -m benchmarks soak -->", f"<!-- /{tag} -->"
    section = [
        begin,
        f"Made by `{command}` on {datetime.date.today().isoformat()}, Python "
        f"{platform.python_version()}, 2 shared cores: {options.browsers:,} browsers, "
        f"{options.seconds:g} s of load at {options.rate:g} visits/s of {options.burst} "
        f"concurrent requests, access tokens living {options.lifetime:g} s, refresh margin "
        f"(ours) and leeway (Authlib's) {options.margin:g} s.",
        "",
        "Faults: " + "; ".join(first["faults"]) + ".",
        "",
        *_table(["", *names], summary),
        "",
        f"Errors / p99 latency (ms) from each fault's start to {RECOVERY:g} s after its end:",
        "",
        *_table(["fault", *names], per_fault),
        "",
        f"![Latency, refresh requests, worker CPU and memory over time]({tag}.png)",
        end,
    ]
    page = (DOCS / "benchmarks.md").read_text()
    text = "\n".join(section)
    if begin in page and end in page:
        before, rest = page.split(begin, 1)
        page = before + text + rest.split(end, 1)[1]
    else:
        title = "Soak" if tag == "soak" else f"Soak, {options.seconds:g} s"
        page = page.rstrip("\n") + f"\n\n## {title}: load with faults, beside Authlib\n\n{text}\n"
    (DOCS / "benchmarks.md").write_text(page)
