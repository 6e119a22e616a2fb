"""Renewal: in the background, single-flight, through Spotify's faults."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from quart import Quart

from quart_spotify_auth import MemoryTokenStore, SpotifyAuth, StoreUnavailable, TokenRecord
from quart_spotify_auth import signals as signal_set
from quart_spotify_auth.adapter import build_core
from quart_spotify_auth.core import Core
from quart_spotify_auth.grants import APP_KEY
from quart_spotify_auth.stores.redis import RedisTokenStore
from quart_spotify_auth.testing import FakeClock, FakeSpotify, SignalRecorder

from ._httplib import httpx
from .apps import make_app
from .conftest import Stack, login_in_process
from .servers import RedisServer


def _scheduled(core: Core) -> int:
    store = core.store
    assert isinstance(store, MemoryTokenStore)
    return len(store._due)


def _only_record(core: Core) -> TokenRecord:
    records = list(core.store._records.values())  # type: ignore[attr-defined]
    assert len(records) == 1
    record: TokenRecord = records[0]
    return record


def test_due_is_before_expiry_never_before_the_midpoint() -> None:
    core = build_core({"SPOTIFY_CLIENT_ID": "id"}, {}, secret_key="k")
    hour = TokenRecord("a", "r", 3600.0, 0.0, frozenset(), 0.0)
    dues = [core.refresher.due("user:u", hour) for _ in range(200)]
    assert all(d is not None and 3270 <= d <= 3300 for d in dues)  # margin + up to 10% jitter
    assert len(set(dues)) > 1  # jittered
    short = TokenRecord("a", "r", 4.0, 0.0, frozenset(), 0.0)
    assert all(core.refresher.due("user:u", short) == 2.0 for _ in range(20))
    assert core.refresher.due("user:u", TokenRecord("a", None, 4.0, 0.0, frozenset(), 0.0)) is None
    assert core.refresher.due(APP_KEY, TokenRecord("a", None, 4.0, 0.0, frozenset(), 0.0)) == 2.0


@pytest.mark.parametrize("stack", [{}], indirect=True)
async def test_renewed_without_any_request(stack: Stack, signals: SignalRecorder) -> None:
    stack.fake.access_ttl = 2  # renewed at the midpoint, one second in

    async with stack.browser() as browser:
        await browser.login()
        first = (await browser.get("/token")).json()["access_token"]
        await signals.wait("token_renewed", in_background=True)
        assert stack.fake.requests["token:refresh_token"] == 1
        stack.fake.reset_counters()
        second = (await browser.get("/token")).json()
        assert second["access_token"] != first
        assert stack.fake.requests["token"] == 0  # served from the store, no token request


@pytest.mark.parametrize("stack", [{"SPOTIFY_AUTO_RENEW": False}], indirect=True)
async def test_many_callers_on_an_expired_token_make_one_request_over_http(
    stack: Stack,
) -> None:
    stack.fake.access_ttl = 1
    core = stack.spotify.core(stack.app)
    async with stack.browser() as browser:
        await browser.login()
        record = _only_record(core)
        # Let the token expire by waiting for the clock, not for a guess.
        while core.clock() < record.expires_at:
            await asyncio.sleep(record.expires_at - core.clock())
        stack.fake.access_ttl = 3600  # the renewed token must outlive the burst
        replies = await asyncio.gather(*(browser.get("/token") for _ in range(200)))
    assert {r.status_code for r in replies} == {200}
    assert len({r.json()["access_token"] for r in replies}) == 1
    assert stack.fake.requests["token:refresh_token"] == 1
    # No background renewal when it is off: the schedule only says when it would be forgotten.
    upcoming = (await core.store.due(0, 0)).next
    assert upcoming is not None and upcoming > core.clock() + 29 * 86400


@pytest.fixture(name="clocked")
async def _clocked(fake: FakeSpotify) -> AsyncIterator[tuple[Quart, SpotifyAuth, FakeClock]]:
    """An in-process app whose clock is the fake's, so tests can jump time."""
    clock = FakeClock()
    fake.clock = clock
    app, spotify = make_app(transport=httpx.ASGITransport(app=fake), clock=clock)
    async with app.test_app():
        yield app, spotify, clock


