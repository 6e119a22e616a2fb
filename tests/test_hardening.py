"""What an adversarial review and real servers found: tokens that must not be lost, resources
that must not run out. Each test failed before its fix."""

from __future__ import annotations

import asyncio
import tracemalloc
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

import pytest

from quart_spotify_auth import MemoryTokenStore, StoreUnavailable, TokenRecord
from quart_spotify_auth.routes import spotify_blueprint
from quart_spotify_auth.serving import free_port, serve
from quart_spotify_auth.stores.base import Due
from quart_spotify_auth.stores.redis import RedisTokenStore
from quart_spotify_auth.testing import FakeClock, FakeSpotify, SignalRecorder, log_in

from ._httplib import httpx
from .apps import make_app, served_worker, two_workers
from .conftest import require_redis
from .servers import RedisServer, until

#: A short join window for the tests: 1 s for a refresh, all of it, claims lasting as long.
QUICK = {"SPOTIFY_HTTP_TIMEOUT": 1.0, "SPOTIFY_RETRIES": 0, "SPOTIFY_RETRY_AFTER_CAP": 0}


@pytest.fixture(name="fake_url")
async def _fake_url(fake: FakeSpotify) -> AsyncIterator[str]:
    fake.rotate_confidential = True  # every refresh retires the refresh token it used
    async with serve(fake) as url:
        yield url


# -- 1. A rotated refresh token outliving the claim of a slow reply ---------------------------


async def test_a_slow_reply_keeps_its_claim_and_no_worker_burns_the_rotated_token(
    fake: FakeSpotify, fake_url: str, redis_server: RedisServer, redis_prefix: str
) -> None:
    stores = [RedisTokenStore(redis_server.url, prefix=redis_prefix) for _ in range(2)]
    (app_a, spotify_a), (app_b, _) = (
        served_worker(fake_url, store, SPOTIFY_AUTO_RENEW=False, **QUICK) for store in stores
    )
    async with two_workers(app_a, app_b) as (a, b, http):
        await log_in(app_a.test_client(), fake, identity="u")
        first = (await http.get(a + "/token")).json()["access_token"]
        fake.trickle = 2.5  # headers at once, the body over 2.5 s: each read is in time
        renew_a = asyncio.ensure_future(http.post(a + "/renew"))
        await until(lambda: fake.requests["token:refresh_token"] == 1)  # at Spotify: rotated
        await asyncio.sleep(1.3)  # past the claim's first lifetime (1 s), A still reading
        fake.trickle = 0
        reply_b = await http.post(b + "/renew")
        assert reply_b.status_code in (200, 503), reply_b.text  # never "log in again" (401)
        # A's request gave up waiting after 1 s (503); its refresh goes on and lands.
        assert (await renew_a).status_code in (200, 503)
        await spotify_a.core(app_a).refresher.wait_for_inflight(10)
        tokens = {(await http.get(url + "/token")).json()["access_token"] for url in (a, b)}
        assert len(tokens) == 1 and first not in tokens
        assert (await http.post(b + "/renew")).status_code == 200  # the rotated token lives
    assert fake.requests["refused:invalid_grant"] == 0
    assert spotify_a.core(app_a).refresher.deferred._releases == {}


# -- 2. A store outage longer than the save window, during a rotating refresh ----------------


async def test_a_token_renewed_while_redis_is_down_is_served_and_saved_when_it_is_back(
    fake: FakeSpotify, fake_url: str
) -> None:
    require_redis()
    redis = RedisServer(persistent=True)
    redis.start()
    try:
        store = RedisTokenStore(redis.url, prefix="outage:")
        app, spotify = served_worker(fake_url, store, **{**QUICK, "SPOTIFY_HTTP_TIMEOUT": 2.0})
        async with serve(app, port=app.config["TEST_PORT"]) as url, httpx.AsyncClient() as http:
            await log_in(app.test_client(), fake, identity="u")
            first = (await http.get(url + "/token")).json()["access_token"]
            fake.slow = 0.4  # Spotify takes its time; Redis goes away meanwhile
            renew = asyncio.ensure_future(http.post(url + "/renew", timeout=30))
            await until(lambda: fake.requests["token"] == 2)
            redis.stop()
            reply = await renew  # the save window passed with Redis away: kept, and served
            assert reply.status_code == 200, reply.text
            fake.slow = 0
            during = (await http.get(url + "/token")).json()["access_token"]
            assert during != first  # served from the process while Redis is away
            redis.start()
            refresher = spotify.core(app).refresher
            await until(lambda: not refresher.deferred.renewed("user:u"))  # the renewer saved it
            saved = await store.get("user:u")
            assert saved is not None and saved.access_token == during
            assert (await http.post(url + "/renew")).status_code == 200
            assert (await http.get(url + "/token")).status_code == 200
        assert fake.requests["refused:invalid_grant"] == 0
    finally:
        redis.remove()


