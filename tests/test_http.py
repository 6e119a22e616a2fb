"""The whole flow over real HTTP: hypercorn serves the app and FakeSpotify on 127.0.0.1."""

from __future__ import annotations

import base64
import logging
import zlib
from urllib.parse import parse_qsl, urlencode, urlsplit

import pytest

from quart_spotify_auth.testing import FakeClock

from .apps import CLIENT_SECRET
from .conftest import Stack


async def test_full_login_over_http(stack: Stack) -> None:
    async with stack.browser() as browser:
        response = await browser.login("alice")
        assert response.status_code == 302
        token = (await browser.get("/token")).json()
        assert token["scopes"] == ["user-read-email", "user-read-private"]
        me = await browser.get("/me")
        assert me.status_code == 200
        assert me.json()["id"] == "alice"
        assert me.json()["email"] == "alice@example.com"
    assert stack.fake.requests["token:authorization_code"] == 1


async def test_two_browsers_get_their_own_users(stack: Stack) -> None:
    async with stack.browser() as one, stack.browser() as two, stack.browser() as stranger:
        await one.login("alice")
        await two.login("bob")
        for _ in range(3):
            assert (await one.get("/me")).json()["id"] == "alice"
            assert (await two.get("/me")).json()["id"] == "bob"
        assert (await one.get("/token")).json() != (await two.get("/token")).json()
        response = await stranger.get("/token")
        assert response.status_code == 401
        assert "Log in" in response.text


async def test_forged_state_is_refused_and_stores_nothing(stack: Stack) -> None:
    async with stack.browser() as browser:
        query = await browser.start_login()
        callback = await browser.consent({**query, "state": "forged-by-someone"})
        response = await browser.http.get(callback)
        assert response.status_code == 400
        assert "not started in this browser" in response.text
        assert (await browser.get("/status")).json() == {"logged_in": False}
        # The genuine pending login is untouched and still completes.
        response = await browser.http.get(await browser.consent(query))
        assert response.status_code == 302


async def test_missing_state_is_refused(stack: Stack) -> None:
    async with stack.browser() as browser:
        query = await browser.start_login()
        callback = urlsplit(await browser.consent(query))
        params = {k: v for k, v in parse_qsl(callback.query) if k != "state"}
        response = await browser.get(f"{callback.path}?{urlencode(params)}")
        assert response.status_code == 400
        assert "no state" in response.text
    assert stack.fake.requests["token:authorization_code"] == 0


async def test_callback_without_a_session_names_the_host_trap(stack: Stack) -> None:
    async with stack.browser() as starter, stack.browser() as other:
        callback = await starter.consent(await starter.start_login())
        response = await other.http.get(callback)
        assert response.status_code == 400
        assert "127.0.0.1" in response.text and "cookies" in response.text
        # The other browser did not burn the starter's login.
        assert (await starter.http.get(callback)).status_code == 302


async def test_replayed_callback_is_refused(stack: Stack) -> None:
    async with stack.browser() as browser:
        callback = await browser.consent(await browser.start_login())
        assert (await browser.http.get(callback)).status_code == 302
        token = (await browser.get("/token")).json()
        response = await browser.http.get(callback)
        assert response.status_code == 400
        assert (await browser.get("/token")).json()["access_token"] == token["access_token"]
    assert stack.fake.requests["token:authorization_code"] == 1


async def test_replayed_code_with_a_fresh_state_keeps_the_login(stack: Stack) -> None:
    async with stack.browser() as browser:
        first = await browser.consent(await browser.start_login())
        await browser.http.get(first)
        token = (await browser.get("/token")).json()
        old_code = dict(parse_qsl(urlsplit(first).query))["code"]
        fresh = await browser.start_login()
        response = await browser.get(f"/callback/?code={old_code}&state={fresh['state']}")
        assert response.status_code == 400
        assert "Invalid authorization code" in response.text
        assert (await browser.get("/token")).json()["access_token"] == token["access_token"]


async def test_denied_consent_is_403(stack: Stack) -> None:
    async with stack.browser() as browser:
        callback = await browser.consent(await browser.start_login(), approve=False)
        assert "error=access_denied" in callback
        response = await browser.http.get(callback)
        assert response.status_code == 403
        assert "did not grant" in response.text
        assert (await browser.get("/status")).json() == {"logged_in": False}
        # The denial used up its state: replaying it is a plain 400 now.
        state = dict(parse_qsl(urlsplit(callback).query))["state"]
        response = await browser.get(f"/callback/?code=x&state={state}")
        assert response.status_code == 400


@pytest.mark.parametrize("stack", [{"clock": FakeClock()}], indirect=True)
async def test_expired_state_is_refused(stack: Stack) -> None:
    clock = stack.spotify.core(stack.app).clock
    assert isinstance(clock, FakeClock)
    async with stack.browser() as browser:
        callback = await browser.consent(await browser.start_login())
        clock.advance(601)
        response = await browser.http.get(callback)
        assert response.status_code == 400
        assert "expired" in response.text
        assert (await browser.get("/status")).json() == {"logged_in": False}


async def test_token_endpoint_5xx_on_the_code_is_503_and_never_sent_twice(stack: Stack) -> None:
    async with stack.browser() as browser:
        callback = await browser.consent(await browser.start_login())
        stack.fake.fail_next(3)
        response = await browser.http.get(callback)
        assert response.status_code == 503
        assert "HTTP 503" in response.text
        assert stack.fake.requests["token"] == 1  # Spotify may have used the code


async def test_token_endpoint_5xx_on_a_refresh_after_retries_is_503(stack: Stack) -> None:
    async with stack.browser() as browser:
        await browser.login()
        before = stack.fake.requests["token"]
        stack.fake.fail_next(3)  # the first try and both retries
        response = await browser.post("/renew")
        assert response.status_code == 503
        assert "HTTP 503" in response.text
        assert stack.fake.requests["token"] - before == 3


