"""An app on httpx2 (httpx's fork, the same API under the module name ``httpx2``) chooses it
explicitly, by its transport or ``SPOTIFY_HTTP_LIBRARY``; then our client, bearer, replies and
the errors we catch are all httpx2's. Never by what happens to be installed: httpx stays the
default, and a transport of the other library than the setting names is a ConfigurationError.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import AsyncIterator
from typing import Any, cast

import httpx2
import pytest
from quart import Quart, jsonify

from quart_spotify_auth import ConfigurationError, SpotifyUnavailable
from quart_spotify_auth.accounts import AccountsClient
from quart_spotify_auth.config import load_settings
from quart_spotify_auth.core import EXTENSION_KEY, Core
from quart_spotify_auth.retry import Retry
from quart_spotify_auth.serving import free_port, serve
from quart_spotify_auth.testing import FakeSpotify
from quart_spotify_auth.webapi import SpotifyBearer, WebAPI, bearer_class

from .apps import CLIENT_ID, make_app
from .conftest import Browser, login_in_process
from .test_routes import Tokens


def _core(app: Quart) -> Core:
    core: Core = app.extensions[EXTENSION_KEY]
    return core


def _real_httpx() -> Any:
    return pytest.importorskip("httpx", reason="httpx itself is not installed here")


@pytest.fixture(autouse=True)
def _setting_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test says its choice itself (``nox -s httpx2`` sets the variable for the suite)."""
    monkeypatch.delenv("SPOTIFY_HTTP_LIBRARY", raising=False)


@pytest.fixture(name="served")
async def _served(
    fake: FakeSpotify, request: pytest.FixtureRequest
) -> AsyncIterator[tuple[Browser, Quart]]:
    """The fake and an app on httpx2, chosen by its transport alone or by the setting, each
    served by hypercorn."""
    choice: dict[str, Any] = (
        {"transport": httpx2.AsyncHTTPTransport()}
        if request.param == "transport"
        else {"SPOTIFY_HTTP_LIBRARY": "httpx2"}
    )
    async with serve(fake) as fake_url:
        port = free_port()
        redirect_uri = f"http://127.0.0.1:{port}/callback/"
        app, spotify = make_app(
            accounts_url=fake_url,
            redirect_uri=redirect_uri,
            **choice,
        )

        @app.route("/replies")
        async def replies() -> Any:
            api = await spotify.web_api()
            me = await api.get("/me")
            missing, caught = await api.get("/no-such-endpoint"), False
            try:
                missing.raise_for_status()
            except httpx2.HTTPStatusError:
                caught = True
            core = _core(app)
            return jsonify(
                me=[isinstance(me, httpx2.Response), me.json()["id"]],
                caught=caught,
                auth=isinstance(api.auth, httpx2.Auth),
                pools=[isinstance(p, httpx2.AsyncClient) for p in (core.http, core.accounts.http)],
            )

        async with serve(app, port=port) as app_url, Browser(app_url, fake_url) as browser:
            yield browser, app


@pytest.mark.parametrize("served", ["transport", "setting"], indirect=True)
async def test_an_app_on_httpx2_logs_in_and_its_replies_and_errors_are_httpx2s(
    served: tuple[Browser, Quart],
) -> None:
    browser, _ = served
    assert (await browser.login("alice")).status_code == 302
    assert (await browser.get("/token")).json()["scopes"]
    reply = await browser.get("/replies")
    assert reply.status_code == 200, reply.text
    assert reply.json() == {
        "me": [True, "alice"],
        "caught": True,
        "auth": True,
        "pools": [True, True],
    }


