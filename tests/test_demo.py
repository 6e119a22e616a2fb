"""The demo app over real HTTP against a served FakeSpotify."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator

import pytest

from quart_spotify_auth.demo import create_app
from quart_spotify_auth.serving import free_port, serve
from quart_spotify_auth.testing import FakeSpotify, make_fake

from .conftest import Browser


@pytest.fixture(name="port")
def _port() -> int:
    return free_port()


@pytest.fixture(name="fake")
def _fake(port: int) -> FakeSpotify:
    return make_fake(
        client_id="demo-client",
        client_secret="demo-secret",
        redirect_uri=f"http://127.0.0.1:{port}/callback/",
    )


@pytest.fixture(name="demo")
async def _demo(fake: FakeSpotify, port: int) -> AsyncIterator[Browser]:
    async with (
        serve(fake) as fake_url,
        serve(create_app(port=port, fake_url=fake_url), port=port) as url,
        Browser(url, fake_url) as browser,
    ):
        yield browser


def _field(html: str, name: str) -> str:
    match = re.search(rf'id="{name}"[^>]*>\s*([^<]*)<', html)
    assert match, name
    return match.group(1).strip()


async def test_demo_login_renew_logout(demo: Browser) -> None:
    home = await demo.get("/")
    assert 'id="login"' in home.text
    assert "fake Spotify" in home.text
    landed = await demo.login("bob")
    assert landed.status_code == 302
    assert "samesite=lax" in landed.headers["set-cookie"].lower()  # never sent cross-site
    page = (await demo.get("/")).text
    assert _field(page, "name") == "Bob"
    assert "user-read-email" in _field(page, "scopes") or "user-read-email" in page
    assert 3500 <= int(_field(page, "expires")) <= 3600
    before = _field(page, "token-id")
    assert (await demo.post("/renew")).status_code == 302
    assert _field((await demo.get("/")).text, "token-id") != before
    assert (await demo.post("/spotify/logout?next=/")).status_code == 302
    assert 'id="login"' in (await demo.get("/")).text


async def test_demo_denied_consent_gets_a_friendly_page(demo: Browser) -> None:
    callback = await demo.consent(await demo.start_login(), approve=False)
    response = await demo.http.get(callback)
    assert response.status_code == 403
    assert 'id="error"' in response.text
    assert "<h1>Login cancelled</h1>" in response.text  # in words, not "Forbidden"
    assert "did not grant" in response.text
    assert "Log in again" in response.text


async def test_demo_broken_callback_gets_a_friendly_page(demo: Browser) -> None:
    response = await demo.get("/callback/?code=abc")
    assert response.status_code == 400
    assert 'id="error"' in response.text
    assert "<h1>Login could not be completed</h1>" in response.text


async def test_demo_rate_limited_login_says_when_to_start_again(
    demo: Browser, fake: FakeSpotify
) -> None:
    callback = await demo.consent(await demo.start_login())
    fake.rate_limit_next(1, retry_after=9)
    response = await demo.http.get(callback)
    assert response.status_code == 503 and 'id="error"' in response.text
    assert response.headers["Retry-After"] == "9"  # the page of its own keeps the header
    assert "Start the login again later" in response.text


@pytest.mark.parametrize(
    ("accounts_url", "said"),
    [
        (None, "Real Spotify"),
        ("https://accounts.spotify.com/", "Real Spotify"),
        ("http://127.0.0.1:5001", "The Spotify at http://127.0.0.1:5001 (SPOTIFY_ACCOUNTS_URL)"),
    ],
)
async def test_the_demo_with_credentials_names_the_spotify_it_talks_to(
    monkeypatch: pytest.MonkeyPatch, accounts_url: str | None, said: str
) -> None:
    """The quickstart's exports (a fake of the user's own) left set: the page does not claim
    real Spotify."""
    monkeypatch.setenv("SPOTIFY_CLIENT_ID", "demo-client")
    if accounts_url is None:
        monkeypatch.delenv("SPOTIFY_ACCOUNTS_URL", raising=False)
    else:
        monkeypatch.setenv("SPOTIFY_ACCOUNTS_URL", accounts_url)
    app = create_app(port=free_port())
    async with app.test_app():
        page = await (await app.test_client().get("/")).get_data(as_text=True)
    assert f'<p class="mode">{said}</p>' in page
