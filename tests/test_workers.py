"""Many workers, one shared store: hypercorn worker processes on 127.0.0.1 sharing a real
redis-server, a real PostgreSQL, or one SQLite file, against a hypercorn-served FakeSpotify.
The same tests run against each store."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from redis.asyncio import Redis
from sqlalchemy import select

from benchmarks.servers import Server
from quart_spotify_auth.serving import free_port, serve
from quart_spotify_auth.stores.sql import SQLTokenStore
from quart_spotify_auth.testing import FakeSpotify

from ._httplib import httpx
from .conftest import Browser, require_redis
from .servers import PostgreSQLServer, RedisServer, until

pytestmark = pytest.mark.slow

WAIT = 30.0


class Workers:
    """N app processes (``tests.served_app:app``), each on its own port, one store."""

    def __init__(self, fake_url: str, store: Store, **env: str) -> None:
        base = {"TEST_FAKE_URL": fake_url, "TEST_STORE": store.url, "TEST_PREFIX": store.prefix}
        self.servers = [
            Server("tests.served_app:app", env={**base, **env, "TEST_PORT": str(port)}, port=port)
            for port in (free_port() for _ in range(3))
        ]

    @property
    def urls(self) -> list[str]:
        return [server.url for server in self.servers]

    async def start(self) -> None:
        await asyncio.gather(*(server.start() for server in self.servers))

    async def stop(self) -> None:
        await asyncio.gather(*(server.stop() for server in self.servers))


class Store:
    """A shared store the workers use: its URL, this test's prefix, and its server."""

    def __init__(self, kind: str, url: str, prefix: str, server: Any = None) -> None:
        self.kind, self.url, self.prefix, self.server = kind, url, prefix, server

    async def raw(self) -> bytes:
        """Everything this test wrote into the store, as bytes."""
        if self.kind == "redis":
            redis = Redis.from_url(self.url)
            raw = b""
            async for name in redis.scan_iter(match=f"{self.prefix}*"):
                kind = await redis.type(name)
                if kind == b"hash":
                    values: list[Any] = await redis.hvals(name)
                    raw += b"".join(values)
            await redis.aclose()
            return raw
        store = SQLTokenStore(self.url, prefix=self.prefix)
        rows = await store.transaction(lambda c: c.execute(select(store.schema.tokens)).all())
        raw = b"".join(repr(tuple(row)).encode() for row in rows)
        await store.close()
        return raw


@pytest.fixture(name="store", params=["redis", "postgresql", "sqlite"])
def _store(
    request: pytest.FixtureRequest, redis_prefix: str, sql_prefix: str, tmp_path: Path
) -> Store:
    if request.param == "redis":
        server: RedisServer = request.getfixturevalue("redis_server")
        return Store("redis", server.url, redis_prefix, server)
    if request.param == "postgresql":
        pg: PostgreSQLServer = request.getfixturevalue("pg_server")
        return Store("postgresql", pg.url, sql_prefix, pg)
    return Store("sqlite", f"sqlite:///{tmp_path}/tokens.sqlite3", "quart_spotify_auth_")


@contextlib.asynccontextmanager
async def workers(
    fake: FakeSpotify, store: Store, **env: str
) -> AsyncIterator[tuple[Workers, str]]:
    async with serve(fake) as fake_url:
        group = Workers(fake_url, store, **env)
        await group.start()
        try:
            yield group, fake_url
        finally:
            await group.stop()


async def _settled(redis: Redis, due_key: str) -> None:
    deadline = time.monotonic() + WAIT
    while True:
        first = await redis.zrange(due_key, 0, 0, withscores=True)
        if first and float(first[0][1]) > time.time() + 60:
            return
        if time.monotonic() > deadline:
            raise TimeoutError("the renewer did not reschedule")
        await asyncio.sleep(0.05)


async def test_a_login_through_one_worker_is_served_by_all(fake: FakeSpotify, store: Store) -> None:
    async with workers(fake, store) as (group, fake_url):
        one, two, three = group.urls
        async with Browser(one, fake_url) as browser:
            assert (await browser.login("alice")).status_code == 302
            tokens = set()
            for url in group.urls:
                reply = await browser.http.get(url + "/token")
                assert reply.status_code == 200
                tokens.add(reply.json()["access_token"])
                assert (await browser.http.get(url + "/me")).json()["id"] == "alice"
            assert len(tokens) == 1
        async with Browser(two, fake_url) as stranger:
            assert (await stranger.http.get(three + "/token")).status_code == 401


