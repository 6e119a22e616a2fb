"""The framework-free accounts client against FakeSpotify, in-process."""

from __future__ import annotations

import secrets
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from quart_spotify_auth import (
    InvalidCallback,
    InvalidClient,
    ReauthorizationRequired,
    SpotifyBadResponse,
    SpotifyUnavailable,
)
from quart_spotify_auth.accounts import (
    AccountsClient,
    code_challenge,
)
from quart_spotify_auth.config import Settings, load_settings
from quart_spotify_auth.retry import Retry
from quart_spotify_auth.scopes import parse_scopes
from quart_spotify_auth.testing import FakeClock, FakeSpotify, make_fake

from ._httplib import httpx

REDIRECT = "http://127.0.0.1:5000/callback/"


class Sleeps:
    """Records the waits the client asks for instead of waiting."""

    def __init__(self) -> None:
        self.waits: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


@pytest.fixture(name="sleeps")
def _sleeps() -> Sleeps:
    return Sleeps()


def _settings(
    client_id: str = "id", secret: str | None = "secret", accounts_url: str = "https://fake"
) -> Settings:
    return load_settings(
        {
            "SPOTIFY_CLIENT_ID": client_id,
            "SPOTIFY_CLIENT_SECRET": secret,
            "SPOTIFY_ACCOUNTS_URL": accounts_url,
        }
    )


def _client(
    fake: FakeSpotify,
    sleeps: Sleeps,
    *,
    secret: str | None = "test-secret",
    retries: int = 2,
    retry_after_cap: float = 5.0,
) -> AccountsClient:
    http = httpx.AsyncClient(transport=httpx.ASGITransport(app=fake))
    settings = _settings("test-client", secret)
    retry = Retry(retries, retry_after_cap, sleep=sleeps)
    return AccountsClient(settings, http, clock=fake.clock, retry=retry)


def _mocked(handler: Callable[[httpx.Request], httpx.Response], sleeps: Sleeps) -> AccountsClient:
    """A client against ``httpx.MockTransport(handler)``."""
    http = httpx.AsyncClient(transport=httpx.MockTransport(handler))
    return AccountsClient(_settings(), http, retry=Retry(sleep=sleeps))


async def _login(client: AccountsClient, fake: FakeSpotify, verifier: str | None = None) -> str:
    url = client.authorize_url(
        redirect_uri=REDIRECT,
        state=secrets.token_urlsafe(32),
        scopes=["user-read-email"],
        challenge=code_challenge(verifier) if verifier else None,
    )
    location = fake.decide(url, user="alice")
    return parse_qs(urlsplit(location).query)["code"][0]


def test_helpers() -> None:
    verifier = secrets.token_urlsafe(64)
    assert 43 <= len(verifier) <= 128
    assert secrets.token_urlsafe(32) != secrets.token_urlsafe(32)
    assert parse_scopes(None) == ()
    assert parse_scopes("a b  a,c") == ("a", "b", "c")


async def test_authorize_url_shape(sleeps: Sleeps) -> None:
    client = _client(make_fake(), sleeps)
    url = urlsplit(client.authorize_url(redirect_uri=REDIRECT, state="s", show_dialog=True))
    assert url.path == "/authorize"  # no trailing slash
    query = parse_qs(url.query)
    assert query["show_dialog"] == ["true"]
    assert "scope" not in query


async def test_exchange_and_refresh_confidential(sleeps: Sleeps) -> None:
    fake = make_fake()
    client = _client(fake, sleeps)
    code = await _login(client, fake)
    record = await client.exchange_code(code, redirect_uri=REDIRECT, code_verifier=None)
    assert record.scopes == {"user-read-email"}
    assert record.refresh_token
    renewed = await client.refresh(record)
    assert renewed.access_token != record.access_token
    assert renewed.refresh_token == record.refresh_token  # none came back: the old one is kept
    assert renewed.authorized_at == record.authorized_at


async def test_rotation_is_stored(sleeps: Sleeps) -> None:
    fake = make_fake(rotate_confidential=True)
    client = _client(fake, sleeps)
    record = await client.exchange_code(
        await _login(client, fake), redirect_uri=REDIRECT, code_verifier=None
    )
    first = await client.refresh(record)
    second = await client.refresh(first)
    assert len({record.refresh_token, first.refresh_token, second.refresh_token}) == 3
    with pytest.raises(ReauthorizationRequired):
        await client.refresh(record)  # the rotated-away token is dead


