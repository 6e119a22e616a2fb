"""Login load, run in its own process: ``python -m benchmarks.logins MODE APP_URL FAKE_URL``.

``login``: complete logins (the app's /login, the fake's auto-approving /authorize, the app's
callback, which exchanges the code) by ``--concurrency`` browsers for ``--seconds``.
``token``: bare client-credentials requests to the fake's /api/token, the same way: the limit
a login cannot beat, since every login makes one token request. Prints one JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import time

import httpx

from tests.apps import CLIENT_ID, CLIENT_SECRET

BASIC = "Basic " + base64.b64encode(f"{CLIENT_ID}:{CLIENT_SECRET}".encode()).decode()


async def _login_loop(app_url: str, deadline: float, done: list[int]) -> None:
    limits = httpx.Limits(max_keepalive_connections=4)
    async with httpx.AsyncClient(limits=limits) as http:
        while time.perf_counter() < deadline:
            http.cookies.clear()
            authorize = (await http.get(app_url + "/login")).headers["location"]
            callback = (await http.get(authorize)).headers["location"]
            reply = await http.get(callback)
            done[reply.status_code == 200] += 1


async def _token_loop(fake_url: str, deadline: float, done: list[int]) -> None:
    async with httpx.AsyncClient() as http:
        while time.perf_counter() < deadline:
            reply = await http.post(
                fake_url + "/api/token",
                data={"grant_type": "client_credentials"},
                headers={"Authorization": BASIC},
            )
            done[reply.status_code == 200] += 1


async def run(
    mode: str, app_url: str, fake_url: str, seconds: float, concurrency: int
) -> dict[str, float]:
    done = [0, 0]  # failures, successes
    deadline = time.perf_counter() + seconds
    if mode == "login":
        loops = [_login_loop(app_url, deadline, done) for _ in range(concurrency)]
    else:
        loops = [_token_loop(fake_url, deadline, done) for _ in range(concurrency)]
    start = time.perf_counter()
    await asyncio.gather(*loops)
    elapsed = time.perf_counter() - start
    return {"ok": done[1], "failed": done[0], "per_second": done[1] / elapsed}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("mode", choices=["login", "token"])
    parser.add_argument("app_url")
    parser.add_argument("fake_url")
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--concurrency", type=int, default=16)
    args = parser.parse_args()
    print(
        json.dumps(
            asyncio.run(run(args.mode, args.app_url, args.fake_url, args.seconds, args.concurrency))
        )
    )


if __name__ == "__main__":
    main()