# -- 3. An authorization code is never sent twice ------------------------------------------------


async def test_a_code_whose_reply_was_lost_is_not_sent_again(fake: FakeSpotify) -> None:
    async with serve(fake) as fake_url:
        port = free_port()
        app, _ = make_app(
            accounts_url=fake_url,
            redirect_uri=f"http://127.0.0.1:{port}/callback/",
            SPOTIFY_HTTP_TIMEOUT=0.5,
        )
        async with serve(app, port=port) as url, httpx.AsyncClient() as http:
            authorize = (await http.get(url + "/login")).headers["location"]
            query = dict(httpx.URL(authorize).params)
            consent = await http.post(fake_url + "/authorize", data={**query, "user": "alice"})
            fake.reply_delay = 2.0  # the code is used up, then the reply is late
            reply = await http.get(consent.headers["location"])
    assert reply.status_code == 503
    assert "cannot be sent twice" in reply.text and "Start the login again" in reply.text
    assert fake.requests["token:authorization_code"] == 1
    assert fake.requests["refused:invalid_grant"] == 0


# -- 4. Login spam fills nothing and evicts no real login ------------------------------------


@pytest.mark.parametrize("kind", ["memory", "redis"])
async def test_login_spam_stores_nothing_and_a_real_login_still_finishes(
    fake: FakeSpotify, kind: str, request: pytest.FixtureRequest, redis_prefix: str
) -> None:
    options: dict[str, Any] = {}
    if kind == "redis":
        server: RedisServer = request.getfixturevalue("redis_server")
        options["store"] = RedisTokenStore(server.url, prefix=redis_prefix)
    app, spotify = make_app(transport=httpx.ASGITransport(app=fake), **options)
    app.register_blueprint(spotify_blueprint(spotify))
    async with app.test_app():
        real = app.test_client()
        authorize = (await real.get("/login")).headers["Location"]
        callback = httpx.URL(fake.decide(authorize, user="alice"))
        tracemalloc.start()
        before = tracemalloc.get_traced_memory()[0]
        long_next = "/" + "n" * 60_000
        for _ in range(300):  # strangers, each a fresh browser, each with a huge next
            reply = await app.test_client().get("/spotify/login", query_string={"next": long_next})
            assert reply.status_code == 302
        grown = tracemalloc.get_traced_memory()[0] - before
        tracemalloc.stop()
        assert grown < 1_000_000, grown  # nothing kept per login (300 x 60 KB = 18 MB before)
        reply = await real.get(callback.path, query_string=dict(callback.params))
        assert reply.status_code == 302
        assert (await real.get("/token")).status_code == 200
        if kind == "redis":
            keys = await spotify.core(app).store.redis.keys(f"{redis_prefix}*")  # type: ignore[attr-defined]
            kept = [b":t:" in k or k.endswith((b"due", b"used", b"versions")) for k in keys]
            # and the real login's used state (claim:state:...), which no spam /login made
            assert kept.count(False) == 1 and b":claim:state:" in keys[kept.index(False)]


# -- 5. Nothing grows without end ------------------------------------------------------------------


async def test_unused_logins_are_forgotten_with_background_renewal_off(
    fake: FakeSpotify, signals: SignalRecorder
) -> None:
    clock = FakeClock()
    fake.clock = clock
    app, spotify = make_app(
        transport=httpx.ASGITransport(app=fake), clock=clock, SPOTIFY_AUTO_RENEW=False
    )
    async with app.test_app():
        clients = [app.test_client() for _ in range(50)]
        for client in clients:
            await log_in(client, fake)
        assert (await clients[0].get("/token")).status_code == 200  # lazily refreshed on use
        store = spotify.core(app).store
        clock.advance(20 * 86400)
        assert (await clients[0].get("/token")).status_code == 200  # one stays in use
        clock.advance(15 * 86400)  # the others: unused for 35 days, past the idle TTL (30)
        spotify.core(app).renewer.wake()
        await signals.wait("login_forgotten", 49)
        assert len(store._records) == 1  # type: ignore[attr-defined]
        assert (await clients[0].get("/token")).status_code == 200
        assert (await clients[1].get("/token")).status_code == 401