async def test_public_client_pkce(sleeps: Sleeps) -> None:
    fake = make_fake(client_secret=None)
    client = _client(fake, sleeps, secret=None)
    verifier = secrets.token_urlsafe(64)
    code = await _login(client, fake, verifier)
    record = await client.exchange_code(code, redirect_uri=REDIRECT, code_verifier=verifier)
    renewed = await client.refresh(record)
    assert renewed.refresh_token != record.refresh_token  # PKCE always rotates
    with pytest.raises(InvalidClient, match="SPOTIFY_CLIENT_SECRET"):
        await client.client_credentials()


async def test_wrong_verifier_is_a_rejected_code(sleeps: Sleeps) -> None:
    fake = make_fake(client_secret=None)
    client = _client(fake, sleeps, secret=None)
    code = await _login(client, fake, secrets.token_urlsafe(64))
    with pytest.raises(InvalidCallback, match="code_verifier was incorrect"):
        await client.exchange_code(
            code, redirect_uri=REDIRECT, code_verifier=secrets.token_urlsafe(64)
        )


async def test_expired_code(sleeps: Sleeps) -> None:
    clock = FakeClock()
    fake = make_fake(clock=clock)
    client = _client(fake, sleeps)
    code = await _login(client, fake)
    clock.advance(601)
    with pytest.raises(InvalidCallback, match="Authorization code expired"):
        await client.exchange_code(code, redirect_uri=REDIRECT, code_verifier=None)


async def test_revoked_refresh_is_reauthorization(sleeps: Sleeps) -> None:
    fake = make_fake()
    client = _client(fake, sleeps)
    record = await client.exchange_code(
        await _login(client, fake), redirect_uri=REDIRECT, code_verifier=None
    )
    fake.revoke("alice")
    with pytest.raises(ReauthorizationRequired) as info:
        await client.refresh(record)
    assert info.value.code == 401
    assert fake.requests["token:refresh_token"] == 1  # never retried


async def test_six_month_limit_is_reauthorization(sleeps: Sleeps) -> None:
    clock = FakeClock()
    fake = make_fake(clock=clock)
    client = _client(fake, sleeps)
    record = await client.exchange_code(
        await _login(client, fake), redirect_uri=REDIRECT, code_verifier=None
    )
    assert record.reauthorize_by - record.authorized_at == pytest.approx(182 * 86400)
    clock.advance(184 * 86400)
    with pytest.raises(ReauthorizationRequired):
        await client.refresh(record)


async def test_client_credentials(sleeps: Sleeps) -> None:
    fake = make_fake()
    record = await _client(fake, sleeps).client_credentials()
    assert record.refresh_token is None
    assert record.scopes == frozenset()


async def test_wrong_secret(sleeps: Sleeps) -> None:
    fake = make_fake()
    with pytest.raises(InvalidClient, match="Invalid client secret") as info:
        await _client(fake, sleeps, secret="nope").client_credentials()
    assert "nope" not in str(info.value.description)
    assert info.value.code == 502


async def test_5xx_is_retried_with_backoff(sleeps: Sleeps) -> None:
    fake = make_fake()
    fake.fail_next(2)
    record = await _client(fake, sleeps).client_credentials()
    assert record.access_token
    assert len(sleeps.waits) == 2
    assert all(0 <= w <= 0.2 * 2**i for i, w in enumerate(sleeps.waits, start=1))


async def test_5xx_exhausted_is_503(sleeps: Sleeps) -> None:
    fake = make_fake()
    fake.fail_next(5)
    with pytest.raises(SpotifyUnavailable, match="HTTP 503"):
        await _client(fake, sleeps, retries=1).client_credentials()
    assert fake.requests["token"] == 2


async def test_429_within_the_cap_is_waited_out(sleeps: Sleeps) -> None:
    fake = make_fake()
    fake.rate_limit_next(1, retry_after=3)
    await _client(fake, sleeps, retry_after_cap=5.0).client_credentials()
    assert 3 in sleeps.waits


async def test_a_code_refused_with_429_is_sent_again_after_its_retry_after(
    sleeps: Sleeps,
) -> None:
    """A 429 is refused unread, so even a code (spent once used) may be sent again: the
    login goes through, where a 503 would have sent the user back to the start."""
    fake = make_fake()
    client = _client(fake, sleeps)
    code = await _login(client, fake)
    fake.rate_limit_next(1, retry_after=2)
    record = await client.exchange_code(code, redirect_uri=REDIRECT, code_verifier=None)
    assert record.refresh_token and sleeps.waits == [2]
    assert fake.requests["token"] == 2 and fake.requests["token:authorization_code"] == 1


