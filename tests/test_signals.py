"""The signals fire in the order docs/signals.md documents, for the Quart app and the Flask
shim, over real HTTP (hypercorn serving the fake; hypercorn or werkzeug serving the app)."""

from __future__ import annotations

import pytest
from flask import Flask

from quart_spotify_auth.flask import SpotifyAuth as FlaskSpotifyAuth
from quart_spotify_auth.testing import FakeSpotify, SignalRecorder

from .conftest import Browser, Stack

#: One login's life as docs/signals.md tells it: logged in, renewed on request, renewal failing
#: in the background, Spotify refusing the refresh token; then a second login that logs out.
LIFE = [
    ("logged_in", {"scopes": True}),
    ("token_renewed", {"in_background": False}),
    ("renewal_failed", {}),
    ("token_renewed", {"in_background": True}),
    ("reauthorization_required", {}),
    ("logged_in", {"scopes": True}),
    ("logged_out", {}),
]


async def _live(browser: Browser, fake: FakeSpotify, signals: SignalRecorder) -> None:
    assert (await browser.login("alice")).status_code == 302
    # A forced renewal whose new 4 s token falls due at half its life, in 2 s; its background
    # renewal meets a Spotify fault, and the retry after the backoff succeeds.
    fake.access_ttl = 4
    assert (await browser.post("/renew")).status_code == 200
    fake.fail_next(1, status=503)
    fake.access_ttl = 3600
    await signals.wait("token_renewed", in_background=True, timeout=60)
    fake.revoke("alice")
    assert (await browser.post("/renew")).status_code == 401
    assert (await browser.login("alice")).status_code == 302
    assert (await browser.post("/logout")).status_code == 200
    await signals.wait("logged_out")


def _check(signals: SignalRecorder) -> None:
    assert [name for name, _ in signals.log] == [name for name, _ in LIFE], signals.log
    for (name, data), (_, expected) in zip(signals.log, LIFE, strict=True):
        assert data["key"].startswith("browser:"), name
        for field, value in expected.items():
            assert (bool(data[field]) if value is True else data[field]) == value, (name, data)
    keys = [data["key"] for _, data in signals.log]
    assert len(set(keys[:5])) == 1 and keys[5] == keys[6] != keys[0]  # a new login id


@pytest.mark.parametrize("stack", [{"SPOTIFY_RETRIES": 0}], indirect=True)
async def test_the_signals_of_a_login_in_order_on_quart(stack: Stack) -> None:
    with SignalRecorder(stack.app) as signals:  # this app's signals only
        async with stack.browser() as browser:
            await _live(browser, stack.fake, signals)
    _check(signals)


@pytest.mark.parametrize("flask_stack", [{"SPOTIFY_RETRIES": 0}], indirect=True)
async def test_the_signals_of_a_login_in_order_on_flask(
    flask_stack: tuple[Browser, FlaskSpotifyAuth, Flask], fake: FakeSpotify
) -> None:
    browser, _, app = flask_stack
    with SignalRecorder(app) as signals:
        await _live(browser, fake, signals)
    _check(signals)
