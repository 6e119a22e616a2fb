"""Simulated browsers for the soak, in their own process:
``python -m benchmarks.browsers APP_URL --browsers 1000 --seconds 60 --rate 30``.

Everything goes over raw HTTP/1.1 on keep-alive connections, so the browsers cost little CPU
beside the servers they load.

1. Each browser ``i`` logs in as ``u{i}``: the app's ``/login``, FakeSpotify's consent page,
   the consent form posted back as that user, the app's callback. Its cookies are its own.
   The logins are spread over ``--login-seconds``, so tokens expire all through the run.
2. Prints ``{"event": "start", "at": EPOCH}`` and loads the app for ``--seconds``: ``--rate``
   visits per second, open loop (a visit is due at its time whether or not earlier ones have
   been answered, so a stall shows as latency, not as fewer requests), each visit being
   ``--burst`` concurrent ``GET /me`` from one browser, as a page firing several calls. The
   browsers take turns in a shuffled order. Latency runs from when a request was due to when
   its reply was read; requests go over up to ``--connections`` connections.
3. Every ``200`` must name the browser's own user; one that names another is a mix-up.
4. After the load, each browser calls ``/me`` once more: one that fails has lost its login.
   With ``--sweep-when-told`` this waits for a line on stdin first: the runner's word that its
   faults are over and the app answers again (an app restarted by a fault may still be starting
   when the load ends, and a browser that cannot reach it has not lost its login).

The last line printed is the JSON report, with every request as ``[due, latency_ms, kind,
mixup]``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

TIMEOUT = 30.0


@dataclass
class Browser:
    user: str
    cookies: dict[str, str] = field(default_factory=dict)
    login_at: float = 0.0
    login_took: float = 0.0

    def cookie_header(self) -> str:
        return "; ".join(f"{k}={v}" for k, v in self.cookies.items())

    def remember(self, set_cookies: list[str]) -> None:
        for line in set_cookies:
            name, _, value = line.split(";", 1)[0].partition("=")
            if value:
                self.cookies[name.strip()] = value.strip()
            else:
                self.cookies.pop(name.strip(), None)


# -- raw HTTP/1.1 over pools of keep-alive connections ------------------------------------


@dataclass
class Reply:
    status: int
    headers: list[tuple[str, str]]  # names in lower case
    body: bytes

    def header(self, name: str) -> str | None:
        return next((v for k, v in self.headers if k == name), None)

    def cookies(self) -> list[str]:
        return [v for k, v in self.headers if k == "set-cookie"]


Connection = tuple[asyncio.StreamReader, asyncio.StreamWriter]


class Pool:
    """Up to ``size`` keep-alive connections to one origin, opened on first use."""

    def __init__(self, url: str, size: int) -> None:
        parts = urlsplit(url)
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 80
        self.idle: asyncio.Queue[Connection | None] = asyncio.Queue()
        for _ in range(size):
            self.idle.put_nowait(None)

    async def request(
        self, method: str, target: str, cookie: str = "", form: dict[str, str] | None = None
    ) -> Reply:
        """One request; if the server had closed the kept-alive connection, it is sent again
        on a new one, as browsers do."""
        head = f"{method} {target} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n"
        if cookie:
            head += f"Cookie: {cookie}\r\n"
        body = urlencode(form).encode() if form is not None else b""
        if form is not None:
            head += "Content-Type: application/x-www-form-urlencoded\r\n"
            head += f"Content-Length: {len(body)}\r\n"
        request = (head + "\r\n").encode() + body
        conn = await self.idle.get()
        try:
            if conn is not None:
                try:
                    return await self._exchange(conn, request)
                except (ConnectionError, asyncio.IncompleteReadError):
                    conn[1].close()  # a keep-alive connection the server had closed
                    conn = None
            conn = await asyncio.open_connection(self.host, self.port)
            return await self._exchange(conn, request)
        except BaseException:
            if conn is not None:
                conn[1].close()  # in an unknown state: never reused
                conn = None
            raise
        finally:
            self.idle.put_nowait(conn)

    @staticmethod
    async def _exchange(conn: Connection, request: bytes) -> Reply:
        reader, writer = conn
        writer.write(request)
        status_line = await reader.readline()
        if not status_line:
            raise ConnectionResetError("closed by the server")
        status = int(status_line.split()[1])
        headers: list[tuple[str, str]] = []
        length = 0
        while True:
            line = await reader.readline()
            if line in (b"\r\n", b""):
                break
            name, _, value = line.decode("latin-1").partition(":")
            headers.append((name.strip().lower(), value.strip()))
            if headers[-1][0] == "content-length":
                length = int(value)
        body = await reader.readexactly(length) if length else b""
        return Reply(status, headers, body)


# -- logging in --------------------------------------------------------------------------


class LoginFailed(Exception):
    """A login that did not go through; the message says where."""


def _target(url: str) -> str:
    parts = urlsplit(url)
    return parts.path + (f"?{parts.query}" if parts.query else "")


class Pools(dict[str, Pool]):
    """A pool per origin (the fake's is learnt from the app's redirect)."""

    def __init__(self, size: int) -> None:
        super().__init__()
        self.size = size

    def __missing__(self, origin: str) -> Pool:
        self[origin] = pool = Pool(origin, self.size)
        return pool

    def at(self, url: str) -> Pool:
        parts = urlsplit(url)
        return self[f"{parts.scheme}://{parts.netloc}"]


async def log_in(app: Pool, pools: Pools, browser: Browser) -> None:
    """The app's /login, the fake's consent page, the consent form posted back as this
    browser's user, the app's callback; as a browser follows them."""

    async def at_app(target: str) -> Reply:
        reply = await app.request("GET", target, browser.cookie_header())
        browser.remember(reply.cookies())
        return reply

    began = time.perf_counter()
    authorize = (await at_app("/login")).header("location")
    if authorize is None:
        raise LoginFailed("/login did not redirect")
    fake = pools.at(authorize)
    consent = await fake.request("GET", _target(authorize))  # the page a person would read
    if consent.status != 200:
        raise LoginFailed(f"consent page {consent.status}")
    form = dict(parse_qsl(urlsplit(authorize).query)) | {"user": browser.user, "action": "approve"}
    agreed = await fake.request("POST", "/authorize", form=form)
    back_to = agreed.header("location")
    if back_to is None:
        raise LoginFailed(f"consent {agreed.status}")
    back = await at_app(_target(back_to))
    if back.status >= 400:
        raise LoginFailed(f"callback {back.status}: {back.body[-300:].decode(errors='replace')}")
    browser.login_took = time.perf_counter() - began
    browser.login_at = time.time()


async def log_in_all(app: Pool, browsers: list[Browser], seconds: float) -> Counter[str]:
    """Log every browser in, their starts spread evenly over ``seconds`` (people arrive over
    time, so their tokens expire at different times); returns the failures by kind."""
    failed: Counter[str] = Counter()
    pools = Pools(64)
    start = time.perf_counter()

    async def one(i: int, browser: Browser) -> None:
        await asyncio.sleep(max(0.0, start + i * seconds / len(browsers) - time.perf_counter()))
        try:
            await asyncio.wait_for(log_in(app, pools, browser), TIMEOUT)
        except TimeoutError:
            failed["timeout"] += 1
        except (OSError, EOFError, ValueError):
            failed["connection"] += 1
        except LoginFailed as exc:
            failed[str(exc)] += 1

    await asyncio.gather(*(one(i, b) for i, b in enumerate(browsers)))
    return failed


# -- the load -----------------------------------------------------------------------------


@dataclass
class Outcome:
    due: float  # seconds since the load started
    latency: float
    kind: str  # "200", another status, "connection" or "timeout"
    mixup: bool = False


async def call_me(pool: Pool, browser: Browser) -> tuple[str, bool]:
    """``GET /me`` as ``browser``: the outcome's kind and whether it named another user."""
    try:
        reply = await asyncio.wait_for(pool.request("GET", "/me", browser.cookie_header()), TIMEOUT)
    except TimeoutError:
        return "timeout", False
    except (OSError, EOFError, ValueError):  # refused, reset, cut short, unreadable
        return "connection", False
    browser.remember(reply.cookies())
    if reply.status != 200:
        return str(reply.status), False
    try:
        user = json.loads(reply.body)["id"]
    except (ValueError, KeyError, TypeError):
        return "200 unreadable", False
    return "200", user != browser.user