@pytest.mark.parametrize(
    "body",
    [
        {"access_token": "a\r\nX-Forged: 1", "expires_in": 3600},
        {"access_token": "tok en", "expires_in": 3600},
        {"access_token": "é" * 10, "expires_in": 3600},
        {"access_token": "a" * 5000, "expires_in": 3600},
        {"access_token": "a", "refresh_token": "r\n", "expires_in": 3600},
    ],
)
async def test_a_token_that_cannot_go_in_a_header_is_an_unreadable_reply(
    sleeps: Sleeps, body: dict[str, Any]
) -> None:
    """Stored, it would fail on every later call as a network error, naming the wrong cause."""
    client = _mocked(lambda r: httpx.Response(200, json=body), sleeps)
    with pytest.raises(SpotifyBadResponse, match="wrong type or form"):
        await client.client_credentials()


async def test_spotifys_error_text_is_one_short_line_on_the_page_and_in_the_log(
    sleeps: Sleeps, caplog: pytest.LogCaptureFixture
) -> None:
    description = "line one\nERROR forged log line " + "x" * 5000
    body = {"error": {"nested": "object"}, "error_description": description}
    client = _mocked(lambda r: httpx.Response(400, json=body), sleeps)
    with pytest.raises(SpotifyBadResponse) as info:
        await client.client_credentials()
    said = str(info.value.description)
    assert "\n" not in said and "unknown_error" in said and "nested" not in said
    assert "line one ERROR forged" in said and len(said) < 400
    logged = [r.getMessage() for r in caplog.records if "refused" in r.getMessage()]
    assert logged and all("\n" not in m and len(m) < 400 for m in logged)


async def test_429s_are_waited_out_by_time_not_by_count(sleeps: Sleeps) -> None:
    # A rate limit lasting four Retry-After periods is outlasted within a 5 s cap, though
    # SPOTIFY_RETRIES (for faults) is 2: the budget for 429s is time.
    fake = make_fake()
    fake.rate_limit_next(4, retry_after=1)
    assert await _client(fake, sleeps, retries=2, retry_after_cap=5.0).client_credentials()
    assert sleeps.waits == [1, 1, 1, 1] and fake.requests["token"] == 5


async def test_429s_longer_than_the_cap_altogether_are_503(sleeps: Sleeps) -> None:
    fake = make_fake()
    fake.rate_limit_next(10, retry_after=2)
    with pytest.raises(SpotifyUnavailable, match="rate-limiting") as info:
        await _client(fake, sleeps, retry_after_cap=5.0).client_credentials()
    assert sleeps.waits == [2, 2]  # a third would make 6 s
    assert info.value.retry_after == 2 and fake.requests["token"] == 3


async def test_429_beyond_the_cap_is_503_with_retry_after(sleeps: Sleeps) -> None:
    fake = make_fake()
    fake.rate_limit_next(1, retry_after=60)
    with pytest.raises(SpotifyUnavailable) as info:
        await _client(fake, sleeps).client_credentials()
    assert info.value.retry_after == 60
    assert ("Retry-After", "60") in info.value.get_headers()
    assert 60 not in sleeps.waits


@pytest.mark.parametrize(("header", "said"), [("60.5", 61), ("0.2", 1)])
async def test_a_token_429s_retry_after_is_whole_seconds_rounded_up(
    sleeps: Sleeps, header: str, said: int
) -> None:
    http = httpx.AsyncClient(
        transport=httpx.MockTransport(
            lambda r: httpx.Response(429, headers={"Retry-After": header})
        )
    )
    client = AccountsClient(_settings(), http, retry=Retry(0, 0.0, sleep=sleeps))
    with pytest.raises(SpotifyUnavailable) as info:
        await client.client_credentials()
    assert info.value.retry_after == said
    assert ("Retry-After", str(said)) in info.value.get_headers()


