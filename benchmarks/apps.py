"""Apps the benchmarks serve with hypercorn in their own processes.

``benchmarks.apps:hotpath`` is a Spotify-login app with two handlers that differ only in what
they return: ``/constant`` a constant, ``/token`` the user's ``get_access_token()`` (and
``/renew``, the user's ``force_renewal()``, for the flood).
``benchmarks.apps:fake`` is a FakeSpotify that approves every login at once as "alice".
Both read ``BENCH_*`` environment variables set by the runner.
"""

from __future__ import annotations

import asyncio
import os
from collections import Counter
from typing import Any, Literal

from quart import Quart, ResponseReturnValue, redirect, request

from quart_spotify_auth import SpotifyAuth
from quart_spotify_auth.signals import token_renewed
from quart_spotify_auth.testing import make_fake
from tests.apps import CLIENT_ID, CLIENT_SECRET, app_config

from .soak_settings import CLIENT_ID as SOAK_CLIENT_ID
from .soak_settings import CLIENT_SECRET as SOAK_CLIENT_SECRET

PORT = os.environ.get("BENCH_APP_PORT", "5000")
FAKE_URL = os.environ.get("BENCH_FAKE_URL", "http://127.0.0.1:5001")
CONFIG = {
    **app_config(FAKE_URL, f"http://127.0.0.1:{PORT}/callback/", scopes="user-read-private"),
    "SPOTIFY_AUTO_RENEW": os.environ.get("BENCH_AUTO_RENEW", "1") == "1",
    "SPOTIFY_TOKEN_STORE": os.environ.get("SPOTIFY_TOKEN_STORE", "memory"),
}

hotpath = Quart(__name__)
hotpath.config.update(CONFIG)
spotify = SpotifyAuth(hotpath)  # SPOTIFY_TOKEN_STORE from the environment picks Redis


@hotpath.route("/constant")
async def constant() -> ResponseReturnValue:
    return "x" * 43


@hotpath.route("/token")
async def token() -> ResponseReturnValue:
    return (await spotify.get_access_token()).access_token


@hotpath.route("/login")
async def login() -> ResponseReturnValue:
    return redirect(await spotify.get_user())


@hotpath.route("/callback/")
async def callback() -> ResponseReturnValue:
    await spotify.get_user_token(request.args.get("code"))
    return "ok"


@hotpath.route("/renew", methods=["POST"])
async def renew() -> ResponseReturnValue:
    await spotify.force_renewal()
    return "ok"


if "BENCH_EXCHANGES" in os.environ:  # the flood: more than the pool's connections is no budget
    spotify.core(hotpath).accounts.exchanges = int(os.environ["BENCH_EXCHANGES"])


#: The soak apps' client (benchmarks.soak_settings), approving every login at once as "alice":
#: logins side by side with the Authlib app.
soak_login_fake = make_fake(
    client_id=SOAK_CLIENT_ID,
    client_secret=SOAK_CLIENT_SECRET,
    redirect_uri="http://127.0.0.1/callback/",
    auto_approve="alice",
)

fake = make_fake(
    client_id=CLIENT_ID,
    client_secret=CLIENT_SECRET,
    redirect_uri="http://127.0.0.1/callback/",
    auto_approve="alice",
)


# -- rollover: many users keyed by a header, tokens that roll over during the run ----------

rollover = Quart("rollover")
rollover.config.update(CONFIG)
rollover.config["SPOTIFY_RENEW_CONCURRENCY"] = int(os.environ.get("BENCH_CONCURRENCY", "16"))
rollover_spotify = SpotifyAuth(rollover, identity=lambda: request.headers.get("X-User"))
RENEWED: Counter[str] = Counter()


@token_renewed.connect_via(rollover)
def _count(sender: Any, *, in_background: bool, **_: Any) -> None:
    RENEWED["background" if in_background else "lazy"] += 1


@rollover.route("/token")
async def rollover_token() -> ResponseReturnValue:
    return (await rollover_spotify.get_access_token()).access_token


@rollover.route("/stats")
async def rollover_stats() -> ResponseReturnValue:
    return dict(RENEWED)


@rollover.route("/login")
async def rollover_login() -> ResponseReturnValue:
    return redirect(await rollover_spotify.get_user())


@rollover.route("/callback/")
async def rollover_callback() -> ResponseReturnValue:
    await rollover_spotify.get_user_token(request.args.get("code"))
    return "ok"


# -- the same hot path on Flask, through the shim (hypercorn serves WSGI apps in threads) ----

from flask import Flask  # noqa: E402
from flask import redirect as flask_redirect  # noqa: E402
from flask import request as flask_request  # noqa: E402
from flask.typing import ResponseReturnValue as FlaskResponseValue  # noqa: E402

from quart_spotify_auth.flask import SpotifyAuth as FlaskSpotifyAuth  # noqa: E402

flask_hotpath = Flask("flask_hotpath")
flask_hotpath.config.update(CONFIG)
flask_spotify = FlaskSpotifyAuth(flask_hotpath)


@flask_hotpath.route("/constant")
def flask_constant() -> str:
    return "x" * 43


@flask_hotpath.route("/token")
def flask_token() -> str:
    return flask_spotify.get_access_token().access_token


@flask_hotpath.route("/login")
def flask_login() -> FlaskResponseValue:
    return flask_redirect(flask_spotify.get_user())


@flask_hotpath.route("/callback/")
def flask_callback() -> str:
    flask_spotify.get_user_token(flask_request.args.get("code"))
    return "ok"


# -- flood: forged login callbacks while Spotify is slow to exchange codes -------------------


class _SlowCodes(asyncio.Event):
    """What ``FakeSpotify.held`` has each code exchange wait for: ``BENCH_CODE_DELAY`` s."""

    async def wait(self) -> Literal[True]:
        await asyncio.sleep(float(os.environ.get("BENCH_CODE_DELAY", "0")))
        return True


slow_codes_fake = make_fake(
    client_id=CLIENT_ID,
    client_secret=CLIENT_SECRET,
    redirect_uri="http://127.0.0.1/callback/",
    auto_approve="alice",
)
slow_codes_fake.held["authorization_code"] = _SlowCodes()