async def test_rotation_across_two_refreshes(
    clocked: tuple[Quart, SpotifyAuth, FakeClock], fake: FakeSpotify
) -> None:
    app, spotify, _ = clocked
    fake.rotate_confidential = True
    client = app.test_client()
    await login_in_process(client, fake)
    core = spotify.core(app)
    seen = [_only_record(core).refresh_token]
    for _ in range(2):
        assert (await client.post("/renew")).status_code == 200
        seen.append(_only_record(core).refresh_token)
    assert len(set(seen)) == 3
    assert (await client.get("/me")).status_code == 200


async def test_revocation_drops_the_tokens_and_tells_the_app(
    clocked: tuple[Quart, SpotifyAuth, FakeClock],
    fake: FakeSpotify,
    signals: SignalRecorder,
) -> None:
    app, spotify, clock = clocked
    dropped: list[str] = []
    spotify.on_reauthorization_required(dropped.append)
    client = app.test_client()
    await login_in_process(client, fake)
    core = spotify.core(app)
    record = _only_record(core)
    assert record.reauthorize_by > record.authorized_at
    fake.revoke("alice")
    clock.advance(3400)
    core.renewer.wake()
    await signals.wait("reauthorization_required")
    assert not core.store._records  # type: ignore[attr-defined]
    assert dropped and dropped[0].startswith("browser:")
    response = await client.get("/token")
    assert response.status_code == 401
    assert "Log in with Spotify again" in await response.get_data(as_text=True)
    assert fake.requests["token:refresh_token"] == 1  # never retried


@pytest.mark.parametrize(
    ("fault", "arg"),
    [("fail_next", 2), ("garbage_next", 1), ("rate_limit_next", 1)],
)
async def test_background_rides_out_transient_faults(
    clocked: tuple[Quart, SpotifyAuth, FakeClock],
    fake: FakeSpotify,
    fault: str,
    arg: int,
    signals: SignalRecorder,
) -> None:
    app, spotify, clock = clocked
    client = app.test_client()
    first = await login_in_process(client, fake)
    core = spotify.core(app)
    getattr(fake, fault)(arg)
    clock.advance(3400)
    core.renewer.wake()
    await signals.wait("token_renewed", in_background=True)
    token = await (await client.get("/token")).get_json()
    assert token["access_token"] != first["access_token"]


async def test_a_429_in_the_background_pauses_every_renewal_until_its_retry_after(
    clocked: tuple[Quart, SpotifyAuth, FakeClock], fake: FakeSpotify, signals: SignalRecorder
) -> None:
    """Spotify's rate limit is the app's: after a 429 asking for longer than the token has
    left, no renewal of any user is sent before its Retry-After; then both are renewed."""
    app, spotify, clock = clocked
    core = spotify.core(app)
    first, second = app.test_client(), app.test_client()
    await login_in_process(first, fake)
    clock.advance(1000)
    await login_in_process(second, fake, user="bob")
    clock.advance(2500)  # the first has 100 s left (due), the second 1,100 s (not yet)
    fake.rate_limit_next(1, retry_after=3600)
    sent = fake.requests["token"]
    core.renewer.wake()
    await signals.wait("renewal_failed")
    assert core.renewer.paused_until == clock() + 3600
    clock.advance(1000)  # the second is due now, within the pause
    core.renewer.wake()
    await signals.wait("renewal_skipped", reason="rate-limited")
    assert fake.requests["token"] == sent + 1  # the 429, and nothing since
    upcoming = (await core.store.due(0, 0)).next
    assert upcoming is not None and upcoming >= core.renewer.paused_until
    clock.advance(2700)  # past the pause
    core.renewer.wake()
    await signals.wait("token_renewed", 2, in_background=True)
    assert fake.requests["token:refresh_token"] == 2
    for client in (first, second):
        assert (await client.get("/token")).status_code == 200


async def test_a_429_met_midway_through_a_batch_stops_the_rest_of_it(
    fake: FakeSpotify, signals: SignalRecorder
) -> None:
    """Three users due at once, one renewal at a time: the first meets a long 429, and the
    two waiting for its slot are put off, not sent into the limit one after the other."""
    clock = FakeClock()
    fake.clock = clock
    app, spotify = make_app(
        transport=httpx.ASGITransport(app=fake), clock=clock, SPOTIFY_RENEW_CONCURRENCY=1
    )
    async with app.test_app():
        core = spotify.core(app)
        for _ in range(3):  # three browsers
            await login_in_process(app.test_client(), fake)
        clock.advance(3500)  # all three due
        fake.rate_limit_next(10, retry_after=3600)
        sent = fake.requests["token"]
        core.renewer.wake()
        await signals.wait("renewal_skipped", 2, reason="rate-limited")
        assert fake.requests["token"] == sent + 1  # one 429, and nothing more
        assert core.renewer.paused_until == clock() + 3600