async def test_background_renewal_refreshes_each_token_once_per_period(
    fake: FakeSpotify, store: Store
) -> None:
    fake.access_ttl = 2  # due at the midpoint: a period of about one second
    refreshes: dict[str, list[float]] = {}
    grant = fake._grants["refresh_token"]

    def watched(form: Any, header: str | None) -> dict[str, Any]:
        body = grant(form, header)
        refreshes.setdefault(form["refresh_token"], []).append(time.monotonic())
        return body

    fake._grants["refresh_token"] = watched
    async with workers(fake, store) as (group, fake_url):
        for i, user in enumerate(["alice", "bob"]):
            async with Browser(group.urls[i], fake_url) as browser:
                await browser.login(user)
                await browser.http.get(group.urls[2] + "/token")  # used on another worker too
        await until(
            lambda: len(refreshes) == 2 and all(len(t) >= 3 for t in refreshes.values()),
            "three renewals of each token",
        )
    for times in refreshes.values():
        gaps = [b - a for a, b in itertools.pairwise(times)]
        # Three workers, one refresh per period: no two refreshes of a token close together.
        assert min(gaps) > 0.5, gaps


async def test_many_requests_on_an_expired_token_across_workers_make_one_refresh(
    fake: FakeSpotify, store: Store
) -> None:
    fake.access_ttl = 1
    async with (
        workers(fake, store, TEST_AUTO_RENEW="0") as (
            group,
            fake_url,
        ),
        Browser(group.urls[0], fake_url) as browser,
    ):
        await browser.login("alice")
        first = (await browser.get("/token")).json()["access_token"]
        await asyncio.sleep(1.0)  # the token's own lifetime: it is expired now
        fake.access_ttl = 3600
        before = fake.requests["token:refresh_token"]
        # Fresh connections for the burst (a pooled one idle for hypercorn's keep-alive timeout
        # may be closed by the server just as it is reused).
        async with httpx.AsyncClient(cookies=browser.http.cookies, timeout=30) as http:
            replies = await asyncio.gather(
                *(http.get(group.urls[i % 3] + "/token") for i in range(200))
            )
    assert {r.status_code for r in replies} == {200}
    tokens = {r.json()["access_token"] for r in replies}
    assert len(tokens) == 1 and first not in tokens
    assert fake.requests["token:refresh_token"] - before == 1


async def test_restarting_every_worker_keeps_every_login(fake: FakeSpotify, store: Store) -> None:
    async with workers(fake, store) as (group, fake_url):
        browsers = [Browser(group.urls[i], fake_url) for i in range(2)]
        for browser, user in zip(browsers, ["alice", "bob"], strict=True):
            await browser.login(user)
        await group.stop()
        await group.start()
        for browser, user in zip(browsers, ["alice", "bob"], strict=True):
            reply = await browser.http.get(group.urls[2] + "/me")
            assert reply.status_code == 200 and reply.json()["id"] == user
            await browser.__aexit__()


async def test_a_rotated_refresh_token_survives_workers_racing(
    fake: FakeSpotify, store: Store
) -> None:
    fake.rotate_confidential = True  # each refresh kills the refresh token it used
    async with workers(fake, store) as (group, fake_url):
        async with Browser(group.urls[0], fake_url) as browser:
            await browser.login("alice")
            for _ in range(5):
                replies = await asyncio.gather(
                    *(browser.http.post(url + "/renew") for url in group.urls)
                )
                assert {r.status_code for r in replies} == {200}, [r.text for r in replies]
            assert (await browser.http.post(group.urls[1] + "/renew")).status_code == 200
            assert (await browser.http.get(group.urls[2] + "/me")).json()["id"] == "alice"


async def _hearing(urls: list[str]) -> None:
    """Wait until every worker hears the store's feed of writes: each connects it when it
    starts serving, a moment after its port opens, and keeps no copy of what it reads before."""
    async with httpx.AsyncClient() as client, asyncio.timeout(WAIT):
        for url in urls:
            while not (await client.get(url + "/worker")).json()["hearing"]:
                await asyncio.sleep(0.05)


