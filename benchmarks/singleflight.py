"""Single-flight: token requests made when many concurrent callers find one expired token.

Every contender talks over loopback HTTP to the same hypercorn-served FakeSpotify (another
process) and is counted by the fake's own counters (``/_fake/state``):

- quart-spotify-auth: ``Refresher.current`` (what ``get_access_token`` runs);
- Authlib ``AsyncOAuth2Client``, one shared by all callers (its refresh lock) and one per
  caller (what its framework integrations do, authlib#673);
- tekore's async ``Credentials.refresh`` called by each caller that sees ``is_expiring``;
- spotipy's ``SpotifyOAuth.get_access_token`` from a pool of threads.

Each is timed from the moment its callers start until the last has its token: setting up (a
login at the fake, a client, a store) is not counted. Each is timed warm, as in a running app
(its store or client has made one refresh before: statements prepared, a connection to Spotify
open), and on its first refresh (a new store or client), reported beside.
"""

from __future__ import annotations

import asyncio
import gc
import statistics
import time
from collections.abc import Awaitable, Callable
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


class Round:
    """One contender's round: the fake, the callers, and the timed part's token requests."""

    def __init__(self, http: httpx.AsyncClient, fake_url: str, callers: int, warm: bool) -> None:
        self.http, self.fake_url, self.callers, self.warm = http, fake_url, callers, warm
        self.requests = 0

    async def timed(self, callers: Callable[[], Awaitable[Any]]) -> float:
        """Seconds ``callers()`` takes; the token requests it made, in :attr:`requests`."""
        before = await _refresh_count(self.http, self.fake_url)
        gc.collect()  # the set-up's garbage is not the callers' to collect
        start = time.perf_counter()
        await callers()
        took = time.perf_counter() - start
        self.requests = await _refresh_count(self.http, self.fake_url) - before
        return took

    async def expired_token(self) -> dict[str, Any]:
        """A new login's token at the fake, as a peer's token dict, expired."""
        return _expired_token(await _fresh_login(self.http, self.fake_url))


async def ours(bench: Round, store: str | None = None) -> float:
    """The default store (SQLite: a claim, the save and the release are writes); ``store``.
    Warm, the store has served one refresh (of another user) before, as in a running app:
    its statements are prepared and its connection to Spotify is open."""
    config = {"SPOTIFY_ACCOUNTS_URL": bench.fake_url, "SPOTIFY_AUTO_RENEW": False}
    config |= {"SPOTIFY_CLIENT_ID": CLIENT_ID, "SPOTIFY_CLIENT_SECRET": CLIENT_SECRET}
    core = build_core(config | {"SPOTIFY_TOKEN_STORE": store}, {}, secret_key="bench")
    try:
        users = ["warm-up", "user"] if bench.warm else ["user"]
        for user in users:
            record = await _fresh_login(bench.http, bench.fake_url)
            await core.refresher.login(user, replace(record, expires_at=time.time() - 1))
        if bench.warm:
            await core.refresher.current("warm-up")
        results: list[TokenRecord] = []

        async def callers() -> None:
            calls = (core.refresher.current("user") for _ in range(bench.callers))
            results.extend(await asyncio.gather(*calls))

        took = await bench.timed(callers)
        assert len({r.access_token for r in results}) == 1
        return took
    finally:
        await core.stop()


def _expired_token(record: TokenRecord) -> dict[str, Any]:
    return {
        "access_token": record.access_token,
        "refresh_token": record.refresh_token,
        "token_type": "Bearer",
        "expires_in": 3600,
        "expires_at": int(time.time()) - 10,
        "scope": " ".join(record.scopes),
    }


async def authlib_shared(bench: Round) -> float:
    """One client shared by every caller; warm, it has refreshed once (another login's token)
    before."""
    from authlib.integrations.httpx_client import AsyncOAuth2Client

    async with AsyncOAuth2Client(
        CLIENT_ID, CLIENT_SECRET, token=await bench.expired_token(),
        token_endpoint=bench.fake_url + "/api/token", limits=httpx.Limits(max_connections=100),
    ) as client:  # fmt: skip
        if bench.warm:
            await client.ensure_active_token(client.token)
            client.token = await bench.expired_token()

        async def callers() -> None:
            await asyncio.gather(
                *(client.ensure_active_token(client.token) for _ in range(bench.callers))
            )

        return await bench.timed(callers)


async def authlib_per_request(bench: Round) -> float:
    """A client per caller: nothing outlives a caller, so there is nothing to warm."""
    from authlib.integrations.httpx_client import AsyncOAuth2Client

    token = await bench.expired_token()

    async def one() -> None:
        async with AsyncOAuth2Client(
            CLIENT_ID,
            CLIENT_SECRET,
            token=dict(token),
            token_endpoint=bench.fake_url + "/api/token",
        ) as client:
            await client.ensure_active_token(client.token)

    return await bench.timed(lambda: _bounded(one, bench.callers))


