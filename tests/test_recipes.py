"""The docs' views as written (recipes.md: tekore and spotipy; building-on-it.md: the Web API
client, the ready routes and guards), added to an app served by hypercorn, answer from the
fake Spotify's Web API after a real login over HTTP."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urljoin, urlsplit

import pytest
import spotipy
from quart import Quart

from quart_spotify_auth import SpotifyAuth
from quart_spotify_auth.serving import free_port, serve
from quart_spotify_auth.testing import FakeSpotify

from .apps import app_config
from .conftest import Browser

# tekore requires httpx<0.29, so the suite's environment goes without it and `nox -s peers`
# runs this file (the CI runs both).
tekore_base = pytest.importorskip("tekore._client.base", reason="nox -s peers installs tekore")

DOCS = Path(__file__).resolve().parent.parent / "docs"


@pytest.fixture(name="served")
async def _served(
    fake: FakeSpotify, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[tuple[Browser, SpotifyAuth]]:
    async with serve(fake) as fake_url:
        api = fake_url + "/v1/"
        monkeypatch.setattr(tekore_base, "prefix", api)

        class FakeSpotipy(spotipy.Spotify):  # type: ignore[misc]
            def __init__(self, *args: Any, **kwargs: Any) -> None:
                super().__init__(*args, **kwargs)
                self.prefix = api

        monkeypatch.setattr(spotipy, "Spotify", FakeSpotipy)
        port = free_port()
        app = Quart(__name__)
        redirect_uri = f"http://127.0.0.1:{port}/callback/"
        app.config.update(app_config(fake_url, redirect_uri))
        spotify = SpotifyAuth(app)
        namespace: dict[str, Any] = {"app": app, "spotify": spotify}
        for block in re.findall(r"```python\n(.*?)```", (DOCS / "recipes.md").read_text(), re.S):
            exec(compile(block, "recipes.md", "exec"), namespace)
        building = (DOCS / "building-on-it.md").read_text()
        first = re.search(r"```python\n(.*?)```", building, re.S)
        assert first is not None
        # That block registers the ready routes: logins start at /spotify/login.
        exec(compile(first.group(1), "building-on-it.md", "exec"), namespace)

        @app.route("/object-bearer")
        async def object_bearer() -> Any:  # what the page warns against: the object, not str
            token = await spotify.get_access_token()
            client = spotipy.Spotify(auth=token)
            try:
                await asyncio.to_thread(client.current_user)
            except spotipy.SpotifyException as error:
                return {"status": error.http_status}
            return {"status": 200}

        async with (
            serve(app, port=port) as app_url,
            Browser(app_url, fake_url, login_path="/spotify/login") as browser,
        ):
            yield browser, spotify


async def test_the_tekore_view_reads_the_user(served: tuple[Browser, SpotifyAuth]) -> None:
    browser, _ = served
    await browser.login("bob")
    reply = await browser.get("/tekore/me")
    assert reply.status_code == 200, reply.text
    assert reply.json() == {"id": "bob", "name": "Bob"}


async def test_the_spotipy_view_reads_top_tracks(
    served: tuple[Browser, SpotifyAuth], fake: FakeSpotify
) -> None:
    browser, _ = served
    await _log_in_through_the_top_guard(browser, "alice")
    reply = await browser.get("/spotipy/top")
    assert reply.status_code == 200, reply.text
    tracks = reply.json()["tracks"]
    assert len(tracks) == 5 and all(isinstance(name, str) and name for name in tracks)


async def test_the_token_object_itself_is_refused_as_the_page_says(
    served: tuple[Browser, SpotifyAuth],
) -> None:
    browser, _ = served
    await browser.login("alice")
    assert (await browser.get("/object-bearer")).json() == {"status": 401}


async def test_the_guarded_top_view_asks_for_its_scope_then_answers(
    served: tuple[Browser, SpotifyAuth],
) -> None:
    browser, _ = served
    await _log_in_through_the_top_guard(browser, "bob")
    top = await browser.get("/top")
    assert top.status_code == 200, top.text
    assert len(top.json()["tracks"]) == 5
    me = await browser.get("/me")
    assert me.status_code == 200 and me.json()["id"] == "bob"


async def _log_in_through_the_top_guard(browser: Browser, user: str) -> None:
    """building-on-it.md's /top: the app's scopes lack user-top-read, so its guard logs the
    browser in asking for it too, and comes back to /top."""
    reply = await browser.get("/top")
    for _ in range(5):  # the guard, the ready login route, then the fake's consent page
        if reply.status_code != 302 or reply.headers["location"].startswith(browser.fake_url):
            break
        reply = await browser.http.get(urljoin(str(reply.url), reply.headers["location"]))
    authorize = dict(parse_qsl(urlsplit(reply.headers["location"]).query))
    assert "user-top-read" in authorize["scope"].split()
    callback = await browser.consent(authorize, user=user)
    back = await browser.http.get(callback)
    assert back.status_code == 302 and back.headers["location"] == "/top"
