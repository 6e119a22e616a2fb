"""Issue 20, round 3, finding 12: a flood of login callbacks cannot starve renewals. Code
exchanges hold at most ``EXCHANGES`` of the app's ``POOL_CONNECTIONS`` connections; refreshes
and app tokens keep the rest. Over real HTTP (the app and FakeSpotify served on 127.0.0.1),
the fake holding every authorization-code exchange until the test releases it."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from flask import Flask

from quart_spotify_auth import InvalidCallback, SpotifyUnavailable
from quart_spotify_auth.accounts import EXCHANGES, POOL_CONNECTIONS, AccountsClient
from quart_spotify_auth.config import load_settings
from quart_spotify_auth.core import Core
from quart_spotify_auth.flask import SpotifyAuth as FlaskSpotifyAuth
from quart_spotify_auth.serving import free_port, serve
from quart_spotify_auth.testing import FakeSpotify, make_fake

from ._httplib import httpx
from .apps import CLIENT_ID, app_config, make_app
from .conftest import Browser

#: Long enough that no held exchange times out while a test runs (it ends by releasing them).
SLOW: dict[str, Any] = {"SPOTIFY_HTTP_TIMEOUT": 60.0}
#: The ceiling on each wait below (a failure, never a measure).
CEILING = 20.0
#: How long a callback beyond the budget waits for a slot (the default is the HTTP timeout).
SLOT_WAIT = 0.5
REDIRECT = "http://127.0.0.1/callback/"


async def _until(condition: Callable[[], bool], what: str) -> None:
    async with asyncio.timeout(CEILING):
        while not condition():
            await asyncio.sleep(0.01)
    assert condition(), what


async def _forge(browsers: list[Browser]) -> list[asyncio.Task[httpx.Response]]:
    """Five logins started in each browser (its session's limit), then a callback for each
    carrying its valid state and a forged code, all at once."""
    states = [(b, (await b.start_login())["state"]) for b in browsers for _ in range(5)]
    return [
        asyncio.create_task(b.http.get(f"{b.app_url}/callback/?code=forged-{i}&state={s}"))
        for i, (b, s) in enumerate(states)
    ]


@contextlib.asynccontextmanager
async def _browsers(app_url: str, fake_url: str, n: int) -> AsyncIterator[list[Browser]]:
    async with contextlib.AsyncExitStack() as stack:
        yield [await stack.enter_async_context(Browser(app_url, fake_url)) for _ in range(n)]


async def _flood(
    fake: FakeSpotify,
    core: Core,
    browsers: list[Browser],
    renew: Callable[[], Awaitable[httpx.Response]],
    app_token: Callable[[], Awaitable[str]],
) -> None:
    """Fill every exchange slot with forged callbacks, the rest beyond the budget; while the
    exchanges are held, a user's renewal and the app's token go through, and the callbacks
    beyond the budget get a clear 503. Then the held ones are answered (their codes refused)."""
    core.accounts.exchange_wait = SLOT_WAIT
    held = fake.held["authorization_code"] = asyncio.Event()
    exchanged = fake.requests["token:authorization_code"]
    callbacks = await _forge(browsers)
    beyond = len(callbacks) - EXCHANGES
    try:
        await _until(
            lambda: fake.requests["token:authorization_code"] >= exchanged + EXCHANGES,
            "every exchange slot is taken",
        )
        refreshes = fake.requests["token:refresh_token"]
        reply = await asyncio.wait_for(renew(), CEILING)
        assert reply.status_code == 200, reply.text
        assert fake.requests["token:refresh_token"] == refreshes + 1
        assert await asyncio.wait_for(app_token(), CEILING)
        assert fake.requests["token:client_credentials"] == 1
        assert fake.requests["refused:invalid_grant"] == 0  # every forged code is still held
        await _until(lambda: sum(c.done() for c in callbacks) == beyond, "the extras are refused")
        refused = [c.result() for c in callbacks if c.done()]
        assert {r.status_code for r in refused} == {503}
        assert all("Too many logins in progress; start the login again" in r.text for r in refused)
        # The extras never reached Spotify: their codes are not spent.
        assert fake.requests["token:authorization_code"] == exchanged + EXCHANGES
        held.set()
        answered = await asyncio.wait_for(asyncio.gather(*callbacks), CEILING)
    finally:  # if a check failed, nothing is left running
        held.set()
        for callback in callbacks:
            callback.cancel()
        await asyncio.gather(*callbacks, return_exceptions=True)
    assert sum(r.status_code == 400 for r in answered) == EXCHANGES
    assert fake.requests["refused:invalid_grant"] == EXCHANGES


async def test_forged_callbacks_cannot_starve_a_renewal_or_the_app_token(
    fake: FakeSpotify,
) -> None:
    """More forged callbacks than the pool has connections: without a budget they held all of
    them, and a logged-in user's renewal waited behind them (a 503 after 32 s)."""
    async with serve(fake) as fake_url:
        port = free_port()
        redirect = f"http://127.0.0.1:{port}/callback/"
        app, spotify = make_app(accounts_url=fake_url, redirect_uri=redirect, **SLOW)

        @app.route("/app-token")
        async def app_token() -> str:
            return (await spotify.get_app_token()).access_token

        async with serve(app, port=port) as app_url, Browser(app_url, fake_url) as alice:
            assert (await alice.login()).status_code == 302
            # Enough callbacks to take every connection, and some waiting for one.
            n = (POOL_CONNECTIONS + 10 + 4) // 5
            async with _browsers(app_url, fake_url, n) as browsers:
                await _flood(
                    fake,
                    spotify.core(app),
                    browsers,
                    lambda: alice.post("/renew"),
                    lambda: _text(alice.get("/app-token")),
                )
            # The slots are free again: a real login goes through.
            async with Browser(app_url, fake_url) as bob:
                assert (await bob.login("bob")).status_code == 302
                assert (await bob.get("/token")).status_code == 200


async def _text(reply: Awaitable[httpx.Response]) -> str:
    response = await reply
    assert response.status_code == 200, response.text
    return response.text


@pytest.mark.parametrize("flask_stack", [SLOW], indirect=True)
async def test_the_flask_shims_budget_is_its_loops(
    flask_stack: tuple[Browser, FlaskSpotifyAuth, Flask], fake: FakeSpotify
) -> None:
    """The shim's core runs on its loop thread: the slots are that loop's, and bound there."""
    alice, spotify, app = flask_stack
    assert (await alice.login()).status_code == 302
    loop = asyncio.get_running_loop()

    def app_token() -> str:
        with app.app_context():
            return spotify.get_app_token().access_token

    async with _browsers(alice.app_url, alice.fake_url, EXCHANGES // 5 + 1) as browsers:
        await _flood(
            fake,
            spotify.core(app),
            browsers,
            lambda: alice.post("/renew"),
            lambda: loop.run_in_executor(None, app_token),
        )


def test_the_budget_belongs_to_the_loop_that_uses_it() -> None:
    """An app served again on another event loop (a stopped core's new pool): the bound holds
    there too, with slots of that loop (a semaphore bound to the first would raise)."""
    fake = make_fake(client_id=CLIENT_ID, redirect_uri=REDIRECT)
    port = free_port()
    settings = load_settings(app_config(f"http://127.0.0.1:{port}", REDIRECT))
    accounts = AccountsClient(settings, httpx.AsyncClient())
    accounts.exchanges, accounts.exchange_wait = 1, SLOT_WAIT

    async def serve_once() -> None:
        held = fake.held["authorization_code"] = asyncio.Event()
        async with serve(fake, port=port), httpx.AsyncClient() as accounts.http:
            first = asyncio.create_task(_exchange(accounts, "forged-1"))
            await _until(lambda: fake.requests["token:authorization_code"] == 1, "one exchange")
            with pytest.raises(SpotifyUnavailable, match="Too many logins in progress"):
                await _exchange(accounts, "forged-2")
            held.set()
            with pytest.raises(InvalidCallback):
                await first
        fake.reset_counters()

    for _ in range(2):
        asyncio.run(serve_once())


async def _exchange(accounts: AccountsClient, code: str) -> None:
    await accounts.exchange_code(code, redirect_uri=REDIRECT, code_verifier=None)