async def tekore_async(bench: Round) -> float:
    """tekore's async credentials, shared; warm, they have refreshed once before."""
    import tekore
    import tekore._auth.expiring.client as tekore_client

    tekore_client.OAUTH_TOKEN_URL = bench.fake_url + "/api/token"
    credentials = tekore.Credentials(CLIENT_ID, CLIENT_SECRET, REDIRECT, asynchronous=True)

    async def expired() -> Any:
        return tekore.Token(await bench.expired_token() | {"expires_in": -10}, uses_pkce=False)

    if bench.warm:
        await credentials.refresh(await expired())
    token = await expired()

    async def one() -> None:
        if token.is_expiring:
            await credentials.refresh(token)

    return await bench.timed(lambda: _bounded(one, bench.callers))


async def spotipy_threads(bench: Round) -> float:
    """spotipy's ``SpotifyOAuth`` from a pool of threads; warm, it has refreshed once."""
    import spotipy

    class FakeOAuth(spotipy.SpotifyOAuth):  # type: ignore[misc]
        OAUTH_TOKEN_URL = bench.fake_url + "/api/token"

    cache = spotipy.MemoryCacheHandler(token_info=await bench.expired_token())
    oauth = FakeOAuth(CLIENT_ID, CLIENT_SECRET, REDIRECT, cache_handler=cache, open_browser=False)
    loop = asyncio.get_running_loop()

    def one() -> None:
        oauth.get_access_token(as_dict=False)

    if bench.warm:
        await loop.run_in_executor(None, one)
        cache.save_token_to_cache(await bench.expired_token())

    with ThreadPoolExecutor(max_workers=min(bench.callers, 100)) as pool:

        async def callers() -> None:
            await loop.run_in_executor(
                None, lambda: list(pool.map(lambda _: one(), range(bench.callers)))
            )

        return await bench.timed(callers)


async def _bounded(one: Any, callers: int, limit: int = 50) -> None:
    """Run ``callers`` coroutines, at most ``limit`` connecting at a time (the fake's socket
    backlog is finite); all of them see the token expired before any refresh lands."""
    slots = asyncio.Semaphore(limit)

    async def guarded() -> None:
        async with slots:
            await one()

    await asyncio.gather(*(guarded() for _ in range(callers)))


Contender = Callable[[Round], Awaitable[float]]

CONTENDERS: dict[str, Contender] = {
    "quart-spotify-auth": ours,
    "quart-spotify-auth, memory store": lambda bench: ours(bench, "memory"),
    "authlib shared client": authlib_shared,
    "authlib client per request": authlib_per_request,
    "tekore async": tekore_async,
    "spotipy threads": spotipy_threads,
}

#: Contenders with nothing that outlives a round's callers: warm and first are the same.
NOTHING_TO_WARM = {"authlib client per request"}


def _summary(seconds: list[float], prefix: str = "") -> dict[str, Any]:
    """The median of ``seconds`` and their spread, under ``prefix``."""
    if not seconds:
        return {}
    ordered = sorted(seconds)
    return {
        f"{prefix}seconds": round(statistics.median(ordered), 3),
        f"{prefix}spread": [round(ordered[0], 3), round(ordered[-1], 3)],
    }


async def run(callers: int = 1000, rounds: int = 5) -> dict[str, Any]:
    """Each contender ``rounds`` times, in turn, warm (it has made one refresh before, as a
    running app has) and then on its first refresh (a new store or client): the token
    requests of the timed part (the most seen in a round) and the callers' seconds (median,
    and the spread), warm as ``seconds``, first as ``first_seconds``."""
    results: dict[str, Any] = {"callers": callers}
    times: dict[tuple[str, bool], list[float]] = {}
    made: dict[str, int] = dict.fromkeys(CONTENDERS, 0)
    limits = httpx.Limits(max_connections=100)
    async with (
        hypercorn("benchmarks.apps:fake") as fake_url,
        httpx.AsyncClient(limits=limits) as http,
    ):
        for _ in range(rounds):
            for name, contender in CONTENDERS.items():
                for warm in (True, False) if name not in NOTHING_TO_WARM else (True,):
                    seen = times.setdefault((name, warm), [])
                    if name in results or sum(seen) > 5:
                        continue  # it failed (reported once), or one slow round says enough
                    bench = Round(http, fake_url, callers, warm)
                    try:
                        seen.append(await contender(bench))
                    except Exception as exc:  # report, keep measuring the others
                        results[name] = f"failed: {type(exc).__name__}: {exc}"
                        continue
                    made[name] = max(made[name], bench.requests)
    for name in CONTENDERS:
        if name not in results:
            results[name] = {"token_requests": made[name], **_summary(times[name, True])}
            results[name] |= _summary(times.get((name, False), []), "first_")
    return results