async def test_a_429_a_request_could_not_wait_out_pauses_the_renewer(
    clocked: tuple[Quart, SpotifyAuth, FakeClock], fake: FakeSpotify
) -> None:
    app, spotify, clock = clocked
    client = app.test_client()
    await login_in_process(client, fake)
    clock.advance(3700)  # expired: the request refreshes it itself
    fake.rate_limit_next(1, retry_after=600)
    response = await client.get("/token")
    assert response.status_code == 503 and response.headers["Retry-After"] == "600"
    assert spotify.core(app).renewer.paused_until == clock() + 600


@pytest.mark.parametrize(
    "stack", [{"SPOTIFY_HTTP_TIMEOUT": 0.2, "SPOTIFY_RETRIES": 0}], indirect=True
)
async def test_reply_slower_than_the_timeout_keeps_the_token_and_retries(
    stack: Stack,
    signals: SignalRecorder,
) -> None:
    stack.fake.access_ttl = 2
    core = stack.spotify.core(stack.app)
    async with stack.browser() as browser:
        await browser.login()
        first = (await browser.get("/token")).json()["access_token"]
        stack.fake.slow = 1.0  # slower than the timeout
        await signals.wait("renewal_failed")
        stack.fake.slow = 0
        assert _only_record(core).access_token == first  # kept through the fault
        await signals.wait("token_renewed", in_background=True)  # the retry, after backoff
        assert (await browser.get("/token")).json()["access_token"] != first


async def test_idle_users_are_not_kept_warm(fake: FakeSpotify, signals: SignalRecorder) -> None:
    clock = FakeClock()
    fake.clock = clock
    app, spotify = make_app(
        transport=httpx.ASGITransport(app=fake), clock=clock, SPOTIFY_KEEP_WARM=600
    )
    async with app.test_app():
        client = app.test_client()
        await login_in_process(client, fake)
        core = spotify.core(app)
        assert _scheduled(core) == 1
        clock.advance(3400)  # past the refresh point, and idle for longer than KEEP_WARM
        core.renewer.wake()
        await signals.wait("renewal_skipped", reason="idle")
        # Off the warm schedule: next looked at when it would be forgotten (30 days on).
        assert (await core.store.due(0, 0)).next == pytest.approx(clock() - 3400 + 30 * 86400)
        assert fake.requests["token:refresh_token"] == 0
        # The next use is served at once (the token is still valid) and puts the token back
        # on the schedule, where it is past due: the renewer refreshes it.
        assert (await client.get("/token")).status_code == 200
        await signals.wait("token_renewed", in_background=True)
        assert fake.requests["token:refresh_token"] == 1
        assert signals.count("token_renewed", in_background=False) == 0
        # Unused past SPOTIFY_TOKEN_IDLE_TTL (30 days): the login is forgotten.
        clock.advance(31 * 86400)
        core.renewer.wake()
        await signals.wait("login_forgotten")
        assert not core.store._records  # type: ignore[attr-defined]
        assert (await client.get("/token")).status_code == 401


class _Watched(MemoryTokenStore):
    """A memory store that tells each time its schedule hands a key out; with ``stall`` set,
    a renewal's read of a record (the store's own) hangs until cancelled."""

    def __init__(self) -> None:
        super().__init__()
        self.handed_out: list[str] = []
        self.stall = False
        self.stalled = asyncio.Event()
        self._changed = asyncio.Event()

    async def due(self, now: float, limit: int) -> Any:
        found = await super().due(now, limit)
        self.handed_out += [key for key, _ in found.entries]
        self._changed.set()
        return found

    async def handed(self, count: int) -> None:
        """Wait until keys were handed out ``count`` times in all."""
        while len(self.handed_out) < count:
            self._changed.clear()
            await self._changed.wait()

    async def get(self, key: str) -> TokenRecord | None:
        if self.stall:
            self.stalled.set()
            await asyncio.Event().wait()
        return await super().get(key)


