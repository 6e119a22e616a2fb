"""The pytest plugin: a fake Spotify for each test, served over HTTP, and a one-call login.

Installed with the package (a ``pytest11`` entry point), so its fixtures are there in any
project that has quart-spotify-auth installed. They are plain (sync) fixtures: they work under
pytest-asyncio's default strict mode, with anyio's plugin, and in sync tests of Flask apps.

- ``spotify_fake``: a fresh :class:`~quart_spotify_auth.testing.FakeSpotify` (one registered
  app, the users ``alice`` and ``bob``), served on a free loopback port for the whole session
  and swapped for a fresh one per test. ``spotify_fake.url`` is where it listens.
- ``spotify_config``: the settings that point an app at it (``app.config.update(...)`` or an
  app factory's config): its client id and secret, ``SPOTIFY_ACCOUNTS_URL``,
  ``SPOTIFY_API_URL`` and the memory store.
- ``spotify_log_in``: ``spotify_log_in(client, "alice")`` logs a Quart (awaited) or Flask
  (called) test client in as that fake user: :func:`~quart_spotify_auth.testing.log_in` bound
  to the fake.

.. code-block:: python

    @pytest.fixture
    def app(spotify_config):
        return create_app({"SECRET_KEY": "test", **spotify_config})

    @pytest.mark.asyncio
    async def test_home(app, spotify_log_in):
        async with app.test_app():
            client = app.test_client()
            await spotify_log_in(client, "alice")
            assert (await client.get("/")).status_code == 200
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from ..loopthread import LoopThread
from ..serving import serve
from . import log_in, make_fake
from .fake import FakeSpotify

__all__ = ["FakeServer", "spotify_config", "spotify_fake", "spotify_log_in"]


class FakeServer:
    """One hypercorn server on a loop thread of its own, serving whichever fake is current (a
    fresh one per test costs nothing; a server per test would cost its start and stop)."""

    def __init__(self) -> None:
        self.current: FakeSpotify | None = None
        self.url = ""
        self._thread = LoopThread()
        self._served = serve(self)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":  # the fakes need no start-up: say so and wait
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        assert self.current is not None, "no fake is current"
        await self.current(scope, receive, send)

    def start(self) -> None:
        try:
            self.url = self._thread.block_on(self._served.__aenter__(), timeout=30)
        except BaseException:
            self._thread.stop()
            raise

    def stop(self) -> None:
        """Stop serving, then stop and close the loop thread (its loop and sockets): nothing
        is left for a ``ResourceWarning`` under ``filterwarnings = error``."""
        try:
            self._thread.block_on(self._served.__aexit__(None, None, None), timeout=30)
        finally:
            self._thread.stop()


@pytest.fixture(scope="session")
def _spotify_fake_server() -> Iterator[FakeServer]:
    server = FakeServer()
    server.start()
    yield server
    server.stop()


@pytest.fixture
def spotify_fake(_spotify_fake_server: FakeServer) -> Iterator[FakeSpotify]:
    """A fresh :class:`FakeSpotify` served over HTTP at ``spotify_fake.url``: one app
    (``test-client``, ``test-secret``), the users ``alice`` and ``bob``, a redirect URI on
    loopback without a port (any ``http://127.0.0.1:<port>/callback/`` matches)."""
    fake = make_fake(redirect_uri="http://127.0.0.1/callback/")
    fake.url = _spotify_fake_server.url
    _spotify_fake_server.current = fake
    yield fake
    _spotify_fake_server.current = None


@pytest.fixture
def spotify_config(spotify_fake: FakeSpotify) -> dict[str, Any]:
    """What points an app at ``spotify_fake``: ``app.config.update(spotify_config)``."""
    return spotify_fake.app_config()


@pytest.fixture
def spotify_log_in(spotify_fake: FakeSpotify) -> Callable[..., Any]:
    """``spotify_log_in(client, user="alice", *, scopes=None, identity=None)``: log a test
    client in as a fake user (awaitable for Quart, a plain call for Flask)."""

    @functools.wraps(log_in)
    def bound(client: Any, user: str = "alice", **options: Any) -> Any:
        return log_in(client, spotify_fake, user, **options)

    return bound