async def test_a_429_asking_for_no_wait_is_waited_a_second_each_time(sleeps: Sleeps) -> None:
    """Retry-After: 0 again and again: one request a second within the cap, not dozens."""
    sent = []

    def limited(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        return httpx.Response(429, headers={"Retry-After": "0"})

    with pytest.raises(SpotifyUnavailable):
        await _mocked(limited, sleeps).client_credentials()
    assert sleeps.waits == [1.0] * 5 and len(sent) == 6  # the 5 s cap: five waits


async def test_background_waits_longer_rate_limits(sleeps: Sleeps) -> None:
    fake = make_fake()
    client = _client(fake, sleeps)
    record = await client.exchange_code(
        await _login(client, fake), redirect_uri=REDIRECT, code_verifier=None
    )
    fake.rate_limit_next(1, retry_after=60)
    assert await client.refresh(record, max_wait=3600)
    assert 60 in sleeps.waits


async def test_non_json_is_502(sleeps: Sleeps) -> None:
    fake = make_fake()
    fake.garbage_next(3)
    with pytest.raises(SpotifyBadResponse, match="unreadable"):
        await _client(fake, sleeps).client_credentials()


async def test_network_error_is_503(sleeps: Sleeps) -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    client = _mocked(refuse, sleeps)
    with pytest.raises(SpotifyUnavailable, match="ConnectError"):
        await client.client_credentials()
    assert len(sleeps.waits) == 2


async def test_a_code_that_waited_for_a_pool_connection_was_never_sent(sleeps: Sleeps) -> None:
    """A ``PoolTimeout`` means no connection was free: the code never left, so it is sent
    again after a backoff rather than called lost ("cannot be sent twice")."""
    sent: list[str] = []

    def pool_full_once(request: httpx.Request) -> httpx.Response:
        sent.append(request.content.decode())
        if len(sent) == 1:
            raise httpx.PoolTimeout("no connection free", request=request)
        return httpx.Response(
            200, json={"access_token": "a", "token_type": "Bearer", "expires_in": 3600}
        )

    client = _mocked(pool_full_once, sleeps)
    record = await client.exchange_code("the-code", redirect_uri=REDIRECT, code_verifier=None)
    assert record.access_token == "a"
    assert len(sent) == 2 and "code=the-code" in sent[1] and len(sleeps.waits) == 1


@pytest.mark.parametrize(
    "body",
    [
        {"token_type": "Bearer", "expires_in": 3600},
        {"access_token": "a", "token_type": "Bearer", "expires_in": "soon"},
        {"access_token": "a", "token_type": "mac", "expires_in": 3600},
        {"access_token": "a", "expires_in": True},
        {"access_token": "a", "expires_in": 3600, "scope": 5},
        {"access_token": "a", "expires_in": 3600, "refresh_token": 7},
        [1, 2],
    ],
)
async def test_malformed_success_is_502(sleeps: Sleeps, body: object) -> None:
    client = _mocked(lambda r: httpx.Response(200, json=body), sleeps)
    with pytest.raises(SpotifyBadResponse):
        await client.client_credentials()


async def test_unexpected_error_on_refresh_is_502(sleeps: Sleeps) -> None:
    reply = {"error": "invalid_request", "error_description": "odd"}
    client = _mocked(lambda r: httpx.Response(400, json=reply), sleeps)
    from quart_spotify_auth.tokens import TokenRecord

    record = TokenRecord("a", "r", 10.0, 0.0, frozenset(), 0.0)
    with pytest.raises(SpotifyBadResponse, match="invalid_request: odd"):
        await client.refresh(record)
    with pytest.raises(SpotifyBadResponse, match="invalid_request"):
        await client.client_credentials()
    with pytest.raises(ReauthorizationRequired):
        await client.refresh(TokenRecord("a", None, 10.0, 0.0, frozenset(), 0.0))


async def test_secret_not_in_reprs() -> None:
    settings = _settings(secret="very-secret")
    async with httpx.AsyncClient() as http:
        client = AccountsClient(settings, http)
        assert "very-secret" not in repr(settings) + repr(client) + repr(client.settings)


@pytest.mark.parametrize("expires_in", ["NaN", "Infinity", "1e400", "1" + "0" * 400, "-5"])
async def test_absurd_lifetimes_are_502(sleeps: Sleeps, expires_in: str) -> None:
    body = f'{{"access_token": "a", "token_type": "Bearer", "expires_in": {expires_in}}}'
    client = _mocked(
        lambda r: httpx.Response(
            200, content=body.encode(), headers={"content-type": "application/json"}
        ),
        sleeps,
    )
    with pytest.raises(SpotifyBadResponse):
        await client.client_credentials()


async def test_long_lifetimes_are_clamped(sleeps: Sleeps) -> None:
    body = {"access_token": "a", "token_type": "Bearer", "expires_in": 10**9}
    client = _mocked(lambda r: httpx.Response(200, json=body), sleeps)
    record = await client.client_credentials()
    assert record.lifetime == 86400


@pytest.mark.parametrize("header", ["inf", "1e999", "nan", "soon", "-3"])
async def test_absurd_retry_after_is_handled(sleeps: Sleeps, header: str) -> None:
    replies = iter(
        [
            httpx.Response(429, headers={"Retry-After": header}),
            httpx.Response(200, json={"access_token": "a", "expires_in": 60}),
        ]
    )
    client = _mocked(lambda r: next(replies), sleeps)
    try:
        await client.client_credentials()
    except SpotifyUnavailable as exc:  # a wait beyond the cap: a clean 503
        assert exc.retry_after is not None and 5 < exc.retry_after <= 86400
    assert all(0 <= w <= 86400 for w in sleeps.waits)