async def test_token_endpoint_recovers_within_retries(stack: Stack) -> None:
    async with stack.browser() as browser:
        await browser.login()
        first = (await browser.get("/token")).json()["access_token"]
        stack.fake.fail_next(2, status=500)
        assert (await browser.post("/renew")).status_code == 200
        assert (await browser.get("/token")).json()["access_token"] != first
        assert (await browser.get("/me")).json()["id"] == "alice"


async def test_token_endpoint_non_json_is_502(stack: Stack) -> None:
    async with stack.browser() as browser:
        callback = await browser.consent(await browser.start_login())
        stack.fake.garbage_next(3)
        response = await browser.http.get(callback)
        assert response.status_code == 502
        assert "unreadable reply" in response.text
        assert "Start the login again" in response.text  # the code and the state are spent


@pytest.mark.parametrize("failure", ["500", "429"])
async def test_a_failed_code_exchange_says_to_start_the_login_again(
    stack: Stack, failure: str
) -> None:
    """A code is sent once (Spotify may have spent it) and the callback's state is crossed
    off before: loading the callback again cannot work, so the page says to log in again,
    not to retry. A 429 still says when (Retry-After)."""
    async with stack.browser() as browser:
        callback = await browser.consent(await browser.start_login())
        if failure == "429":
            stack.fake.rate_limit_next(1, retry_after=7)
        else:
            stack.fake.fail_next(1, status=500)
        sent = stack.fake.requests["token"]
        response = await browser.http.get(callback)
        assert response.status_code == 503
        assert "Start the login again" in response.text and "Try again" not in response.text
        if failure == "429":
            assert response.headers["Retry-After"] == "7"
        assert stack.fake.requests["token"] == sent + 1  # the code is never sent twice
        again = await browser.http.get(callback)  # as the page says: this cannot work
        assert again.status_code == 400 and "Start the login again" in again.text


@pytest.mark.parametrize(
    "stack", [{"SPOTIFY_HTTP_TIMEOUT": 0.2, "SPOTIFY_RETRIES": 0}], indirect=True
)
async def test_token_endpoint_timeout_is_503(stack: Stack) -> None:
    async with stack.browser() as browser:
        callback = await browser.consent(await browser.start_login())
        stack.fake.slow = 2.0
        response = await browser.http.get(callback)
        assert response.status_code == 503
        assert "did not answer" in response.text and "Start the login again" in response.text
        assert "Timeout" in response.text


@pytest.mark.parametrize("stack", [{"SPOTIFY_CLIENT_SECRET": "wrong-secret"}], indirect=True)
async def test_invalid_client_says_check_the_credentials(stack: Stack) -> None:
    async with stack.browser() as browser:
        callback = await browser.consent(await browser.start_login())
        response = await browser.http.get(callback)
        assert response.status_code == 502
        assert "Invalid client secret" in response.text
        assert "SPOTIFY_CLIENT_SECRET" in response.text
        assert "wrong-secret" not in response.text


@pytest.mark.parametrize("stack", [{"SPOTIFY_RETRY_AFTER_CAP": 0.5}], indirect=True)
async def test_rate_limit_beyond_the_cap_is_503_with_retry_after(stack: Stack) -> None:
    async with stack.browser() as browser:
        callback = await browser.consent(await browser.start_login())
        stack.fake.rate_limit_next(1, retry_after=30)
        response = await browser.http.get(callback)
        assert response.status_code == 503
        assert response.headers["retry-after"] == "30"


def _session_payload(cookie: str) -> str:
    """The readable content of Quart's signed session cookie."""
    payload = cookie.split(".")[0] if not cookie.startswith(".") else cookie.split(".")[1]
    raw = base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))
    return (zlib.decompress(raw) if cookie.startswith(".") else raw).decode()


async def test_no_secret_reaches_cookies_logs_reprs_or_error_pages(
    stack: Stack, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    pages: list[str] = []
    async with stack.browser() as browser:
        callback = await browser.consent(await browser.start_login())
        code = dict(parse_qsl(urlsplit(callback).query))["code"]
        await browser.http.get(callback)
        token = (await browser.get("/token")).json()["access_token"]
        core = stack.spotify.core(stack.app)
        record = next(iter(core.store._records.values()))  # type: ignore[attr-defined]
        refresh = record.refresh_token
        # Error pages of every kind, with a live login around.
        pages.append((await browser.http.get(callback)).text)  # replay: 400
        stack.fake.fail_next(3)
        pages.append((await browser.post("/renew")).text)  # 503
        stack.fake.garbage_next(3)
        pages.append((await browser.post("/renew")).text)  # 502
        stack.fake.revoke("alice")
        pages.append((await browser.post("/renew")).text)  # 401
        cookies = [_session_payload(c) for c in browser.http.cookies.values()]
    reprs = [repr(stack.spotify), repr(core), repr(record), repr(core.accounts)]
    reprs += [repr(core.settings), repr(core.refresher), repr(core.renewer)]
    # The test's own browser logs its URLs (with the code) through httpx; everything else,
    # the app, the extension, Quart and hypercorn, must not.
    logs = [r.getMessage() for r in caplog.records if not r.name.startswith(("httpx", "httpcore"))]
    assert any(r.name == "quart_spotify_auth" for r in caplog.records)
    everything = "\n".join([*pages, *cookies, *logs, *reprs])
    assert "login" in cookies[0]  # the cookie was decoded, it is not an empty check
    for secret in (token, refresh, code, CLIENT_SECRET):
        assert secret and secret not in everything
