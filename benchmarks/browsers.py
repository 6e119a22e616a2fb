"""Simulated browsers for the soak, in their own process:
``python -m benchmarks.browsers APP_URL --browsers 1000 --seconds 60 --rate 100``.

1. Each browser ``i`` logs in as ``u{i}``: the app's ``/login``, FakeSpotify's consent page,
   the consent form posted back as that user, the app's callback. Its cookies are its own.
   The logins are spread over ``--login-seconds``, so tokens expire all through the run.
2. Prints ``{"event": "start", "at": EPOCH}`` and loads the app for ``--seconds``: ``--rate``
   visits per second, open loop (a visit is due at its time whether or not earlier ones have
   been answered, so a stall shows as latency, not as fewer requests), each visit being
   ``--burst`` concurrent ``GET /me`` from one browser, as a page firing several calls. The
   browsers take turns in a shuffled order. Latency runs from when a request was due to when
   its reply was read; requests go over ``--connections`` keep-alive connections (raw
   HTTP/1.1, so the load costs little CPU beside the servers).
3. Every ``200`` must name the browser's own user; one that names another is a mix-up.
4. After the load, each browser calls ``/me`` once more: one that fails has lost its login.

The last line printed is the JSON report, with every request as ``[due, latency_ms, kind,
mixup]``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import httpx

TIMEOUT = 30.0


@dataclass
class Browser:
    user: str
    cookies: dict[str, str] = field(default_factory=dict)
    login_at: float = 0.0

    def cookie_header(self) -> str:
        return "; ".join(f"{k}={v}" for k, v in self.cookies.items())

    def remember(self, set_cookies: list[str]) -> None:
        for line in set_cookies:
            name, _, value = line.split(";", 1)[0].partition("=")
            if value:
                self.cookies[name.strip()] = value.strip()
            else:
                self.cookies.pop(name.strip(), None)


# -- logging in --------------------------------------------------------------------------


async def log_in(http: httpx.AsyncClient, app_url: str, browser: Browser) -> None:
    async def get(url: str) -> httpx.Response:
        reply = await http.get(url, headers={"Cookie": browser.cookie_header()})
        browser.remember(reply.headers.get_list("set-cookie"))
        return reply

    authorize = (await get(app_url + "/login")).headers["location"]
    consent = await http.get(authorize)  # the page a person would read
    consent.raise_for_status()
    parts = urlsplit(authorize)
    form = dict(parse_qsl(parts.query)) | {"user": browser.user, "action": "approve"}
    agreed = await http.post(f"{parts.scheme}://{parts.netloc}/authorize", data=form)
    back = await get(agreed.headers["location"])
    if back.status_code >= 400:
        raise RuntimeError(f"callback answered {back.status_code}: {back.text[:200]}")
    browser.login_at = time.time()


async def log_in_all(app_url: str, browsers: list[Browser], seconds: float) -> int:
    """Log every browser in, their starts spread evenly over ``seconds`` (people arrive over
    time, so their tokens expire at different times); returns how many failed."""
    failed = 0
    start = time.perf_counter()

    async def one(http: httpx.AsyncClient, i: int, browser: Browser) -> None:
        nonlocal failed
        await asyncio.sleep(max(0.0, start + i * seconds / len(browsers) - time.perf_counter()))
        try:
            await log_in(http, app_url, browser)
        except (httpx.HTTPError, RuntimeError, KeyError):
            failed += 1

    limits = httpx.Limits(max_connections=64)
    async with httpx.AsyncClient(timeout=TIMEOUT, limits=limits) as http:
        await asyncio.gather(*(one(http, i, b) for i, b in enumerate(browsers)))
    return failed


# -- raw HTTP/1.1 over a small pool of keep-alive connections -----------------------------


class Pool:
    def __init__(self, host: str, port: int, size: int) -> None:
        self.host, self.port = host, port
        self.idle: asyncio.Queue[tuple[asyncio.StreamReader, asyncio.StreamWriter] | None] = (
            asyncio.Queue()
        )
        for _ in range(size):
            self.idle.put_nowait(None)  # opened on first use

    async def get(self, path: str, cookie: str) -> tuple[int, list[str], bytes]:
        """One request; a connection the server closed is reopened and the GET sent again."""
        request = (
            f"GET {path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\nCookie: {cookie}\r\n\r\n"
        ).encode()
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
    async def _exchange(
        conn: tuple[asyncio.StreamReader, asyncio.StreamWriter], request: bytes
    ) -> tuple[int, list[str], bytes]:
        reader, writer = conn
        writer.write(request)
        status_line = await reader.readline()
        if not status_line:
            raise ConnectionResetError("closed by the server")
        status = int(status_line.split()[1])
        length, cookies = 0, []
        while True:
            line = await reader.readline()
            if line in (b"\r\n", b""):
                break
            name, _, value = line.partition(b":")
            name = name.strip().lower()
            if name == b"content-length":
                length = int(value)
            elif name == b"set-cookie":
                cookies.append(value.strip().decode("latin-1"))
        body = await reader.readexactly(length) if length else b""
        return status, cookies, body


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
        status, cookies, body = await asyncio.wait_for(
            pool.get("/me", browser.cookie_header()), TIMEOUT
        )
    except TimeoutError:
        return "timeout", False
    except (OSError, EOFError, ValueError):  # refused, reset, cut short, unreadable
        return "connection", False
    browser.remember(cookies)
    if status != 200:
        return str(status), False
    try:
        user = json.loads(body)["id"]
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
    failed = await log_in_all(args.app_url, browsers, args.login_seconds)
    logged_in = [b for b in browsers if b.login_at]
    report: dict[str, Any] = {
        "browsers": args.browsers,
        "logins": len(logged_in),
        "login_failures": failed,
        "login_seconds": round(time.perf_counter() - began, 2),
    }
    parts = urlsplit(args.app_url)
    pool = Pool(parts.hostname or "127.0.0.1", parts.port or 80, args.connections)
    started = time.time()
    print(json.dumps({"event": "start", "at": started}), flush=True)
    outcomes = await load(pool, logged_in, seconds=args.seconds, rate=args.rate, burst=args.burst)
    report["outcomes"] = [
        [round(o.due, 3), round(o.latency * 1000, 2), o.kind, o.mixup] for o in outcomes
    ]
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
    args = parser.parse_args()
    print(json.dumps(asyncio.run(run(args))), flush=True)


if __name__ == "__main__":
    main()
