"""Issue 20, round 3, finding 8: a token renewed while the store was away, and not saved yet,
is served from the process for ``last_known_for`` seconds at most (30 s), like the read
cache's copy after a lost change feed. Real HTTP, real Redis, one worker cut off from it."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

from quart import Quart

from quart_spotify_auth import SpotifyAuth
from quart_spotify_auth.serving import free_port, serve
from quart_spotify_auth.stores.redis import RedisTokenStore
from quart_spotify_auth.testing import FakeClock, FakeSpotify, log_in

from .apps import served_worker, two_workers
from .servers import RedisServer, until

QUICK: dict[str, Any] = {
    "SPOTIFY_HTTP_TIMEOUT": 2.0,
    "SPOTIFY_RETRIES": 0,
    "SPOTIFY_RETRY_AFTER_CAP": 0,
}


class Cable:
    """A TCP proxy from one worker to Redis; :meth:`cut` drops its connections and refuses new
    ones (that worker alone is cut off), :meth:`mend` lets them through again."""

    def __init__(self, port: int) -> None:
        self.target = port
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.cut_off = False
        self._writers: set[asyncio.StreamWriter] = set()

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[Cable]:
        server = await asyncio.start_server(self._pipe, "127.0.0.1", self.port)
        async with server:
            yield self
            self.cut()

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.cut_off:
            writer.close()
            return
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target)
        self._writers |= {writer, up_writer}
        await asyncio.gather(
            _copy(reader, up_writer), _copy(up_reader, writer), return_exceptions=True
        )

    def cut(self) -> None:
        self.cut_off = True
        for writer in self._writers:
            writer.close()
        self._writers.clear()

    def mend(self) -> None:
        self.cut_off = False


async def _copy(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    finally:
        writer.close()


def _worker(
    fake_url: str, store_url: str, prefix: str, clock: FakeClock
) -> tuple[Quart, SpotifyAuth]:
    """A worker on its own connection to Redis."""
    return served_worker(fake_url, RedisTokenStore(store_url, prefix=prefix), clock=clock, **QUICK)


async def test_a_renewed_unsaved_token_is_served_30_s_at_most_after_a_logout_elsewhere(
    fake: FakeSpotify, redis_server: RedisServer, redis_prefix: str
) -> None:
    fake.rotate_confidential = True  # the refresh retires the refresh token: never dropped
    clock = FakeClock()
    async with serve(fake) as fake_url, Cable(redis_server.port).running() as cable:
        app_a, spotify_a = _worker(fake_url, cable.url, redis_prefix, clock)
        app_b, spotify_b = _worker(fake_url, redis_server.url, redis_prefix, clock)
        refresher = spotify_a.core(app_a).refresher
        async with two_workers(app_a, app_b) as (a, b, http):
            await log_in(app_a.test_client(), fake, identity="u")
            first = (await http.get(a + "/token")).json()["access_token"]
            fake.slow = 0.4  # Spotify takes its time; A is cut off from Redis meanwhile
            renew = asyncio.ensure_future(http.post(a + "/renew"))
            await until(lambda: fake.requests["token"] == 2)
            cable.cut()
            assert (await renew).status_code == 200  # kept in A, unsaved
            fake.slow = 0
            renewed = (await http.get(a + "/token")).json()["access_token"]
            assert renewed != first

            assert (await http.post(b + "/logout")).json() == {"logged_in": False}
            clock.advance(29)  # A cannot know of the logout: it serves what it holds, a while
            assert (await http.get(a + "/token")).json()["access_token"] == renewed
            assert refresher.cached("user:u") is not None  # also to Flask's request threads

            clock.advance(2)  # 31 s unsaved: past the bound, only the store can say
            away = await http.get(a + "/token")
            assert away.status_code == 503, away.text  # the store is away for A: try again
            assert renewed not in away.text
            assert refresher.cached("user:u") is None

            cable.mend()  # A reaches Redis again: the logout stands, nothing is resurrected
            gone = await http.get(a + "/token")
            assert gone.status_code == 401, gone.text
            assert await spotify_b.core(app_b).store.get("user:u") is None
