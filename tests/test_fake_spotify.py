"""Tests for quart_spotify_auth.testing.FakeSpotify, driven in-process through httpx."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import socket
import time
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
from hypercorn.asyncio import serve
from hypercorn.config import Config

from quart_spotify_auth.testing import (
    FakeAuthorizeError,
    FakeClock,
    FakeSpotify,
    FakeUser,
    make_fake,
)

from ._httplib import httpx

CLIENT_ID = "test-client"
SECRET = "test-secret"
REDIRECT = "http://127.0.0.1:5000/callback/"
PUBLIC_ID = "public-app"
PUBLIC_REDIRECT = "http://127.0.0.1/cb"
START = 1_800_000_000.0
VERIFIER = "v" * 20 + "-._~" + "x" * 30


def s256(verifier: str) -> str:
    digest = hashlib.sha256(verifier.encode()).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def basic(client_id: str = CLIENT_ID, secret: str = SECRET) -> dict[str, str]:
    raw = base64.b64encode(f"{client_id}:{secret}".encode()).decode()
    return {"Authorization": f"Basic {raw}"}


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def query_of(url: str) -> dict[str, list[str]]:
    return parse_qs(urlsplit(url).query, keep_blank_values=True)


def auth_params(**overrides: str | None) -> dict[str, str]:
    params: dict[str, str | None] = {
        "client_id": CLIENT_ID,
        "response_type": "code",
        "redirect_uri": REDIRECT,
        "scope": "user-read-email user-read-private",
        "state": "xyz",
    }
    params.update(overrides)
    return {k: v for k, v in params.items() if v is not None}


def pkce_params(**overrides: str | None) -> dict[str, str]:
    base: dict[str, str | None] = {
        "client_id": PUBLIC_ID,
        "redirect_uri": PUBLIC_REDIRECT,
        "code_challenge": s256(VERIFIER),
        "code_challenge_method": "S256",
    }
    base.update(overrides)
    return auth_params(**base)


def authorize_url(params: dict[str, str]) -> str:
    return "https://accounts.spotify.com/authorize?" + urlencode(params)


def code_for(fake: FakeSpotify, params: dict[str, str], user: str = "alice") -> str:
    return query_of(fake.decide(authorize_url(params), user=user))["code"][0]


@pytest.fixture(name="clock")
def _clock() -> FakeClock:
    return FakeClock(START)


@pytest.fixture(name="fake")
def _fake(clock: FakeClock) -> FakeSpotify:
    fake = make_fake(clock=clock)
    fake.add_client(PUBLIC_ID, None, [PUBLIC_REDIRECT, "https://app.example/cb?x=1"])
    return fake


@pytest.fixture(name="http")
async def _http(fake: FakeSpotify) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=fake)
    async with httpx.AsyncClient(transport=transport, base_url="http://fake") as client:
        yield client


async def exchange(
    http: httpx.AsyncClient, code: str, *, redirect_uri: str = REDIRECT, **extra: str
) -> httpx.Response:
    data = {"grant_type": "authorization_code", "code": code, "redirect_uri": redirect_uri}
    return await http.post("/api/token", data=data | extra, headers=basic())


async def pkce_exchange(http: httpx.AsyncClient, code: str, **extra: str) -> httpx.Response:
    data = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": PUBLIC_REDIRECT,
        "client_id": PUBLIC_ID,
    }
    return await http.post("/api/token", data=data | extra)


async def refresh(http: httpx.AsyncClient, token: str, *, public: bool = False) -> httpx.Response:
    data = {"grant_type": "refresh_token", "refresh_token": token}
    if public:
        return await http.post("/api/token", data=data | {"client_id": PUBLIC_ID})
    return await http.post("/api/token", data=data, headers=basic())


def assert_oauth_error(reply: httpx.Response, error: str, description: str | None) -> None:
    assert reply.status_code == 400
    expected: dict[str, Any] = {"error": error}
    if description is not None:
        expected["error_description"] = description
    assert reply.json() == expected


# -- /authorize ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"client_id": "nope"}, "INVALID_CLIENT: Invalid client"),
        (
            {"redirect_uri": "http://127.0.0.1:5001/callback/"},
            "INVALID_CLIENT: Invalid redirect URI",
        ),
        ({"redirect_uri": "https://app.example/other"}, "INVALID_CLIENT: Invalid redirect URI"),
        ({"redirect_uri": None}, "INVALID_CLIENT: Invalid redirect URI"),
        # "insecure" has these registered: still refused.
        (
            {"client_id": "insecure", "redirect_uri": "http://localhost:5000/callback/"},
            "INVALID_CLIENT: Insecure redirect URI",
        ),
        (
            {"client_id": "insecure", "redirect_uri": "http://app.example/cb"},
            "INVALID_CLIENT: Insecure redirect URI",
        ),
        ({"redirect_uri": "https://localhost/cb"}, "INVALID_CLIENT: Insecure redirect URI"),
        ({"response_type": "token"}, "unsupported_response_type"),
        ({"response_type": None}, "unsupported_response_type"),
        ({"scope": "user-read-email user-read-birthdate"}, "Illegal scope"),
        ({"code_challenge": "abc"}, "code_challenge_method"),
        ({"code_challenge": "abc", "code_challenge_method": "plain"}, "code_challenge_method"),
    ],
)
async def test_authorize_errors(
    fake: FakeSpotify, http: httpx.AsyncClient, overrides: dict[str, str | None], message: str
) -> None:
    fake.add_client("insecure", "s", ["http://app.example/cb", "http://localhost:5000/callback/"])
    params = auth_params(**overrides)
    reply = await http.get("/authorize", params=params)
    assert reply.status_code == 400
    assert reply.headers["content-type"].startswith("text/html")
    assert message in reply.text
    assert "location" not in reply.headers
    with pytest.raises(FakeAuthorizeError, match=message):
        fake.decide(authorize_url(params))
    posted = await http.post("/authorize", data=params | {"action": "approve"})
    assert posted.status_code == 400
    assert message in posted.text


async def test_portless_loopback_registration_matches_any_port(fake: FakeSpotify) -> None:
    params = pkce_params(redirect_uri="http://127.0.0.1:8123/cb")
    assert fake.decide(authorize_url(params)).startswith("http://127.0.0.1:8123/cb?code=")
    ipv6 = fake.add_client("v6", "s", ["http://[::1]/cb"])
    location = fake.decide(
        authorize_url(auth_params(client_id=ipv6.client_id, redirect_uri="http://[::1]:9/cb"))
    )
    assert location.startswith("http://[::1]:9/cb?code=")
    with pytest.raises(FakeAuthorizeError, match="Invalid redirect URI"):
        fake.decide(authorize_url(pkce_params(redirect_uri="http://127.0.0.1:8123/other")))


async def test_consent_page(http: httpx.AsyncClient) -> None:
    reply = await http.get("/authorize", params=auth_params(state='"><b>x'))
    assert reply.status_code == 200
    page = reply.text
    assert "<title>Log in to Spotify (fake)</title>" in page
    assert CLIENT_ID in page
    assert "<code>user-read-email</code>" in page and "<code>user-read-private</code>" in page
    assert '<form method="post" action="/authorize">' in page
    assert '<select id="user" name="user">' in page
    assert '<option value="alice">Alice (alice)</option>' in page
    assert '<option value="bob">Bob (bob)</option>' in page
    assert 'id="agree" name="action" value="approve"' in page
    assert 'id="cancel" name="action" value="deny"' in page
    assert (
        '<input type="hidden" name="redirect_uri" value="http://127.0.0.1:5000/callback/">' in page
    )
    assert 'value="&quot;&gt;&lt;b&gt;x"' in page  # the state is carried, escaped
    assert "<b>x" not in page


async def test_consent_approve_redirects_with_code_and_state(
    fake: FakeSpotify, http: httpx.AsyncClient
) -> None:
    reply = await http.post("/authorize", data=auth_params() | {"user": "bob", "action": "approve"})
    assert reply.status_code == 302
    location = reply.headers["location"]
    assert location.startswith(REDIRECT + "?code=")
    query = query_of(location)
    assert set(query) == {"code", "state"} and query["state"] == ["xyz"]
    tokens = (await exchange(http, query["code"][0])).json()
    me = await http.get("/v1/me", headers=bearer(tokens["access_token"]))
    assert me.json()["id"] == "bob"


async def test_consent_deny(http: httpx.AsyncClient) -> None:
    reply = await http.post("/authorize", data=auth_params() | {"action": "deny"})
    assert reply.status_code == 302
    assert reply.headers["location"] == REDIRECT + "?error=access_denied&state=xyz"


async def test_state_omitted_and_existing_query_preserved(http: httpx.AsyncClient) -> None:
    params = pkce_params(redirect_uri="https://app.example/cb?x=1", state=None)
    approved = await http.post("/authorize", data=params | {"action": "approve"})
    location = approved.headers["location"]
    assert location.startswith("https://app.example/cb?x=1&code=")
    assert set(query_of(location)) == {"x", "code"}
    denied = await http.post("/authorize", data=params | {"action": "deny"})
    assert denied.headers["location"] == "https://app.example/cb?x=1&error=access_denied"


async def test_consent_unknown_user_is_an_error_page(http: httpx.AsyncClient) -> None:
    reply = await http.post("/authorize", data=auth_params() | {"user": "mallory"})
    assert reply.status_code == 400
    assert "Unknown user" in reply.text


async def test_auto_approve_skips_the_page(fake: FakeSpotify, http: httpx.AsyncClient) -> None:
    fake.auto_approve = "bob"
    reply = await http.get("/authorize", params=auth_params())
    assert reply.status_code == 302
    code = query_of(reply.headers["location"])["code"][0]
    tokens = (await exchange(http, code)).json()
    me = await http.get("/v1/me", headers=bearer(tokens["access_token"]))
    assert me.json()["id"] == "bob"


async def test_decide(fake: FakeSpotify) -> None:
    approved = fake.decide(authorize_url(auth_params()))
    assert approved.startswith(REDIRECT + "?code=") and approved.endswith("&state=xyz")
    denied = fake.decide(authorize_url(auth_params()), approve=False)
    assert denied == REDIRECT + "?error=access_denied&state=xyz"
    with pytest.raises(FakeAuthorizeError, match="Unknown user"):
        fake.decide(authorize_url(auth_params()), user="mallory")
    assert not fake.requests  # in-process: no HTTP counters


# -- authorization_code -------------------------------------------------------------------


async def test_code_exchange_confidential_basic(fake: FakeSpotify, http: httpx.AsyncClient) -> None:
    reply = await exchange(http, code_for(fake, auth_params()))
    assert reply.status_code == 200
    assert reply.headers["content-type"] == "application/json"
    assert reply.headers["cache-control"] == "no-store"
    body = reply.json()
    assert set(body) == {"access_token", "token_type", "scope", "expires_in", "refresh_token"}
    assert body["token_type"] == "Bearer"
    assert body["scope"] == "user-read-email user-read-private"
    assert body["expires_in"] == 3600
    assert len(body["access_token"]) >= 40 and body["access_token"] != body["refresh_token"]


async def test_code_exchange_with_body_credentials(
    fake: FakeSpotify, http: httpx.AsyncClient
) -> None:
    data = {
        "grant_type": "authorization_code",
        "code": code_for(fake, auth_params()),
        "redirect_uri": REDIRECT,
        "client_id": CLIENT_ID,
        "client_secret": SECRET,
    }
    reply = await http.post("/api/token", data=data)
    assert reply.status_code == 200
    assert "refresh_token" in reply.json()


async def test_pkce_exchange(fake: FakeSpotify, http: httpx.AsyncClient) -> None:
    good = await pkce_exchange(http, code_for(fake, pkce_params()), code_verifier=VERIFIER)
    assert good.status_code == 200
    assert good.json()["refresh_token"]

    wrong = await pkce_exchange(http, code_for(fake, pkce_params()), code_verifier=VERIFIER + "x")
    assert_oauth_error(wrong, "invalid_grant", "code_verifier was incorrect")

    missing = await pkce_exchange(http, code_for(fake, pkce_params()))
    assert_oauth_error(missing, "invalid_request", "code_verifier required")


async def test_failed_exchange_still_consumes_the_code(
    fake: FakeSpotify, http: httpx.AsyncClient
) -> None:
    code = code_for(fake, pkce_params())
    wrong = await pkce_exchange(http, code, code_verifier=VERIFIER + "x")
    assert wrong.json()["error_description"] == "code_verifier was incorrect"
    again = await pkce_exchange(http, code, code_verifier=VERIFIER)
    assert_oauth_error(again, "invalid_grant", "Invalid authorization code")


async def test_confidential_pkce_needs_verifier_even_with_secret(
    fake: FakeSpotify, http: httpx.AsyncClient
) -> None:
    params = auth_params(code_challenge=s256(VERIFIER), code_challenge_method="S256")
    missing = await exchange(http, code_for(fake, params))
    assert_oauth_error(missing, "invalid_request", "code_verifier required")
    good = await exchange(http, code_for(fake, params), code_verifier=VERIFIER)
    assert good.status_code == 200
    # A confidential client may also identify itself by client_id alone on a PKCE code.
    data = {"client_id": CLIENT_ID, "code_verifier": VERIFIER}
    public_style = await pkce_exchange(http, code_for(fake, params), **data, redirect_uri=REDIRECT)
    assert public_style.status_code == 200


async def test_public_client_rules(fake: FakeSpotify, http: httpx.AsyncClient) -> None:
    with_secret = await pkce_exchange(
        http, code_for(fake, pkce_params()), code_verifier=VERIFIER, client_secret="guess"
    )
    assert_oauth_error(with_secret, "invalid_client", "Invalid client secret")
    # A code without a challenge cannot be redeemed without a secret.
    no_challenge = code_for(fake, pkce_params(code_challenge=None, code_challenge_method=None))
    assert_oauth_error(await pkce_exchange(http, no_challenge), "invalid_client", None)


async def test_code_reuse(fake: FakeSpotify, http: httpx.AsyncClient) -> None:
    code = code_for(fake, auth_params())
    assert (await exchange(http, code)).status_code == 200
    assert_oauth_error(await exchange(http, code), "invalid_grant", "Invalid authorization code")
    assert_oauth_error(
        await exchange(http, "made-up"), "invalid_grant", "Invalid authorization code"
    )


async def test_code_of_another_client_is_invalid(
    fake: FakeSpotify, http: httpx.AsyncClient
) -> None:
    fake.add_client("other", "other-secret", [REDIRECT])
    code = code_for(fake, auth_params(client_id="other"))
    assert_oauth_error(await exchange(http, code), "invalid_grant", "Invalid authorization code")


async def test_expired_code(fake: FakeSpotify, clock: FakeClock, http: httpx.AsyncClient) -> None:
    fresh = code_for(fake, auth_params())
    clock.advance(599)
    assert (await exchange(http, fresh)).status_code == 200
    late = code_for(fake, auth_params())
    clock.advance(600)
    assert_oauth_error(await exchange(http, late), "invalid_grant", "Authorization code expired")
    hooked = code_for(fake, auth_params())
    fake.expire_codes()
    assert_oauth_error(await exchange(http, hooked), "invalid_grant", "Authorization code expired")


async def test_redirect_uri_mismatch(fake: FakeSpotify, http: httpx.AsyncClient) -> None:
    code = code_for(fake, pkce_params(redirect_uri="http://127.0.0.1:8000/cb"))
    reply = await pkce_exchange(http, code, code_verifier=VERIFIER)  # sends the port-less one
    assert_oauth_error(reply, "invalid_grant", "Invalid redirect URI")


@pytest.mark.parametrize(
    ("headers", "data", "description"),
    [
        (basic("nobody", SECRET), {}, "Invalid client"),
        (basic(CLIENT_ID, "wrong"), {}, "Invalid client secret"),
        (basic(CLIENT_ID, ""), {}, "Invalid client secret"),
        ({}, {"client_id": "nobody", "client_secret": "x"}, "Invalid client"),
        ({}, {"client_id": CLIENT_ID, "client_secret": "wrong"}, "Invalid client secret"),
        ({}, {}, None),
        ({"Authorization": "Basic !!!not-base64"}, {}, None),
        ({"Authorization": "Basic " + base64.b64encode(b"no-colon").decode()}, {}, None),
        ({"Authorization": "Bearer abc"}, {}, None),
    ],
)
async def test_invalid_client(
    fake: FakeSpotify,
    http: httpx.AsyncClient,
    headers: dict[str, str],
    data: dict[str, str],
    description: str | None,
) -> None:
    form = {"grant_type": "authorization_code", "code": code_for(fake, auth_params())}
    form |= {"redirect_uri": REDIRECT} | data
    reply = await http.post("/api/token", data=form, headers=headers)
    assert_oauth_error(reply, "invalid_client", description)
    assert fake.requests["token:authorization_code"] == 1


async def test_grant_type_errors(fake: FakeSpotify, http: httpx.AsyncClient) -> None:
    as_json = await http.post(
        "/api/token", json={"grant_type": "client_credentials"}, headers=basic()
    )
    assert_oauth_error(as_json, "unsupported_grant_type", "grant_type parameter is missing")
    empty = await http.post("/api/token", data={"foo": "bar"}, headers=basic())
    assert_oauth_error(empty, "unsupported_grant_type", "grant_type parameter is missing")
    unknown = await http.post("/api/token", data={"grant_type": "password"}, headers=basic())
    assert unknown.json()["error"] == "unsupported_grant_type"
    assert fake.requests == {"token": 3, "refused:unsupported_grant_type": 3}


# -- refresh_token ------------------------------------------------------------------------


async def test_refresh_confidential_keeps_token_by_default(
    fake: FakeSpotify, http: httpx.AsyncClient
) -> None:
    first = (await exchange(http, code_for(fake, auth_params()))).json()
    for _ in range(2):
        reply = await refresh(http, first["refresh_token"])
        assert reply.status_code == 200
        body = reply.json()
        assert "refresh_token" not in body
        assert body["scope"] == first["scope"]
        assert body["access_token"] != first["access_token"]
    me = await http.get("/v1/me", headers=bearer(body["access_token"]))
    assert me.json()["id"] == "alice"


async def test_refresh_confidential_rotation_switch(
    fake: FakeSpotify, http: httpx.AsyncClient
) -> None:
    fake.rotate_confidential = True
    old = (await exchange(http, code_for(fake, auth_params()))).json()["refresh_token"]
    reply = await refresh(http, old)
    new = reply.json()["refresh_token"]
    assert new != old
    assert_oauth_error(await refresh(http, old), "invalid_grant", "Refresh token revoked")
    assert (await refresh(http, new)).status_code == 200


async def test_refresh_pkce_rotates(fake: FakeSpotify, http: httpx.AsyncClient) -> None:
    first = await pkce_exchange(http, code_for(fake, pkce_params()), code_verifier=VERIFIER)
    old = first.json()["refresh_token"]
    reply = await refresh(http, old, public=True)
    assert reply.status_code == 200
    new = reply.json()["refresh_token"]
    assert new != old
    assert reply.json()["scope"] == "user-read-email user-read-private"
    reused = await refresh(http, old, public=True)
    assert_oauth_error(reused, "invalid_grant", "Refresh token revoked")
    assert (await refresh(http, new, public=True)).status_code == 200


async def test_refresh_errors(fake: FakeSpotify, http: httpx.AsyncClient) -> None:
    assert_oauth_error(await refresh(http, "garbage"), "invalid_grant", "Invalid refresh token")
    token = (await exchange(http, code_for(fake, auth_params()))).json()["refresh_token"]
    fake.add_client("other", "other-secret", [REDIRECT])
    data = {"grant_type": "refresh_token", "refresh_token": token}
    stolen = await http.post("/api/token", data=data, headers=basic("other", "other-secret"))
    assert_oauth_error(stolen, "invalid_grant", "Invalid refresh token")
    # A confidential (non-PKCE) refresh token needs the secret.
    no_secret = await http.post("/api/token", data=data | {"client_id": CLIENT_ID})
    assert_oauth_error(no_secret, "invalid_client", None)


async def test_revoke(fake: FakeSpotify, http: httpx.AsyncClient) -> None:
    alice = (await exchange(http, code_for(fake, auth_params()))).json()
    bob = (await exchange(http, code_for(fake, auth_params(), user="bob"))).json()
    fake.revoke("alice")
    assert_oauth_error(
        await refresh(http, alice["refresh_token"]), "invalid_grant", "Refresh token revoked"
    )
    assert (await http.get("/v1/me", headers=bearer(alice["access_token"]))).status_code == 401
    assert (await http.get("/v1/me", headers=bearer(bob["access_token"]))).status_code == 200
    assert (await refresh(http, bob["refresh_token"])).status_code == 200


async def test_refresh_lifetime_counts_from_consent(
    fake: FakeSpotify, clock: FakeClock, http: httpx.AsyncClient
) -> None:
    first = await pkce_exchange(http, code_for(fake, pkce_params()), code_verifier=VERIFIER)
    token = first.json()["refresh_token"]
    clock.advance(183 * 86400 - 10)
    reply = await refresh(http, token, public=True)
    assert reply.status_code == 200
    clock.advance(10)  # the rotated token keeps the original consent time
    late = await refresh(http, reply.json()["refresh_token"], public=True)
    assert_oauth_error(late, "invalid_grant", "Refresh token revoked")


# -- client_credentials ---------------------------------------------------------------------


async def test_client_credentials(http: httpx.AsyncClient) -> None:
    data = {"grant_type": "client_credentials"}
    reply = await http.post("/api/token", data=data, headers=basic())
    body = reply.json()
    assert set(body) == {"access_token", "token_type", "expires_in"}
    assert body["token_type"] == "bearer" and body["expires_in"] == 3600
    me = await http.get("/v1/me", headers=bearer(body["access_token"]))
    assert me.status_code == 403
    assert me.json() == {"error": {"status": 403, "message": "Forbidden"}}
    public = await http.post("/api/token", data=data | {"client_id": PUBLIC_ID})
    assert_oauth_error(public, "invalid_client", None)


# -- /v1/me -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("scopes", "extra"),
    [
        ((), set()),
        (("user-read-email",), {"email"}),
        (("user-read-private",), {"country", "product", "explicit_content"}),
        (
            ("user-read-private", "user-read-email", "streaming"),
            {"email", "country", "product", "explicit_content"},
        ),
    ],
)
async def test_me_fields_depend_on_scope(
    fake: FakeSpotify, http: httpx.AsyncClient, scopes: tuple[str, ...], extra: set[str]
) -> None:
    token = fake.token_for("alice", CLIENT_ID, scopes)["access_token"]
    reply = await http.get("/v1/me", headers=bearer(token))
    assert reply.status_code == 200
    me = reply.json()
    always = {"id", "account_id", "display_name", "uri", "href", "type", "external_urls"}
    assert set(me) == always | {"images", "followers"} | extra
    assert me["id"] == "alice" and me["display_name"] == "Alice"
    assert me["uri"] == "spotify:user:alice" and me["type"] == "user"
    assert me["external_urls"] == {"spotify": "https://open.spotify.com/user/alice"}
    assert me["account_id"] == fake.users["alice"].account_id
    assert me["images"] == [] and me["followers"]["total"] == 0
    if "email" in extra:
        assert me["email"] == "alice@example.com"
    if "product" in extra:
        assert (me["product"], me["country"]) == ("premium", "SE")


async def test_dev_mode(fake: FakeSpotify, http: httpx.AsyncClient) -> None:
    fake.dev_mode = True
    scopes = ("user-read-email", "user-read-private")
    token = fake.token_for("alice", CLIENT_ID, scopes)["access_token"]
    me = (await http.get("/v1/me", headers=bearer(token))).json()
    assert me["id"] == "alice" and "account_id" in me
    assert not {"email", "country", "product", "explicit_content", "followers"} & set(me)
    fake.clients[CLIENT_ID].allowlist = ["bob"]
    blocked = await http.get("/v1/me", headers=bearer(token))
    assert blocked.status_code == 403
    assert blocked.json()["error"]["message"] == "User not registered in the Developer Dashboard"


async def test_me_401(fake: FakeSpotify, clock: FakeClock, http: httpx.AsyncClient) -> None:
    expected = {"error": {"status": 401, "message": "The access token expired"}}
    assert (await http.get("/v1/me")).json() == expected
    unknown = await http.get("/v1/me", headers=bearer("nope"))
    assert unknown.status_code == 401 and unknown.json() == expected

    token = fake.token_for("alice", CLIENT_ID)["access_token"]
    clock.advance(3599)
    assert (await http.get("/v1/me", headers=bearer(token))).status_code == 200
    clock.advance(1)
    assert (await http.get("/v1/me", headers=bearer(token))).status_code == 401

    fake.api_error_message = "Invalid access token"
    token = fake.token_for("alice", CLIENT_ID)["access_token"]
    fake.expire_access_tokens()
    reply = await http.get("/v1/me", headers=bearer(token))
    assert reply.json() == {"error": {"status": 401, "message": "Invalid access token"}}


async def test_access_ttl_switch(
    fake: FakeSpotify, clock: FakeClock, http: httpx.AsyncClient
) -> None:
    fake.access_ttl = 0.5
    body = fake.token_for("bob", CLIENT_ID)
    assert body["expires_in"] == 1
    clock.advance(0.5)
    assert (await http.get("/v1/me", headers=bearer(body["access_token"]))).status_code == 401


async def test_token_for_refreshes_like_a_real_grant(
    fake: FakeSpotify, http: httpx.AsyncClient
) -> None:
    body = fake.token_for("bob", PUBLIC_ID, ["user-read-email"])
    assert body["scope"] == "user-read-email" and body["token_type"] == "Bearer"
    reply = await refresh(http, body["refresh_token"], public=True)
    assert reply.json()["refresh_token"] != body["refresh_token"]
    with pytest.raises(ValueError, match="user-read-birthdate"):
        fake.token_for("bob", CLIENT_ID, ["user-read-birthdate"])
    with pytest.raises(KeyError):
        fake.token_for("mallory", CLIENT_ID)


def test_fake_user_account_id_is_stable() -> None:
    assert FakeUser("alice").account_id == FakeUser("alice").account_id
    assert FakeUser("alice").account_id != FakeUser("bob").account_id
    assert FakeUser("alice", account_id="fixed").account_id == "fixed"


# -- injected faults ----------------------------------------------------------------------


async def test_fail_next(fake: FakeSpotify, http: httpx.AsyncClient) -> None:
    code = code_for(fake, auth_params())
    fake.fail_next(2)
    for _ in range(2):
        reply = await exchange(http, code)
        assert reply.status_code == 503 and reply.json() == {"error": "server_error"}
    assert (await exchange(http, code)).status_code == 200  # the code survived the faults
    assert fake.requests["token"] == 3 and fake.requests["token:authorization_code"] == 1
    fake.fail_next(1, status=500)
    assert (await refresh(http, "x")).status_code == 500


async def test_rate_limit_next(fake: FakeSpotify, http: httpx.AsyncClient) -> None:
    token = fake.token_for("alice", CLIENT_ID)["access_token"]
    fake.rate_limit_next(2, retry_after=7)
    limited = await refresh(http, "x")
    assert limited.status_code == 429 and limited.headers["retry-after"] == "7"
    me = await http.get("/v1/me", headers=bearer(token))
    assert me.status_code == 429 and me.headers["retry-after"] == "7"
    assert me.json() == {"error": {"status": 429, "message": "API rate limit exceeded"}}
    assert (await http.get("/v1/me", headers=bearer(token))).status_code == 200

    fake.rate_limit_next(1, retry_after=30, quota=True)
    quota = await http.get("/v1/me", headers=bearer(token))
    assert quota.json() == {
        "error": {"status": 429, "message": "Too many requests", "reason": "QUOTA_EXCEEDED"}
    }
    assert fake.requests["me"] == 3


async def test_garbage_next(fake: FakeSpotify, http: httpx.AsyncClient) -> None:
    fake.garbage_next(1)
    reply = await http.post(
        "/api/token", data={"grant_type": "client_credentials"}, headers=basic()
    )
    assert reply.status_code == 200
    assert reply.headers["content-type"].startswith("text/html")
    assert reply.text == "<html>oops</html>"
    again = await http.post(
        "/api/token", data={"grant_type": "client_credentials"}, headers=basic()
    )
    assert "access_token" in again.json()


async def test_fault_priority(fake: FakeSpotify, http: httpx.AsyncClient) -> None:
    fake.garbage_next(1)
    fake.rate_limit_next(1)
    fake.fail_next(1, status=502)
    statuses = [(await refresh(http, "x")).status_code for _ in range(4)]
    assert statuses == [502, 429, 200, 400]
    assert fake.requests["token"] == 4 and fake.requests["token:refresh_token"] == 1


async def test_slow(fake: FakeSpotify, http: httpx.AsyncClient) -> None:
    fake.slow = 0.05
    started = time.monotonic()
    reply = await http.post(
        "/api/token", data={"grant_type": "client_credentials"}, headers=basic()
    )
    assert time.monotonic() - started >= 0.05
    assert reply.status_code == 200


# -- counters and control endpoints -------------------------------------------------------


async def test_counters(fake: FakeSpotify, http: httpx.AsyncClient) -> None:
    await http.get("/authorize", params=auth_params())
    await http.get("/authorize", params=auth_params(client_id="nope"))
    consent = await http.post("/authorize", data=auth_params() | {"action": "approve"})
    tokens = (await exchange(http, query_of(consent.headers["location"])["code"][0])).json()
    await refresh(http, tokens["refresh_token"])
    await http.get("/v1/me", headers=bearer(tokens["access_token"]))
    assert fake.requests == {
        "authorize": 2,
        "consent": 1,
        "token": 2,
        "token:authorization_code": 1,
        "token:refresh_token": 1,
        "me": 1,
    }
    fake.reset_counters()
    assert fake.snapshot()["requests"] == {}


async def test_control_endpoints(
    fake: FakeSpotify, clock: FakeClock, http: httpx.AsyncClient
) -> None:
    state = (await http.get("/_fake/state")).json()
    assert state["requests"] == {} and state["now"] == START
    assert state["clients"] == [CLIENT_ID, PUBLIC_ID] and state["users"] == ["alice", "bob"]

    control: dict[str, Any] = {
        "fail_next": 1,
        "fail_status": 500,
        "slow": 0.0,
        "rotate_confidential": True,
    }
    snapshot = (await http.post("/_fake/control", json=control)).json()
    assert snapshot["fail_next"] == 1 and snapshot["fail_status"] == 500
    assert fake.rotate_confidential is True
    assert (await refresh(http, "x")).status_code == 500

    code = code_for(fake, auth_params())
    tokens = (await exchange(http, code)).json()
    control = {"advance": 60, "access_ttl": 120, "revoke": "alice", "reset_counters": True}
    snapshot = (await http.post("/_fake/control", json=control)).json()
    assert clock() == START + 60 and snapshot["now"] == START + 60
    assert snapshot["access_ttl"] == 120 and snapshot["requests"] == {}
    assert (await refresh(http, tokens["refresh_token"])).json()["error"] == "invalid_grant"

    pending = code_for(fake, auth_params())
    await http.post("/_fake/control", json={"expire_codes": True, "rate_limit_next": 1})
    assert (await exchange(http, pending)).status_code == 429
    assert (await exchange(http, pending)).json()["error_description"] == (
        "Authorization code expired"
    )
    bob = fake.token_for("bob", CLIENT_ID)["access_token"]
    await http.post("/_fake/control", json={"expire_access_tokens": True, "auto_approve": "bob"})
    assert (await http.get("/v1/me", headers=bearer(bob))).status_code == 401
    assert fake.auto_approve == "bob"


async def test_control_rejects_bad_input(http: httpx.AsyncClient) -> None:
    assert (await http.post("/_fake/control", json={"nope": 1})).status_code == 400
    assert (await http.post("/_fake/control", json=[1])).status_code == 400
    assert (await http.post("/_fake/control", json={"slow": "fast"})).status_code == 400
    # Seconds that would hang a token request, fail it, or make the state unreadable JSON.
    for name, value in (("slow", "inf"), ("access_ttl", "nan"), ("reply_delay", -1)):
        reply = await http.post("/_fake/control", json={name: value})
        assert reply.status_code == 400 and name in reply.json()["error"], (name, reply.text)
    state = await http.get("/_fake/state")
    assert state.status_code == 200 and "Infinity" not in state.text and "NaN" not in state.text


async def test_advance_needs_a_fake_clock() -> None:
    fake = make_fake()
    transport = httpx.ASGITransport(app=fake)
    async with httpx.AsyncClient(transport=transport, base_url="http://fake") as http:
        reply = await http.post("/_fake/control", json={"advance": 5})
    assert reply.status_code == 400


async def test_served_by_hypercorn_over_http() -> None:
    fake = make_fake(auto_approve="alice")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    config = Config()
    config.bind = [f"127.0.0.1:{port}"]
    config.accesslog = None
    stop = asyncio.Event()
    server = asyncio.create_task(serve(fake, config, shutdown_trigger=stop.wait))
    base = f"http://127.0.0.1:{port}"
    try:
        async with httpx.AsyncClient(base_url=base) as http:
            for _ in range(100):
                try:
                    reply = await http.get("/authorize", params=auth_params())
                    break
                except httpx.ConnectError:
                    await asyncio.sleep(0.01)
            code = query_of(reply.headers["location"])["code"][0]
            tokens = (await exchange(http, code)).json()
            me = await http.get("/v1/me", headers=bearer(tokens["access_token"]))
            assert me.json()["email"] == "alice@example.com"
    finally:
        stop.set()
        await server


async def test_expired_access_tokens_are_forgotten(
    fake: FakeSpotify, clock: FakeClock, http: httpx.AsyncClient
) -> None:
    fake.access_ttl = 1
    stale = [fake.token_for("alice", CLIENT_ID)["access_token"] for _ in range(4096)]
    clock.advance(2)
    fresh = fake.token_for("alice", CLIENT_ID)["access_token"]  # crosses the pruning mark
    assert len(fake._access) < 100
    assert (await http.get("/v1/me", headers=bearer(stale[0]))).status_code == 401
    assert (await http.get("/v1/me", headers=bearer(fresh))).status_code == 200


async def test_me_with_a_trailing_slash_as_spotipy_and_tekore_send_it(
    fake: FakeSpotify, http: httpx.AsyncClient
) -> None:
    token = fake.token_for("alice", CLIENT_ID, ("user-read-email",))["access_token"]
    reply = await http.get("/v1/me/", headers=bearer(token))
    assert reply.status_code == 200 and reply.json()["email"] == "alice@example.com"


# -- the rest of the Web API it answers ------------------------------------------------------


async def test_top_tracks_and_artists_need_their_scope(
    fake: FakeSpotify, http: httpx.AsyncClient
) -> None:
    without = fake.token_for("alice", CLIENT_ID, ("user-read-email",))["access_token"]
    refused = await http.get("/v1/me/top/tracks", headers=bearer(without))
    assert refused.status_code == 403
    assert refused.json() == {"error": {"status": 403, "message": "Insufficient client scope"}}
    token = fake.token_for("alice", CLIENT_ID, ("user-top-read",))["access_token"]
    tracks = (await http.get("/v1/me/top/tracks?limit=2", headers=bearer(token))).json()
    assert [t["name"] for t in tracks["items"]] == ["Everything In Its Right Place", "Space Oddity"]
    assert tracks["items"][0]["artists"][0]["name"] == "Radiohead"
    assert (tracks["limit"], tracks["total"], tracks["offset"]) == (2, 5, 0)
    page = (await http.get("/v1/me/top/tracks?limit=2&offset=4", headers=bearer(token))).json()
    assert [t["name"] for t in page["items"]] == ["Heroes"]
    artists = (await http.get("/v1/me/top/artists", headers=bearer(token))).json()
    assert [a["type"] for a in artists["items"]] == ["artist"] * 3
    assert (await http.get("/v1/me/top/tracks?limit=51", headers=bearer(token))).status_code == 400
    assert (await http.get("/v1/me/top/songs", headers=bearer(token))).status_code == 404
    assert (await http.get("/v1/me/top/tracks", headers=bearer("nope"))).status_code == 401


async def test_the_player_plays_and_pauses_for_premium_only(
    fake: FakeSpotify, http: httpx.AsyncClient
) -> None:
    scopes = ("user-read-playback-state", "user-modify-playback-state")
    alice = bearer(fake.token_for("alice", CLIENT_ID, scopes)["access_token"])
    assert (await http.get("/v1/me/player", headers=alice)).status_code == 204  # nothing yet
    devices = (await http.get("/v1/me/player/devices", headers=alice)).json()["devices"]
    assert devices[0]["name"] == "Fake Speaker"
    assert (await http.put("/v1/me/player/play", headers=alice)).status_code == 204
    state = (await http.get("/v1/me/player", headers=alice)).json()
    assert state["is_playing"] and state["item"]["type"] == "track"
    assert (await http.put("/v1/me/player/pause", headers=alice)).status_code == 204
    assert not (await http.get("/v1/me/player", headers=alice)).json()["is_playing"]
    reading = bearer(fake.token_for("alice", CLIENT_ID, scopes[:1])["access_token"])
    assert (await http.put("/v1/me/player/play", headers=reading)).status_code == 403
    fake.users["alice"].product = "free"
    refused = await http.put("/v1/me/player/play", headers=alice)
    assert refused.status_code == 403 and refused.json()["error"]["reason"] == "PREMIUM_REQUIRED"
    assert fake.requests["play"] == 3