async def test_the_last_use_stamps_of_a_process_are_bounded(fake: FakeSpotify) -> None:
    from quart_spotify_auth import refresh

    app, spotify = make_app(transport=httpx.ASGITransport(app=fake))
    refresher = spotify.core(app).refresher
    original, refresh.MAX_USE_STAMPS = refresh.MAX_USE_STAMPS, 10
    try:
        async with app.test_app():
            for _ in range(30):
                await log_in(app.test_client(), fake)
        assert len(refresher._use_stamps) <= 10
    finally:
        refresh.MAX_USE_STAMPS = original


# -- 11. A shutdown that a driver's swallowed cancellation cannot hang --------------------------


class _SwallowsCancellation(MemoryTokenStore):
    """A store whose schedule read turns a cancellation into a store error, as a driver may."""

    entered = asyncio.Event()

    async def due(self, now: float, limit: int) -> Due:
        self.entered.set()
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            raise StoreUnavailable() from None
        raise AssertionError("unreachable")


async def test_the_renewer_stops_though_its_store_swallows_the_cancellation(
    fake: FakeSpotify,
) -> None:
    store = _SwallowsCancellation()
    store.entered = asyncio.Event()
    app, _ = make_app(transport=httpx.ASGITransport(app=fake), store=store)
    async with asyncio.timeout(10):  # before: the renewer went on, and the shutdown hung
        async with app.test_app():
            await store.entered.wait()


async def test_the_redis_listener_stops_though_redis_py_swallows_the_cancellation(
    redis_server: RedisServer, redis_prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from redis.asyncio.client import PubSub
    from redis.exceptions import ConnectionError as RedisConnectionError

    entered = asyncio.Event()

    async def subscribe(self: PubSub, *args: Any, **kwargs: Any) -> None:
        entered.set()
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            raise RedisConnectionError("Connection closed by server.") from None

    monkeypatch.setattr(PubSub, "subscribe", subscribe)
    store = RedisTokenStore(redis_server.url, prefix=redis_prefix)
    await store.open()
    await entered.wait()
    async with asyncio.timeout(10):
        await store.close()


# -- 6. Encryption at rest binds each record to its key --------------------------------------


async def test_an_encrypted_record_is_bound_to_its_key(
    redis_server: RedisServer, redis_prefix: str
) -> None:
    from cryptography.fernet import Fernet

    key = Fernet.generate_key()
    store = RedisTokenStore(redis_server.url, prefix=redis_prefix, encryption_keys=[key])
    clear = RedisTokenStore(redis_server.url, prefix=redis_prefix)  # writes in clear
    now = 1_000_000.0
    record = TokenRecord("victims-access", "victims-refresh", now + 3600, now, frozenset(), now)
    await store.put("browser:victim", record)
    redis = store.redis
    # Someone with write access to Redis, and no key: the victim's record under their own key,
    raw: dict[Any, Any] = await redis.hgetall(f"{redis_prefix}t:browser:victim")
    await redis.hset(f"{redis_prefix}t:browser:attacker", mapping=raw)
    assert await store.get("browser:attacker") is None
    # and a record of their own choosing, in clear, under the victim's key.
    await clear.put("browser:victim", replace(record, access_token="attackers-access"))
    assert await store.get("browser:victim") is None
    # While migrating, records in clear are read (and rewritten encrypted when renewed).
    migrating = RedisTokenStore(
        redis_server.url, prefix=redis_prefix, encryption_keys=[key], migrating=True
    )
    found = await migrating.get("browser:victim")
    assert found is not None and found.access_token == "attackers-access"
    for each in (store, clear, migrating):
        await each.close()


# -- 8. An identity that is empty, or not text ---------------------------------------------------


async def test_an_empty_identity_is_no_identity(fake: FakeSpotify) -> None:
    app, _ = make_app(transport=httpx.ASGITransport(app=fake), identity=lambda: "")
    async with app.test_app():
        first, second = app.test_client(), app.test_client()
        await log_in(first, fake, "alice")
        assert (await first.get("/token")).status_code == 200
        assert (await second.get("/token")).status_code == 401  # not alice's token


async def test_an_identity_that_is_not_text_still_keys_its_own_login(
    fake: FakeSpotify, redis_server: RedisServer, redis_prefix: str
) -> None:
    odd = "user-\ud800"  # a lone surrogate, as a header decoded with surrogateescape gives
    store = RedisTokenStore(redis_server.url, prefix=redis_prefix)
    app, _ = make_app(transport=httpx.ASGITransport(app=fake), store=store, identity=lambda: odd)
    async with app.test_app():
        client = app.test_client()
        await log_in(client, fake, "bob", identity=odd)
        reply = await client.get("/token")
        assert reply.status_code == 200
        assert (await client.get("/me")).status_code == 200
        assert (await (await client.get("/me")).get_json())["id"] == "bob"