@pytest.mark.parametrize(
    ("keep_warm", "held", "match"),
    [
        (600, "renewal_skipped", {"reason": "idle"}),  # idle: put back for when it would go
        (7 * 86400, "token_renewed", {"in_background": True}),  # renewed: put back for later
    ],
)
async def test_a_key_due_again_while_it_is_renewing_is_looked_at_again(
    fake: FakeSpotify,
    signals: SignalRecorder,
    keep_warm: float,
    held: str,
    match: dict[str, Any],
) -> None:
    """The memory store hands a due key out once. A renewal has put the key back on the
    schedule and is still running (held here in a signal receiver) when time moves past the
    new due time: the loop finds the key renewing and skips it. Once the renewal ends the
    renewer must look at the key again; else it is on no schedule, and the login is never
    renewed nor forgotten (found by test_idle_users_are_not_kept_warm on Python 3.12)."""
    clock = FakeClock()
    fake.clock = clock
    store = _Watched()
    app, spotify = make_app(
        transport=httpx.ASGITransport(app=fake),
        clock=clock,
        store=store,
        SPOTIFY_KEEP_WARM=keep_warm,
    )
    holding, gate = asyncio.Event(), asyncio.Event()

    async def hold(sender: Any, **data: Any) -> None:
        if not holding.is_set() and all(data.get(k) == v for k, v in match.items()):
            holding.set()
            await gate.wait()

    signal = getattr(signal_set, held)
    signal.connect(hold, sender=app, weak=False)
    try:
        async with app.test_app():
            await login_in_process(app.test_client(), fake)
            core = spotify.core(app)
            clock.advance(3400)  # past the refresh point: renewed, or idle and skipped
            core.renewer.wake()
            await holding.wait()  # rescheduled, and still renewing
            seen = len(store.handed_out)
            clock.advance(31 * 86400)  # due again: unused past SPOTIFY_TOKEN_IDLE_TTL
            core.renewer.wake()
            await store.handed(seen + 1)  # handed out again, and skipped: it is renewing
            assert not store._due  # off the schedule: only the renewer knows it is due
            gate.set()
            while core.renewer._tasks:
                await asyncio.wait(set(core.renewer._tasks))
            assert signals.count("login_forgotten") == 1
            assert not store._records
    finally:
        signal.disconnect(hold, sender=app)


async def test_a_failed_renewal_due_again_meanwhile_is_retried_after_its_backoff(
    fake: FakeSpotify, signals: SignalRecorder
) -> None:
    """As above, for a renewal that failed: the key handed out (and skipped) while the failure
    was being reported is put back on the schedule for the backoff's retry, not dropped."""
    clock = FakeClock()
    fake.clock = clock
    store = _Watched()
    app, spotify = make_app(
        transport=httpx.ASGITransport(app=fake), clock=clock, store=store, SPOTIFY_RETRIES=0
    )
    holding, gate = asyncio.Event(), asyncio.Event()

    async def hold(sender: Any, **data: Any) -> None:
        holding.set()
        await gate.wait()

    signal_set.renewal_failed.connect(hold, sender=app, weak=False)
    try:
        async with app.test_app():
            await login_in_process(app.test_client(), fake)
            core = spotify.core(app)
            fake.fail_next(1)
            clock.advance(3400)
            core.renewer.wake()
            await holding.wait()  # failed, rescheduled after a backoff, still reporting
            seen = len(store.handed_out)
            clock.advance(120)  # past the backoff (at most 60 s)
            core.renewer.wake()
            await store.handed(seen + 1)  # handed out again, and skipped
            assert not store._due
            gate.set()
            while core.renewer._tasks:
                await asyncio.wait(set(core.renewer._tasks))
            assert list(store._due) == list(store._records)  # back on the schedule
            assert fake.requests["token"] == 2  # the login's, the failed one: the backoff stood
            core.renewer.wake()
            await signals.wait("token_renewed", in_background=True)
    finally:
        signal_set.renewal_failed.disconnect(hold, sender=app)


async def test_a_renewal_stopped_midway_leaves_the_key_due(
    fake: FakeSpotify, signals: SignalRecorder
) -> None:
    """The app stops while a renewal is reading the record: a store that hands a key out
    once keeps it due, and the next start renews it."""
    clock = FakeClock()
    fake.clock = clock
    store = _Watched()
    app, spotify = make_app(transport=httpx.ASGITransport(app=fake), clock=clock, store=store)
    async with app.test_app():
        await login_in_process(app.test_client(), fake)
        store.stall = True
        clock.advance(3400)
        spotify.core(app).renewer.wake()
        await store.stalled.wait()
    assert list(store._due) == [next(iter(store._records))]
    store.stall = False
    async with app.test_app():
        await signals.wait("token_renewed", in_background=True)
    assert fake.requests["token:refresh_token"] == 1


