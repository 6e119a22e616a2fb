"""Malformed callbacks over real HTTP: whatever the query, never a 5xx."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from urllib.parse import urlencode

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from quart_spotify_auth.serving import free_port, serve
from quart_spotify_auth.testing import FakeSpotify, make_fake

from ._httplib import httpx
from .apps import CLIENT_ID, make_app

pytestmark = pytest.mark.slow


class ThreadedStack:
    """FakeSpotify and the app served by hypercorn from an event loop in a thread, so that a
    synchronous hypothesis test can drive them over HTTP."""

    def __init__(self) -> None:
        self.fake: FakeSpotify = make_fake(
            client_id=CLIENT_ID, redirect_uri="http://127.0.0.1/callback/"
        )
        self.app_url = ""
        self._ready = threading.Event()
        self._loop = asyncio.new_event_loop()
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._loop.run_until_complete, args=(self._main(),))

    async def _main(self) -> None:
        self._stop = asyncio.Event()
        async with serve(self.fake) as fake_url:
            port = free_port()
            app, _ = make_app(
                accounts_url=fake_url, redirect_uri=f"http://127.0.0.1:{port}/callback/"
            )
            async with serve(app, port=port) as app_url:
                self.app_url = app_url
                self._ready.set()
                await self._stop.wait()

    def __enter__(self) -> ThreadedStack:
        self._thread.start()
        assert self._ready.wait(30), "the servers did not start"
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._stop is not None
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(30)
        self._loop.close()


@pytest.fixture(name="served", scope="module")
def _served() -> Iterator[ThreadedStack]:
    with ThreadedStack() as stack:
        yield stack


KEYS = st.sampled_from(["code", "state", "error", "error_description", "scope"]) | st.text(
    max_size=8
)
VALUES = st.text(max_size=300) | st.sampled_from(["", "access_denied", "%", "%zz", "\x00"])


@settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(pairs=st.lists(st.tuples(KEYS, VALUES), max_size=6), use_real_state=st.booleans())
def test_malformed_callback_is_never_a_5xx(
    served: ThreadedStack, pairs: list[tuple[str, str]], use_real_state: bool
) -> None:
    with httpx.Client(follow_redirects=False, timeout=30) as browser:
        login = browser.get(served.app_url + "/login")
        assert login.status_code == 302
        if use_real_state:
            state = httpx.URL(login.headers["location"]).params["state"]
            pairs = [*pairs, ("state", state)]
        response = browser.get(f"{served.app_url}/callback/?{urlencode(pairs)}")
        assert response.status_code in (302, 400, 403), response.text
        if response.status_code != 302:
            assert browser.get(served.app_url + "/status").json() == {"logged_in": False}


def test_raw_garbage_query_strings(served: ThreadedStack) -> None:
    with httpx.Client(follow_redirects=False, timeout=30) as browser:
        browser.get(served.app_url + "/login")
        for raw in ["%", "state=%ff%fe&code=%00", "&&&==", "state&code", "code=" + "x" * 10000]:
            response = browser.get(f"{served.app_url}/callback/?{raw}")
            assert response.status_code == 400, (raw, response.status_code)
