"""The demo in a real headless Chromium (Debian's, driven by Playwright), served by hypercorn
against a hypercorn-served FakeSpotify: log in, consent, see the profile, watch the countdown
roll over when the background renewal lands, renew, log out; and deny consent.

Set QSA_SCREENSHOT=path to also save a screenshot of the logged-in page (the README's)."""

from __future__ import annotations

import os
import shutil
from collections.abc import AsyncIterator
from typing import Any

import pytest

from quart_spotify_auth.demo import create_app
from quart_spotify_auth.serving import free_port, serve
from quart_spotify_auth.testing import make_fake

from .servers import IN_CI

pytestmark = pytest.mark.slow

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


def _browser_or_skip() -> Any:
    try:
        from playwright.async_api import async_playwright
    except ImportError:
        if IN_CI:
            pytest.fail("playwright is not installed, and CI=true needs it")
        pytest.skip("playwright is not installed")
    if not os.path.exists(CHROMIUM):
        if IN_CI:
            pytest.fail("chromium is not installed, and CI=true needs it (see .ci/run)")
        pytest.skip("chromium is not installed (apt-get install chromium)")
    return async_playwright


@pytest.fixture(name="page")
async def _page() -> AsyncIterator[tuple[Any, str]]:
    async_playwright = _browser_or_skip()
    port = free_port()
    fake = make_fake(
        client_id="demo-client",
        client_secret="demo-secret",
        redirect_uri=f"http://127.0.0.1:{port}/callback/",
        access_ttl=6,  # renewed at its midpoint: the countdown rolls over within seconds
    )
    async with (
        serve(fake) as fake_url,
        serve(create_app(port=port, fake_url=fake_url), port=port) as app_url,
        async_playwright() as playwright,
    ):
        browser = await playwright.chromium.launch(
            executable_path=CHROMIUM,
            headless=True,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run"],
        )  # fmt: skip
        try:
            page = await browser.new_page(viewport={"width": 900, "height": 720})
            yield page, app_url
        finally:
            await browser.close()


async def test_demo_in_a_real_browser(page: tuple[Any, str]) -> None:
    browser, app_url = page
    await browser.goto(app_url + "/")
    await browser.click("#login")
    # Spotify's (fake) consent page: pick a user, agree.
    await browser.wait_for_selector("#agree")
    assert "Log in to Spotify (fake)" in await browser.title()
    await browser.select_option("select[name=user]", "bob")
    await browser.click("#agree")
    await browser.wait_for_selector("#name")
    assert await browser.text_content("#name") == "Bob"
    assert "user-read-email" in (await browser.text_content("#scopes") or "")
    first = await browser.text_content("#token-id")
    # The countdown follows the token endpoint; the background renewal rolls it over.
    await browser.wait_for_function(
        "document.getElementById('renewals').textContent === '1'", timeout=15_000
    )
    rolled = await browser.text_content("#token-id")
    assert rolled != first
    left = int(await browser.text_content("#expires") or "0")
    assert left >= 3
    if target := os.environ.get("QSA_SCREENSHOT"):
        await browser.screenshot(path=target)
    await browser.click("#renew")
    await browser.wait_for_selector("#name")
    assert await browser.text_content("#token-id") not in (first, rolled)
    await browser.click("#logout")
    await browser.wait_for_selector("#login")


async def test_denied_consent_gets_the_friendly_page(page: tuple[Any, str]) -> None:
    browser, app_url = page
    await browser.goto(app_url + "/")
    await browser.click("#login")
    await browser.wait_for_selector("#cancel")
    await browser.click("#cancel")
    await browser.wait_for_selector("#error")
    assert "did not grant" in (await browser.text_content("#error") or "")
    assert "Log in again" in await browser.content()


async def test_a_form_on_another_site_cannot_log_the_user_out(page: tuple[Any, str]) -> None:
    from quart import Quart

    browser, app_url = page
    await browser.goto(app_url + "/")
    await browser.click("#login")
    await browser.wait_for_selector("#agree")
    await browser.click("#agree")
    await browser.wait_for_selector("#name")
    evil = Quart("evil")

    @evil.route("/")
    async def lure() -> str:
        return (
            f'<form id="f" method="post" action="{app_url}/spotify/logout?next=/"></form>'
            "<script>document.getElementById('f').submit()</script>"
        )

    async with serve(evil) as evil_url:
        await browser.goto(evil_url + "/")
        await browser.wait_for_url(app_url + "/spotify/logout?next=/")
        assert "another site" in await browser.content()
        await browser.goto(app_url + "/")
        assert await browser.text_content("#name") == "Alice"  # still logged in
        # The app's own button still works.
        await browser.click("#logout")
        await browser.wait_for_selector("#login")