async def test_refreshes_in_flight_are_bounded(fake: FakeSpotify, signals: SignalRecorder) -> None:
    app, spotify = make_app(transport=httpx.ASGITransport(app=fake), SPOTIFY_RENEW_CONCURRENCY=3)
    async with app.test_app():
        core = spotify.core(app)
        now = core.clock()
        for i in range(30):
            body = fake.token_for("alice", "test-client", ["streaming"])
            record = TokenRecord(
                body["access_token"], body["refresh_token"], now + 2, now, frozenset(), now
            )
            await core.refresher.login(f"user:{i}", record)
        fake.slow = 0.05
        await signals.wait("token_renewed", 30, in_background=True)
    assert fake.max_in_flight["token"] == 3


async def test_shutdown_with_a_refresh_in_flight_loses_nothing(fake: FakeSpotify) -> None:
    fake.rotate_confidential = True
    app, spotify = make_app(transport=httpx.ASGITransport(app=fake))
    async with app.test_app():
        client = app.test_client()
        await login_in_process(client, fake)
        core = spotify.core(app)
        old = _only_record(core)
        fake.slow = 0.5
        task = asyncio.ensure_future(core.refresher.refresh(next(iter(core.store._records))))  # type: ignore[attr-defined]
        while fake.requests["token"] < 2:  # the refresh reached Spotify
            await asyncio.sleep(0.01)
    # The app stopped while Spotify was answering; the rotated token was still stored.
    new = await task
    assert new.refresh_token != old.refresh_token
    assert _only_record(core).refresh_token == new.refresh_token
    fake.slow = 0
    async with app.test_app():  # started a second time, the login still works
        assert (await client.post("/renew")).status_code == 200


async def test_app_starts_and_stops_quickly_twice(fake: FakeSpotify) -> None:
    app, spotify = make_app(transport=httpx.ASGITransport(app=fake))
    loop = asyncio.get_running_loop()
    for _ in range(2):
        start = loop.time()
        async with app.test_app():
            assert spotify.core(app).renewer.running
        # Generous bound: a renewer that waited out Quart's background-task timeout takes 5 s.
        assert loop.time() - start < 4


async def test_force_and_lazy_and_background_coalesce(
    clocked: tuple[Quart, SpotifyAuth, FakeClock], fake: FakeSpotify
) -> None:
    app, spotify, clock = clocked
    client = app.test_client()
    await login_in_process(client, fake)
    core = spotify.core(app)
    fake.slow = 0.2
    clock.advance(3598)  # expired for the request path, due for the renewer
    core.renewer.wake()
    calls: list[Any] = [client.get("/token") for _ in range(20)]
    calls += [client.post("/renew") for _ in range(5)]
    replies = await asyncio.gather(*calls)
    assert {r.status_code for r in replies} == {200}
    assert fake.requests["token:refresh_token"] == 1


async def test_app_token_is_cached_and_renewed(
    clocked: tuple[Quart, SpotifyAuth, FakeClock],
    fake: FakeSpotify,
    signals: SignalRecorder,
) -> None:
    app, spotify, clock = clocked
    async with app.test_request_context("/"):
        tokens = await asyncio.gather(*(spotify.get_app_token() for _ in range(50)))
        assert len({t.access_token for t in tokens}) == 1
        assert fake.requests["token:client_credentials"] == 1
        core = spotify.core(app)
        assert _scheduled(core) == 1
        clock.advance(3400)
        core.renewer.wake()
        await signals.wait("token_renewed", in_background=True)
        assert fake.requests["token:client_credentials"] == 2
        again = await spotify.get_app_token()
        assert again.access_token != tokens[0].access_token
        assert (await core.store.get(APP_KEY)) is not None


async def test_a_renewed_token_is_saved_once_the_store_is_back(fake: FakeSpotify) -> None:
    """Spotify rotated the refresh token; the store is briefly away: the new one is kept."""
    from quart_spotify_auth import StoreUnavailable

    class Flaky(MemoryTokenStore):
        failures = 2

        async def replace(self, *args: Any, **kwargs: Any) -> TokenRecord | None:
            if self.failures:
                self.failures -= 1
                raise StoreUnavailable()
            return await super().replace(*args, **kwargs)

    fake.rotate_confidential = True
    app, _ = make_app(transport=httpx.ASGITransport(app=fake), store=Flaky())
    async with app.test_app():
        client = app.test_client()
        await login_in_process(client, fake)
        assert (await client.post("/renew")).status_code == 200
        assert (await client.post("/renew")).status_code == 200  # the stored token is live
        assert fake.requests["token:refresh_token"] == 2