async def load(
    pool: Pool, browsers: list[Browser], *, seconds: float, rate: float, burst: int
) -> list[Outcome]:
    outcomes: list[Outcome] = []
    tasks: set[asyncio.Task[None]] = set()
    start = time.perf_counter()

    async def one(browser: Browser, due: float) -> None:
        kind, mixup = await call_me(pool, browser)
        outcomes.append(Outcome(due, time.perf_counter() - start - due, kind, mixup))

    order: list[Browser] = []
    visit = 0
    while (due := visit / rate) < seconds:
        if not order:
            order = random.sample(browsers, len(browsers))
        browser = order.pop()
        delay = start + due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        for _ in range(burst):
            task = asyncio.create_task(one(browser, due))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        visit += 1
    if tasks:
        await asyncio.wait(tasks)
    return outcomes


async def sweep(pool: Pool, browsers: list[Browser], concurrency: int = 32) -> dict[str, Any]:
    """Each browser once more: is it still logged in, as itself?"""
    gate = asyncio.Semaphore(concurrency)

    async def check(browser: Browser) -> tuple[str, bool]:
        async with gate:
            return await call_me(pool, browser)

    results = await asyncio.gather(*(check(b) for b in browsers))
    return {
        "checked": len(results),
        "lost": sum(kind != "200" for kind, _ in results),
        "lost_by_kind": dict(Counter(kind for kind, _ in results if kind != "200")),
        "mixups": sum(mixup for _, mixup in results),
    }