@pytest.mark.parametrize("kind", ["redis", "postgresql"])
async def test_a_store_server_down_is_a_clean_503_then_recovery(
    fake: FakeSpotify, kind: str, request: pytest.FixtureRequest, sql_prefix: str
) -> None:
    if kind == "redis":
        require_redis()
        redis = RedisServer(persistent=True)
        redis.start()
        store = Store("redis", redis.url, "down:", redis)
    else:
        store = Store("postgresql", request.getfixturevalue("pg_server").url, sql_prefix)
        store.server = request.getfixturevalue("pg_server")
    try:
        async with workers(fake, store) as (group, fake_url):
            first, others = group.urls[0], group.urls[1:]
            await _hearing(group.urls)  # else the first read of alice's token is not kept
            async with Browser(first, fake_url) as browser, Browser(first, fake_url) as gone:
                await browser.login("alice")
                held = (await browser.get("/token")).json()["access_token"]  # the first reads it
                await gone.login("bob")
                assert (await gone.get("/token")).status_code == 200
                old_cookies = httpx.Cookies(gone.http.cookies)
                assert (await gone.http.post(others[0] + "/logout")).status_code == 200
                async with httpx.AsyncClient(cookies=old_cookies) as replay:
                    async with asyncio.timeout(WAIT):  # the first worker has heard the logout
                        while (await replay.get(first + "/token")).status_code == 200:
                            await asyncio.sleep(0.02)
                store.server.stop()
                # The worker that read alice's token answers from it while the store is away,
                # also once its read cache would have let the copy go (Redis: after 1 s).
                until = time.monotonic() + 1.5
                while time.monotonic() < until:
                    reply = await browser.get("/token")
                    assert reply.status_code == 200, reply.text
                    assert reply.json()["access_token"] == held
                    await asyncio.sleep(0.1)
                for url in others:
                    reply = await browser.http.get(url + "/token")
                    if kind == "redis":  # every worker heard the login's write, record included
                        assert reply.status_code == 200 and reply.json()["access_token"] == held
                    else:  # PostgreSQL's notice names the key only, and these never read it
                        assert reply.status_code == 503
                        assert "login store is unavailable" in reply.text
                # Bob's logout was heard before the store went away (the feed is asynchronous:
                # a copy lives until its news arrives): his old cookie, sent again, gets nothing
                # from what the first worker last knew.
                async with httpx.AsyncClient(cookies=old_cookies) as replay:
                    assert (await replay.get(first + "/token")).status_code == 503
                # A logout while the store is away is not confirmed (a 503), so it cannot be
                # undone by a copy: alice is still logged in when the store is back.
                refused = await browser.http.post(others[0] + "/logout")
                assert refused.status_code == 503 and "login store is unavailable" in refused.text
                store.server.start()
                for url in group.urls:  # no restart of the app needed
                    reply = await browser.http.get(url + "/me")
                    assert reply.status_code == 200 and reply.json()["id"] == "alice"
                assert (await browser.http.get(group.urls[1] + "/worker")).status_code == 200
    finally:
        if kind == "redis":
            store.server.remove()
        elif store.server.stopped():  # the session's server, for the tests after this one
            store.server.start()


async def test_encrypted_tokens_are_not_in_the_store_in_clear(
    fake: FakeSpotify, store: Store
) -> None:
    from cryptography.fernet import Fernet

    key = Fernet.generate_key().decode()
    async with (
        workers(fake, store, TEST_ENCRYPTION_KEYS=key) as (group, fake_url),
        Browser(group.urls[0], fake_url) as browser,
    ):
        await browser.login("alice")
        token = (await browser.http.get(group.urls[1] + "/token")).json()["access_token"]
    raw = await store.raw()
    refresh = next(r for r in fake._refresh)
    assert raw and token.encode() not in raw and refresh.encode() not in raw


async def test_a_logout_on_one_worker_is_seen_by_all_at_once(
    fake: FakeSpotify, store: Store
) -> None:
    async with workers(fake, store) as (group, fake_url):
        async with Browser(group.urls[0], fake_url) as browser:
            await browser.login("alice")
            for url in group.urls:  # every worker has read (and cached) this login
                assert (await browser.http.get(url + "/token")).status_code == 200
            # Log out on one worker: the others drop their cached copy at once (the write
            # published the key), not after the cache's one second.
            await browser.http.post(group.urls[0] + "/logout")
            for url in group.urls:
                assert (await browser.http.get(url + "/status")).json() == {"logged_in": False}
            # And a renewal on one worker is what the others hand out next.
            await browser.login("bob")
            tokens = {
                (await browser.http.get(u + "/token")).json()["access_token"] for u in group.urls
            }
            assert (await browser.http.post(group.urls[1] + "/renew")).status_code == 200
            renewed = {
                (await browser.http.get(u + "/token")).json()["access_token"] for u in group.urls
            }
            assert len(tokens) == 1 and len(renewed) == 1 and tokens != renewed


async def test_reading_a_token_is_one_redis_round_trip(
    fake: FakeSpotify, redis_server: RedisServer, redis_prefix: str
) -> None:
    redis = Redis.from_url(redis_server.url)

    async def calls() -> dict[str, int]:
        info = await redis.info("commandstats")
        return {k.removeprefix("cmdstat_"): v["calls"] for k, v in info.items()}

    store = Store("redis", redis_server.url, redis_prefix, redis_server)
    async with workers(fake, store) as (group, fake_url):
        async with Browser(group.urls[0], fake_url) as browser:
            await browser.login("alice")
            for url in group.urls:  # each worker records this user's use once
                await browser.http.get(url + "/token")
            # A recorded use brings the schedule forward; wait for the renewer to set it back.
            await _settled(redis, f"{redis_prefix}due")
            before = await calls()
            for i in range(60):
                await browser.http.get(group.urls[i % 3] + "/token")
            after = await calls()
    await redis.aclose()
    delta = {k: after.get(k, 0) - before.get(k, 0) for k in after}
    # Every script run was a renewer reading its schedule (one ZREMRANGEBYSCORE each).
    assert delta.get("eval", 0) == delta.get("zremrangebyscore", 0)
    renewer = {"eval", "zrangebyscore", "zremrangebyscore", "zrange", "zscore", "info"}
    renewer |= {"hello", "client", "select", "ping"}  # a new pooled connection's handshake
    per_request = {k: v for k, v in delta.items() if v and k not in renewer}
    # At most one read per request (none while a worker's copy is fresh), nothing else.
    assert set(per_request) <= {"hmget"} and per_request.get("hmget", 0) <= 60