def test_the_environment_variable_chooses_httpx2(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SPOTIFY_HTTP_LIBRARY", "httpx2")
    app, _ = make_app()  # no transport: the variable alone chooses
    pools = _core(app).http, _core(app).accounts.http
    assert all(isinstance(pool, httpx2.AsyncClient) for pool in pools)


async def test_an_httpx2_client_takes_our_bearer() -> None:
    sent: list[str] = []

    def handler(request: httpx2.Request) -> httpx2.Response:
        sent.append(request.headers["Authorization"])
        return httpx2.Response(401 if len(sent) == 1 else 200)

    tokens = Tokens()
    bearer = bearer_class(httpx2)(tokens.token, tokens.refresh, Retry(sleep=tokens.sleep))
    assert bearer_class(httpx2) is type(bearer)  # one class per library
    auth = cast(httpx2.Auth, bearer)  # typed as a plain SpotifyBearer
    async with httpx2.AsyncClient(transport=httpx2.MockTransport(handler), auth=auth) as http:
        assert (await http.get("http://api.invalid/v1/me")).status_code == 200
    assert sent == ["Bearer t1", "Bearer t2"] and tokens.refreshes == 1
    # A WebAPI on an httpx2 client makes a plain SpotifyBearer into that client's kind.
    plain = SpotifyBearer(tokens.token, tokens.refresh, Retry())
    client: Any = httpx2.AsyncClient()  # typed: an httpx client
    api = WebAPI(client, "http://api.invalid/v1", plain, Retry())
    assert isinstance(api.auth, httpx2.Auth) and api.auth.token == tokens.token


async def test_httpx2_network_errors_are_the_ones_caught() -> None:
    """httpx2's errors are no httpx errors: both clients catch the chosen library's."""

    def refuse(request: httpx2.Request) -> httpx2.Response:
        raise httpx2.ConnectError("refused", request=request)

    http: Any = httpx2.AsyncClient(transport=httpx2.MockTransport(refuse))
    tokens = Tokens()
    retry = Retry(sleep=tokens.sleep)
    api = WebAPI(http, "http://x", SpotifyBearer(tokens.token, tokens.refresh, retry), retry)
    with pytest.raises(SpotifyUnavailable, match="ConnectError"):
        await api.post("/me/playlists")
    settings = load_settings({"SPOTIFY_CLIENT_ID": "id", "SPOTIFY_CLIENT_SECRET": "s"})
    accounts = AccountsClient(settings, http, retry=retry)
    with pytest.raises(SpotifyUnavailable, match=r"could not be reached \(ConnectError\)"):
        await accounts.client_credentials()
    assert len(tokens.sleeps) == 4  # each retried twice, as never sent (even the POST)


def test_a_transport_of_the_other_library_is_a_configuration_error(fake: FakeSpotify) -> None:
    httpx = _real_httpx()
    cases: list[tuple[Any, str]] = [
        (httpx.ASGITransport(app=fake), "httpx2"),
        (httpx2.ASGITransport(app=fake), "httpx"),
    ]
    for transport, setting in cases:
        with pytest.raises(ConfigurationError) as info:
            make_app(transport=transport, SPOTIFY_HTTP_LIBRARY=setting)
        other = "httpx" if setting == "httpx2" else "httpx2"
        assert str(info.value) == (
            f"SPOTIFY_HTTP_LIBRARY is {setting!r} but transport= is an {other} transport. "
            f"Pass a {setting} transport, or set SPOTIFY_HTTP_LIBRARY to {other!r}."
        )


async def test_by_default_an_httpx_transport_still_works(fake: FakeSpotify) -> None:
    httpx = _real_httpx()
    app, spotify = make_app(transport=httpx.ASGITransport(app=fake))
    assert type(_core(app).http) is httpx.AsyncClient
    async with app.test_app(), app.test_client() as client:
        assert (await login_in_process(client, fake))["scopes"]
        async with client.session_transaction() as saved:
            from quart import session

            session.update(saved)
            api = await spotify.web_api()
            assert isinstance(await api.get("/me"), httpx.Response)
            assert not isinstance(api.auth, httpx2.Auth)


@pytest.mark.parametrize(
    ("setting", "blocked", "message"),
    [
        ("httpx2", "httpx2", "The HTTP library httpx2 (.*) is not installed: pip install httpx2"),
        (None, "httpx", "The HTTP library httpx (.*) is not installed: pip install httpx"),
        ("requests", "-", "SPOTIFY_HTTP_LIBRARY must be 'httpx' or 'httpx2' or unset, not 'req"),
    ],
)
def test_a_library_not_installed_or_unknown_says_the_fix(
    monkeypatch: pytest.MonkeyPatch, setting: str | None, blocked: str, message: str
) -> None:
    monkeypatch.setitem(sys.modules, blocked, None)  # an import of it fails, as if not installed
    config: dict[str, Any] = {} if setting is None else {"SPOTIFY_HTTP_LIBRARY": setting}
    with pytest.raises(ConfigurationError, match=message):
        make_app(**config)


def test_the_setting_is_read_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    assert load_settings({"SPOTIFY_CLIENT_ID": CLIENT_ID}).http_library is None
    monkeypatch.setenv("SPOTIFY_HTTP_LIBRARY", " HTTPX2 ")
    assert load_settings({"SPOTIFY_CLIENT_ID": CLIENT_ID}).http_library == "httpx2"
    config = {"SPOTIFY_CLIENT_ID": CLIENT_ID, "SPOTIFY_HTTP_LIBRARY": "httpx"}
    assert load_settings(config).http_library == "httpx"  # app.config comes first


#: An app that calls httpx2.alias_httpx() first: ``import httpx`` is httpx2 in the whole process,
#: so everything here is httpx2's with the setting naming httpx (or unset).
ALIASED = """
import asyncio, json
import httpx2
httpx2.alias_httpx()
import httpx
from quart import Quart
from quart_spotify_auth import SpotifyAuth
from quart_spotify_auth.testing import log_in, make_fake

async def main():
    fake = make_fake()
    app = Quart("app")
    app.config.update({**fake.app_config("https://fake.invalid"), "SECRET_KEY": "x" * 32})
    transport = httpx.ASGITransport(app=fake)
    spotify = SpotifyAuth(app, transport=transport, SPOTIFY_HTTP_LIBRARY="httpx")

    @app.route("/me")
    async def me():
        reply = await (await spotify.web_api()).get("/me")
        return {"httpx2": isinstance(reply, httpx2.Response), "id": reply.json()["id"]}

    async with app.test_app():
        client = app.test_client()
        await log_in(client, fake, "alice")
        print(json.dumps(await (await client.get("/me")).get_json()))

asyncio.run(main())
"""


def test_alias_httpx_makes_the_whole_process_httpx2() -> None:
    result = subprocess.run(
        [sys.executable, "-c", ALIASED], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert json.loads(result.stdout) == {"httpx2": True, "id": "alice"}