async def run(args: argparse.Namespace) -> dict[str, Any]:
    browsers = [Browser(f"u{i}") for i in range(args.browsers)]
    began = time.perf_counter()
    pool = Pool(args.app_url, args.connections)
    failed = await log_in_all(pool, browsers, args.login_seconds)
    logged_in = [b for b in browsers if b.login_at]
    report: dict[str, Any] = {
        "browsers": args.browsers,
        "logins": len(logged_in),
        "login_failures": dict(failed),
        "login_seconds": round(time.perf_counter() - began, 2),
        "login_took_ms": [round(b.login_took * 1000, 1) for b in logged_in],
    }
    started = time.time()
    print(json.dumps({"event": "start", "at": started}), flush=True)
    outcomes = await load(pool, logged_in, seconds=args.seconds, rate=args.rate, burst=args.burst)
    report["outcomes"] = [
        [round(o.due, 3), round(o.latency * 1000, 2), o.kind, o.mixup] for o in outcomes
    ]
    if args.sweep_when_told:
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    report["sweep_started_at"] = time.time()
    report["sweep"] = await sweep(pool, logged_in)
    ended = time.time()
    report["load_started_at"] = started
    report["ended_at"] = ended
    report["login_at"] = [round(b.login_at - started, 3) for b in logged_in]
    return report


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.browsers")
    parser.add_argument("app_url")
    parser.add_argument("--browsers", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--rate", type=float, default=100.0, help="visits per second")
    parser.add_argument("--burst", type=int, default=2, help="concurrent requests per visit")
    parser.add_argument(
        "--connections", type=int, default=512, help="enough that none waits for another's"
    )
    parser.add_argument("--login-seconds", type=float, default=20.0, help="logins spread over")
    parser.add_argument(
        "--sweep-when-told", action="store_true", help="sweep after a line on stdin, not at once"
    )
    args = parser.parse_args()
    print(json.dumps(asyncio.run(run(args))), flush=True)


if __name__ == "__main__":
    main()
