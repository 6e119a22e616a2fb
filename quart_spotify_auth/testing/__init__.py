"""Testing apps that log in with Spotify, without Spotify.

- :class:`FakeSpotify`: an ASGI app that behaves like ``accounts.spotify.com`` plus the Web API
  calls this package makes (``GET /v1/me``), with switches for Spotify's faults. Use it
  in-process (``httpx.ASGITransport``) or serve it (:func:`quart_spotify_auth.serving.serve`).
- :func:`make_fake`: a fake with one registered app and the users ``alice`` and ``bob``.
- :func:`log_in`: log a test client in as a fake user in one call (Quart or Flask).
- :class:`SignalRecorder`: count the signals an app sends, and wait for them.

.. code-block:: python

    fake = make_fake(client_id="test-client", client_secret="test-secret")
    app.config.update(SPOTIFY_CLIENT_ID="test-client", SPOTIFY_CLIENT_SECRET="test-secret")
    spotify = SpotifyAuth(app, transport=httpx.ASGITransport(app=fake))
    async with app.test_app():
        client = app.test_client()
        await log_in(client, fake, "alice")
        assert (await client.get("/")).status_code == 200
"""

from __future__ import annotations

import asyncio
import threading
from collections import Counter
from collections.abc import Callable, Iterable, MutableMapping
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from blinker import ANY

from .. import signals
from ..core import Caller, Core
from ..tokens import AccessToken
from .accounts import SCOPES, FakeAccounts, FakeAuthorizeError, FakeClient, FakeUser
from .clock import FakeClock
from .fake import FakeSpotify

__all__ = [
    "SCOPES",
    "FakeAuthorizeError",
    "FakeClient",
    "FakeClock",
    "FakeSpotify",
    "FakeUser",
    "SignalRecorder",
    "log_in",
    "make_fake",
]


def make_fake(
    *,
    client_id: str = "test-client",
    client_secret: str | None = "test-secret",  # noqa: S107 - a fixture value, not a password
    redirect_uri: str = "http://127.0.0.1:5000/callback/",
    users: Iterable[str] = ("alice", "bob"),
    **kwargs: Any,
) -> FakeSpotify:
    """A :class:`FakeSpotify` with one app and users named after their ids ("Alice", ...).

    A redirect URI on loopback without a port (``http://127.0.0.1/callback/``) matches the
    callback on any port, as Spotify does."""
    fake = FakeSpotify(**kwargs)
    fake.add_client(client_id, client_secret, [redirect_uri])
    for user_id in users:
        fake.add_user(user_id, display_name=user_id.capitalize(), email=f"{user_id}@example.com")
    return fake


async def _log_in(
    core: Core,
    session: MutableMapping[str, Any],
    fake: FakeAccounts,
    user: str,
    scopes: str | Iterable[str] | None,
    identity: str | None,
) -> AccessToken:
    caller = Caller(session, identity)
    authorize_url = await core.begin_login(caller, scopes=scopes)
    callback = urlsplit(fake.decide(authorize_url, user=user))
    token, _ = await core.complete_login(caller, dict(parse_qsl(callback.query)))
    return token


def log_in(
    client: Any,
    fake: FakeAccounts,
    user: str = "alice",
    *,
    scopes: str | Iterable[str] | None = None,
    identity: str | None = None,
) -> Any:
    """Log ``client`` (a Quart or Flask test client of an app with ``SpotifyAuth``) in as
    ``user`` of ``fake``, as if the browser had gone through the consent page: a real state,
    PKCE and code exchange against the fake the app talks to, and the login id in the
    client's session cookie. Returns the user's :class:`AccessToken`; awaitable for Quart.

    ``scopes`` replaces the configured scopes; ``identity`` is the app's own user id when the
    app keys tokens by one (its ``identity`` hook is not called here).

    .. code-block:: python

        await log_in(client, fake, "alice")     # Quart
        log_in(client, fake, "alice")           # Flask
    """
    if hasattr(client, "application"):  # Flask's test client
        from ..flask import block_on, current_core

        with client.session_transaction() as session:
            core = current_core(client.application)
            return block_on(_log_in(core, session, fake, user, scopes, identity))

    async def quart() -> AccessToken:
        from ..extension import current_core

        async with client.session_transaction() as session:
            core = current_core(client.app)
            return await _log_in(core, session, fake, user, scopes, identity)

    return quart()


class SignalRecorder:
    """Records every signal of :mod:`quart_spotify_auth.signals` an app sends, to count them
    and wait for them in tests (from async tests, or sync ones for the Flask shim).

    .. code-block:: python

        with SignalRecorder(app) as signals:
            ...
            await signals.wait("token_renewed", in_background=True)
            assert signals.count("renewal_failed") == 0
    """

    NAMES = (
        "logged_in",
        "logged_out",
        "token_renewed",
        "renewal_failed",
        "reauthorization_required",
        "renewal_skipped",
        "login_forgotten",
    )

    def __init__(self, sender: Any = ANY) -> None:
        #: Every signal received, in order: ``(name, data)``.
        self.log: list[tuple[str, dict[str, Any]]] = []
        self._sender = sender
        self._changed = threading.Condition()
        self._waiters: set[tuple[asyncio.AbstractEventLoop, asyncio.Event]] = set()
        self._receivers: list[tuple[Any, Callable[..., None]]] = []
        for name in self.NAMES:
            receiver = self._receiver(name)
            signal = getattr(signals, name)
            signal.connect(receiver, sender=sender, weak=False)
            self._receivers.append((signal, receiver))

    def __enter__(self) -> SignalRecorder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Stop recording."""
        for signal, receiver in self._receivers:
            signal.disconnect(receiver, sender=self._sender)

    def _receiver(self, name: str) -> Callable[..., None]:
        def receive(sender: Any, **data: Any) -> None:
            with self._changed:
                self.log.append((name, data))
                self._changed.notify_all()
                for loop, event in list(self._waiters):
                    loop.call_soon_threadsafe(event.set)

        return receive

    def count(self, name: str, **match: Any) -> int:
        """How many ``name`` signals were received whose data includes ``match``."""
        with self._changed:
            return self._count(name, match)

    @property
    def counts(self) -> Counter[str]:
        """How many of each signal were received."""
        with self._changed:
            return Counter(name for name, _ in self.log)

    async def wait(self, name: str, count: int = 1, *, timeout: float = 15.0, **match: Any) -> None:
        """Wait until ``count`` ``name`` signals matching ``match`` were received."""
        loop = asyncio.get_running_loop()
        event = asyncio.Event()
        waiter = (loop, event)
        self._waiters.add(waiter)
        try:
            async with asyncio.timeout(timeout):
                while self.count(name, **match) < count:
                    await event.wait()
                    event.clear()
        finally:
            self._waiters.discard(waiter)

    def wait_sync(self, name: str, count: int = 1, *, timeout: float = 15.0, **match: Any) -> None:
        """:meth:`wait` for sync tests (the Flask shim)."""
        with self._changed:
            if not self._changed.wait_for(lambda: self._count(name, match) >= count, timeout):
                raise TimeoutError(f"fewer than {count} {name!r} signals in {timeout} s")

    def _count(self, name: str, match: dict[str, Any]) -> int:
        return sum(
            1
            for seen, data in self.log
            if seen == name and all(data.get(k) == v for k, v in match.items())
        )