class _LosesReleases(RedisTokenStore):
    """A Redis store whose next ``lose`` releases fail as if Redis were away at that instant."""

    lose = 0

    async def release(self, key: str, claim: str) -> None:
        if self.lose:
            self.lose -= 1
            raise StoreUnavailable()
        await super().release(key, claim)


def _worker(
    fake: FakeSpotify, clock: FakeClock, store: RedisTokenStore, *, auto_renew: bool
) -> tuple[Quart, SpotifyAuth]:
    """One of two workers sharing a Redis store, both serving the one user "u"."""
    return make_app(
        transport=httpx.ASGITransport(app=fake),
        clock=clock,
        store=store,
        identity=lambda: "u",
        SPOTIFY_AUTO_RENEW=auto_renew,
    )


async def test_a_claim_whose_release_was_lost_is_taken_back_by_its_owner(
    fake: FakeSpotify, redis_server: RedisServer, redis_prefix: str
) -> None:
    clock = FakeClock()
    fake.clock = clock
    store = _LosesReleases(redis_server.url, prefix=redis_prefix)
    app, _ = _worker(fake, clock, store, auto_renew=False)
    async with app.test_app():
        client = app.test_client()
        await login_in_process(client, fake)
        store.lose = 1
        assert (await client.post("/renew")).status_code == 200
        refresh_claims = f"{redis_prefix}claim:[^s]*"  # not the used states' (claim:state:...)
        assert await store.redis.keys(refresh_claims)  # left behind in Redis
        # Without taking its own claim back, this would wait for a refresh nobody is making
        # and answer 503 after the join timeout.
        assert (await client.post("/renew")).status_code == 200
        assert fake.requests["token:refresh_token"] == 2
        assert not await store.redis.keys(refresh_claims)


async def test_a_claim_whose_release_was_lost_does_not_block_other_workers(
    fake: FakeSpotify, redis_server: RedisServer, redis_prefix: str
) -> None:
    """Worker A's release is lost; its renewer lets the claim go once Redis answers, and
    worker B, waiting on A's refresh, sees the claim gone without a new token and refreshes
    itself instead of waiting out the claim's expiry."""
    clock = FakeClock()
    fake.clock = clock
    store_a = _LosesReleases(redis_server.url, prefix=redis_prefix)
    app_a, _ = _worker(fake, clock, store_a, auto_renew=True)
    app_b, _ = _worker(
        fake, clock, RedisTokenStore(redis_server.url, prefix=redis_prefix), auto_renew=False
    )
    async with app_a.test_app(), app_b.test_app():
        await login_in_process(app_a.test_client(), fake)
        store_a.lose = 1
        assert (await app_a.test_client().post("/renew")).status_code == 200
        assert (await app_b.test_client().post("/renew")).status_code == 200
        assert fake.requests["token:refresh_token"] == 2
        b_token = (await (await app_b.test_client().get("/token")).get_json())["access_token"]
        a_token = (await (await app_a.test_client().get("/token")).get_json())["access_token"]
        assert a_token == b_token


async def test_a_store_away_is_logged_once_by_the_renewer_then_its_return(
    fake: FakeSpotify, caplog: pytest.LogCaptureFixture
) -> None:
    """Every look at the schedule fails while the store is away: one line says so (not one a
    second), and one says when the schedule can be read again."""

    class Away(MemoryTokenStore):
        away = True
        looks = 0
        looked = asyncio.Event()

        async def due(self, now: float, limit: int) -> Any:
            self.looks += 1
            self.looked.set()
            if self.away:
                raise StoreUnavailable()
            return await super().due(now, limit)

    store = Away()
    app, spotify = make_app(transport=httpx.ASGITransport(app=fake), store=store)
    caplog.set_level("INFO", logger="quart_spotify_auth")
    async with app.test_app():
        renewer = spotify.core(app).renewer
        for _ in range(5):  # five failed looks, each woken at once rather than waited for
            store.looked.clear()
            renewer.wake()
            await asyncio.wait_for(store.looked.wait(), 30)
        store.away, failed = False, store.looks
        store.looked.clear()
        renewer.wake()
        await asyncio.wait_for(store.looked.wait(), 30)  # the look logs before it next waits
    assert failed >= 5
    lines = [r.getMessage() for r in caplog.records if "schedule" in r.getMessage()]
    assert len([line for line in lines if "could not read its schedule" in line]) == 1, lines
    assert "The renewer reads its schedule again" in lines, lines
