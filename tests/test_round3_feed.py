"""Issue 20, round 3, finding 9: a change feed whose sockets stay open but carry no bytes (a
blackhole: a dropped route, a stalled NAT) is noticed within two heartbeats, and this
process's copies are then no longer served as current. Real Redis and PostgreSQL behind a
TCP proxy that can freeze; Redis over real HTTP, PostgreSQL at the store level (its requests
on a blackholed connection wait for the database, which is not this finding)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from typing import Any, cast

import pytest
from redis.asyncio.client import PubSub

from quart_spotify_auth import StoreUnavailable, TokenRecord
from quart_spotify_auth.serving import free_port, serve
from quart_spotify_auth.stores.cache import CachedRecords, ReadCache
from quart_spotify_auth.stores.redis import RedisTokenStore
from quart_spotify_auth.stores.sql import SQLTokenStore
from quart_spotify_auth.testing import FakeClock, FakeSpotify, log_in

from .apps import served_worker, two_workers
from .conftest import FeedLosses
from .servers import PostgreSQLServer, RedisServer, until

QUICK = {"SPOTIFY_HTTP_TIMEOUT": 2.0, "SPOTIFY_RETRIES": 0, "SPOTIFY_RETRY_AFTER_CAP": 0}

#: The tests' heartbeat (seconds): a silent feed is noticed in a second, and a loaded machine
#: still answers a probe within one.
BEAT = 0.5


class Freezer:
    """A TCP proxy to ``port``; :meth:`freeze` keeps its connections (and new ones) open but
    passes no byte either way until :meth:`thaw`: what a blackholed route looks like."""

    def __init__(self, port: int) -> None:
        self.target = port
        self.port = free_port()
        self._flowing = asyncio.Event()
        self._flowing.set()
        self._writers: set[asyncio.StreamWriter] = set()

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[Freezer]:
        server = await asyncio.start_server(self._pipe, "127.0.0.1", self.port)
        async with server:
            try:
                yield self
            finally:
                self.thaw()
                for writer in self._writers:
                    writer.close()

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target)
        self._writers |= {writer, up_writer}
        await asyncio.gather(
            self._copy(reader, up_writer), self._copy(up_reader, writer), return_exceptions=True
        )

    async def _copy(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                await self._flowing.wait()  # frozen: not even read, as the kernel's buffers
                data = await reader.read(65536)
                await self._flowing.wait()
                if not data:
                    break
                writer.write(data)
                await writer.drain()
        finally:
            writer.close()

    def freeze(self) -> None:
        self._flowing.clear()

    def thaw(self) -> None:
        self._flowing.set()


def test_the_default_heartbeat_notices_a_silent_feed_within_30_s() -> None:
    """A quiet feed is asked for a sign of life after one heartbeat, and dropped when a
    second passes unanswered: two heartbeats at most."""
    assert ReadCache.heartbeat > 0 and 2 * ReadCache.heartbeat <= 30


@pytest.mark.parametrize("kind", ["redis", "postgresql"])
async def test_a_quiet_feed_stays_up_through_its_heartbeats(
    kind: str,
    request: pytest.FixtureRequest,
    monkeypatch: pytest.MonkeyPatch,
    redis_prefix: str,
    sql_prefix: str,
    feed_losses: FeedLosses,
) -> None:
    """Nothing written for several heartbeats: each probe (a PING, a ``SELECT 1``) is
    answered, and the feed is never dropped for its quiet."""
    store: RedisTokenStore | SQLTokenStore
    if kind == "redis":
        store = RedisTokenStore(request.getfixturevalue("redis_server").url, prefix=redis_prefix)
        owner: Any = PubSub
        name = "ping"
    else:
        owner = pytest.importorskip("asyncpg").Connection
        store = SQLTokenStore(request.getfixturevalue("pg_server").url, prefix=sql_prefix)
        name = "fetchval"
    probe, probes = getattr(owner, name), []

    async def counted(*args: Any, **kwargs: Any) -> Any:
        probes.append(args)
        return await probe(*args, **kwargs)

    monkeypatch.setattr(owner, name, counted)
    store.cache.heartbeat = BEAT
    lost = feed_losses(store.cache)
    await store.open()
    try:
        await until(lambda: store.cache.listening, "the feed never came up")
        await until(lambda: len(probes) >= 4, "the quiet feed was never probed")
        assert lost == [] and store.cache.listening
    finally:
        await store.close()


async def test_a_blackholed_redis_feed_is_noticed_and_a_logout_elsewhere_is_not_served(
    fake: FakeSpotify, redis_server: RedisServer, redis_prefix: str
) -> None:
    clock = FakeClock()
    async with serve(fake) as fake_url, Freezer(redis_server.port).running() as proxy:
        # A copy good for a minute: only the feed tells A it is no longer current.
        store_a = RedisTokenStore(
            f"redis://127.0.0.1:{proxy.port}/0", prefix=redis_prefix, timeout=0.5, cache_ttl=60
        )
        store_a.cache.heartbeat = BEAT
        store_a.cache.last_known_for = 1.0  # the bound after a lost feed, short for the test
        app_a, spotify_a = served_worker(fake_url, store_a, clock=clock, **QUICK)
        store_b = RedisTokenStore(redis_server.url, prefix=redis_prefix)
        app_b, _ = served_worker(fake_url, store_b, clock=clock, **QUICK)
        refresher = spotify_a.core(app_a).refresher
        async with contextlib.AsyncExitStack() as serving:
            a, b, http = await serving.enter_async_context(two_workers(app_a, app_b))
            await until(lambda: store_a.cache.listening, "A's feed never came up")
            await log_in(app_a.test_client(), fake, identity="u")
            token = (await http.get(a + "/token")).json()["access_token"]
            await until(lambda: refresher.cached("user:u") is not None, "A holds no copy")

            proxy.freeze()  # A's sockets stay open, and carry nothing
            assert (await http.post(b + "/logout")).json() == {"logged_in": False}
            await until(lambda: not store_a.cache.listening, "the silent feed went unnoticed")
            assert refresher.cached("user:u") is None  # no fresh copy any more
            await until(lambda: store_a.cache.last_known("user:u") is None, "kept past its bound")
            away = await http.get(a + "/token")
            assert away.status_code == 503, away.text  # the store is away for A: try again
            assert token not in away.text

            proxy.thaw()  # bytes flow again: the feed comes back, and the logout stands
            await until(lambda: store_a.cache.listening, "the feed did not come back")
            gone = await http.get(a + "/token")
            assert gone.status_code == 401, gone.text

            proxy.freeze()  # and the workers shut down while A is blackholed stop, bounded
            await until(lambda: not store_a.cache.listening, "the second silence went unnoticed")
            async with asyncio.timeout(30):  # a ceiling, not an expected time
                await serving.aclose()
            proxy.thaw()


async def test_a_blackholed_postgresql_feed_is_noticed_and_its_copies_are_dropped(
    pg_server: PostgreSQLServer, sql_prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    store_b = SQLTokenStore(pg_server.url, prefix=sql_prefix)
    await store_b.open()
    async with Freezer(pg_server.port).running() as proxy:
        proxied = pg_server.url.replace(f":{pg_server.port}/", f":{proxy.port}/")
        store_a = SQLTokenStore(proxied, prefix=sql_prefix)
        store_a.cache.heartbeat = BEAT
        store_a.cache.last_known_for = 1.0
        records_a, records_b = CachedRecords(store_a), CachedRecords(store_b)
        try:
            await store_a.open()
            await until(lambda: store_a.cache.listening, "A's feed never came up")
            now, seen = time.time(), store_a.cache.generation
            await records_b.put("k", TokenRecord("a", "r", now + 3600, now, frozenset(), now))
            await until(lambda: store_a.cache.generation > seen, "A never heard the write")
            assert await records_a.get("k") is not None
            assert store_a.cache.get("k") is not None  # A holds a copy (for 30 s)

            proxy.freeze()
            assert await records_b.delete("k")  # a logout, on another host
            await until(lambda: not store_a.cache.listening, "the silent feed went unnoticed")
            assert store_a.cache.get("k") is None
            assert "change feed was lost (TimeoutError)" in caplog.text  # the operator is told
            await until(lambda: store_a.cache.last_known("k") is None, "kept past its bound")

            proxy.thaw()
            await until(lambda: store_a.cache.listening, "the feed did not come back")
            assert await records_a.get("k") is None  # the logout stands

            proxy.freeze()  # a store shut down while blackholed stops, bounded
            await until(lambda: not store_a.cache.listening, "the second silence went unnoticed")
            async with asyncio.timeout(30):  # a ceiling, not an expected time
                await store_a.close()
        finally:
            proxy.thaw()
            await store_a.close()
            await store_b.close()


async def test_a_request_to_a_blackholed_postgresql_is_a_503_not_a_hang(
    pg_server: PostgreSQLServer, sql_prefix: str
) -> None:
    """A statement the server never answers times out (the 5 s ``command_timeout`` of the
    engines the store makes): a 503 rather than a request that waits for ever, and the store
    works again once bytes flow."""
    async with Freezer(pg_server.port).running() as proxy:
        proxied = pg_server.url.replace(f":{pg_server.port}/", f":{proxy.port}/")
        store = SQLTokenStore(proxied, prefix=sql_prefix, cache_ttl=0)
        await store.open()
        try:
            assert await store.get("k") is None  # connected, tables made
            proxy.freeze()
            async with asyncio.timeout(60):  # a ceiling, not an expected time
                with pytest.raises(StoreUnavailable):
                    await store.get("k")
            proxy.thaw()
            async with asyncio.timeout(60):
                assert await store.get("k") is None
        finally:
            proxy.thaw()
            await store.close()


async def test_a_postgresql_feed_ended_by_the_server_is_logged_and_comes_back(
    pg_server: PostgreSQLServer, sql_prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    """The server ends the ``LISTEN`` connection (a restart, ``pg_terminate_backend``): the
    loss is logged as a silent one is, the copies stop being current, and the feed returns."""
    from sqlalchemy import text
    from sqlalchemy.ext.asyncio import AsyncEngine

    store = SQLTokenStore(pg_server.url, prefix=sql_prefix)
    await store.open()
    try:
        await until(lambda: store.cache.listening, "the feed never came up")
        ended = "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE query LIKE 'LISTEN%'"
        async with cast(AsyncEngine, store.engine).begin() as connection:
            assert (await connection.execute(text(ended))).scalar()
        await until(lambda: "change feed was lost" in caplog.text, "the lost feed was not told")
        await until(lambda: store.cache.listening, "the feed did not come back")
    finally:
        await store.close()
