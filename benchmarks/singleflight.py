"""Single-flight: token requests made when many concurrent callers find one expired token.

Every contender talks over loopback HTTP to the same hypercorn-served FakeSpotify (another
process) and is counted by the fake's own counters (``/_fake/state``):

- quart-spotify-auth: ``Refresher.current`` (what ``get_access_token`` runs);
- Authlib ``AsyncOAuth2Client``, one shared by all callers (its refresh lock) and one per
  caller (what its framework integrations do, authlib#673);
- tekore's async ``Credentials.refresh`` called by each caller that sees ``is_expiring``;
- spotipy's ``SpotifyOAuth.get_access_token`` from a pool of threads.

Each is timed from the moment its callers start until the last has its token: setting up (a
login at the fake, a client, a store) is not counted.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx

from quart_spotify_auth.accounts import AccountsClient
from quart_spotify_auth.adapter import build_core
from quart_spotify_auth.config import Settings, load_settings
from quart_spotify_auth.tokens import TokenRecord
from tests.apps import CLIENT_ID, CLIENT_SECRET

from .servers import hypercorn

REDIRECT = "http://127.0.0.1:5000/callback/"


async def _refresh_count(http: httpx.AsyncClient, fake_url: str) -> int:
    state = (await http.get(fake_url + "/_fake/state")).json()
    return int(state["requests"].get("token:refresh_token", 0))


def _settings(fake_url: str) -> Settings:
    config = {"SPOTIFY_CLIENT_ID": CLIENT_ID, "SPOTIFY_CLIENT_SECRET": CLIENT_SECRET}
    return load_settings({**config, "SPOTIFY_ACCOUNTS_URL": fake_url, "SPOTIFY_AUTO_RENEW": False})


async def _fresh_login(http: httpx.AsyncClient, fake_url: str) -> TokenRecord:
    """A real user token from the fake (auto-approving consent), as a record."""
    accounts = AccountsClient(_settings(fake_url), http)
    reply = await http.get(
        accounts.authorize_url(redirect_uri=REDIRECT, state="s", scopes=["user-read-private"])
    )
    code = parse_qs(urlsplit(reply.headers["location"]).query)["code"][0]
    return await accounts.exchange_code(code, redirect_uri=REDIRECT, code_verifier=None)


async def ours(
    http: httpx.AsyncClient, fake_url: str, callers: int, store: str | None = None
) -> float:
    """The default store (SQLite: a claim, the save and the release are writes); ``store``."""
    config = {"SPOTIFY_ACCOUNTS_URL": fake_url, "SPOTIFY_AUTO_RENEW": False}
    config |= {"SPOTIFY_CLIENT_ID": CLIENT_ID, "SPOTIFY_CLIENT_SECRET": CLIENT_SECRET}
    core = build_core(config | {"SPOTIFY_TOKEN_STORE": store}, {}, secret_key="bench")
    record = await _fresh_login(http, fake_url)
    await core.refresher.login("user", replace(record, expires_at=time.time() - 1))
    start = time.perf_counter()
    results = await asyncio.gather(*(core.refresher.current("user") for _ in range(callers)))
    took = time.perf_counter() - start
    assert len({r.access_token for r in results}) == 1
    await core.stop()
    return took


def _expired_token(record: TokenRecord) -> dict[str, Any]:
    return {
        "access_token": record.access_token,
        "refresh_token": record.refresh_token,
        "token_type": "Bearer",
        "expires_in": 3600,
        "expires_at": int(time.time()) - 10,
        "scope": " ".join(record.scopes),
    }


async def authlib_shared(http: httpx.AsyncClient, fake_url: str, callers: int) -> float:
    from authlib.integrations.httpx_client import AsyncOAuth2Client

    token = _expired_token(await _fresh_login(http, fake_url))
    async with AsyncOAuth2Client(
        CLIENT_ID, CLIENT_SECRET, token=token, token_endpoint=fake_url + "/api/token",
        limits=httpx.Limits(max_connections=100),
    ) as client:  # fmt: skip
        start = time.perf_counter()
        await asyncio.gather(*(client.ensure_active_token(client.token) for _ in range(callers)))
        return time.perf_counter() - start


async def authlib_per_request(http: httpx.AsyncClient, fake_url: str, callers: int) -> float:
    from authlib.integrations.httpx_client import AsyncOAuth2Client

    token = _expired_token(await _fresh_login(http, fake_url))

    async def one() -> None:
        async with AsyncOAuth2Client(
            CLIENT_ID, CLIENT_SECRET, token=dict(token), token_endpoint=fake_url + "/api/token"
        ) as client:
            await client.ensure_active_token(client.token)

    return await _bounded(one, callers)


async def tekore_async(http: httpx.AsyncClient, fake_url: str, callers: int) -> float:
    import tekore
    import tekore._auth.expiring.client as tekore_client

    tekore_client.OAUTH_TOKEN_URL = fake_url + "/api/token"
    record = await _fresh_login(http, fake_url)
    info = _expired_token(record)
    info["expires_in"] = -10
    token = tekore.Token(info, uses_pkce=False)
    credentials = tekore.Credentials(CLIENT_ID, CLIENT_SECRET, REDIRECT, asynchronous=True)

    async def one() -> None:
        if token.is_expiring:
            await credentials.refresh(token)

    return await _bounded(one, callers)


async def spotipy_threads(http: httpx.AsyncClient, fake_url: str, callers: int) -> float:
    import spotipy

    class FakeOAuth(spotipy.SpotifyOAuth):  # type: ignore[misc]
        OAUTH_TOKEN_URL = fake_url + "/api/token"

    token = _expired_token(await _fresh_login(http, fake_url))
    oauth = FakeOAuth(
        CLIENT_ID, CLIENT_SECRET, REDIRECT,
        cache_handler=spotipy.MemoryCacheHandler(token_info=token), open_browser=False,
    )  # fmt: skip

    def one() -> None:
        oauth.get_access_token(as_dict=False)

    with ThreadPoolExecutor(max_workers=min(callers, 100)) as pool:
        start = time.perf_counter()
        await asyncio.get_running_loop().run_in_executor(
            None, lambda: list(pool.map(lambda _: one(), range(callers)))
        )
        return time.perf_counter() - start


async def _bounded(one: Any, callers: int, limit: int = 50) -> float:
    """Run ``callers`` coroutines, at most ``limit`` connecting at a time (the fake's socket
    backlog is finite); all of them see the token expired before any refresh lands. Returns
    the seconds they took."""
    slots = asyncio.Semaphore(limit)

    async def guarded() -> None:
        async with slots:
            await one()

    start = time.perf_counter()
    await asyncio.gather(*(guarded() for _ in range(callers)))
    return time.perf_counter() - start


CONTENDERS = {
    "quart-spotify-auth": ours,
    "quart-spotify-auth, memory store": lambda http, url, callers: ours(
        http, url, callers, "memory"
    ),
    "authlib shared client": authlib_shared,
    "authlib client per request": authlib_per_request,
    "tekore async": tekore_async,
    "spotipy threads": spotipy_threads,
}


async def run(callers: int = 1000, rounds: int = 5) -> dict[str, Any]:
    """Each contender ``rounds`` times, in turn: token requests per round (the most seen) and
    the callers' seconds (median, and the spread)."""
    results: dict[str, Any] = {"callers": callers}
    times: dict[str, list[float]] = {name: [] for name in CONTENDERS}
    made: dict[str, int] = dict.fromkeys(CONTENDERS, 0)
    limits = httpx.Limits(max_connections=100)
    async with (
        hypercorn("benchmarks.apps:fake") as fake_url,
        httpx.AsyncClient(limits=limits) as http,
    ):
        for _ in range(rounds):
            for name, contender in CONTENDERS.items():
                if name in results or sum(times[name]) > 5:
                    continue  # it failed (reported once), or one slow round says enough
                before = await _refresh_count(http, fake_url)
                try:
                    times[name].append(await contender(http, fake_url, callers))
                except Exception as exc:  # report, keep measuring the others
                    results[name] = f"failed: {type(exc).__name__}: {exc}"
                    continue
                made[name] = max(made[name], await _refresh_count(http, fake_url) - before)
    for name, seconds in times.items():
        if name not in results:
            ordered = sorted(seconds)
            results[name] = {
                "token_requests": made[name],
                "seconds": round(statistics.median(ordered), 3),
                "spread": [round(ordered[0], 3), round(ordered[-1], 3)],
            }
    return results
