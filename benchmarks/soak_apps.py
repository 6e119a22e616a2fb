"""The apps the soak serves with hypercorn, each in its own processes.

``benchmarks.soak_apps:fake`` is a FakeSpotify with ``BENCH_USERS`` users ``u0 ..``, a consent
page (no auto-approval: each simulated browser picks its own user, as a person would).

``benchmarks.soak_apps:ours`` is a small app on quart-spotify-auth: ``/login``, the callback
and ``/me``, a handler that calls ``/v1/me`` with the user's access token and answers
``{"id": ...}``. ``benchmarks.soak_peer:peer`` is the same app written with Authlib.

Settings come from ``BENCH_*`` environment variables set by the runner (``benchmarks.soak``).
"""

from __future__ import annotations

import os

from quart import Quart, ResponseReturnValue, redirect, request

from quart_spotify_auth import SpotifyAuth
from quart_spotify_auth.testing import make_fake

PORT = os.environ.get("BENCH_APP_PORT", "5000")
FAKE_URL = os.environ.get("BENCH_FAKE_URL", "http://127.0.0.1:5001")
USERS = int(os.environ.get("BENCH_USERS", "1000"))
#: Scaled like an hour-long token's defaults: refresh margin and Authlib's leeway, in seconds.
MARGIN = float(os.environ.get("BENCH_MARGIN", "2"))
LEEWAY = float(os.environ.get("BENCH_LEEWAY", "2"))
CLIENT_ID, CLIENT_SECRET = "soak-client", "soak-secret"
REDIRECT_URI = f"http://127.0.0.1:{PORT}/callback/"
SECRET_KEY = "soak-benchmark-secret-key-not-for-production"

fake = make_fake(
    client_id=CLIENT_ID,
    client_secret=CLIENT_SECRET,
    redirect_uri="http://127.0.0.1/callback/",  # loopback: any port matches
    users=[f"u{i}" for i in range(USERS)],
)


# -- ours --------------------------------------------------------------------------------

ours = Quart("soak_ours")
ours.secret_key = SECRET_KEY
ours.config.update(
    SPOTIFY_CLIENT_ID=CLIENT_ID,
    SPOTIFY_CLIENT_SECRET=CLIENT_SECRET,
    SPOTIFY_REDIRECT_URI=REDIRECT_URI,
    SPOTIFY_ACCOUNTS_URL=FAKE_URL,
    SPOTIFY_API_URL=FAKE_URL + "/v1",
    SPOTIFY_REFRESH_MARGIN=MARGIN,
)
spotify = SpotifyAuth(ours)  # SPOTIFY_TOKEN_STORE from the environment picks Redis


@ours.route("/login")
async def ours_login() -> ResponseReturnValue:
    return redirect(await spotify.get_user())


@ours.route("/callback/")
async def ours_callback() -> ResponseReturnValue:
    await spotify.get_user_token(request.args.get("code"))
    return "logged in"


@ours.route("/me")
async def ours_me() -> ResponseReturnValue:
    api = await spotify.web_api()  # the bearer is get_access_token()'s token
    reply = await api.get("/me")
    if reply.status_code != 200:
        return reply.json(), reply.status_code
    return {"id": reply.json()["id"]}


@ours.route("/stats")
async def ours_stats() -> ResponseReturnValue:
    return dict(spotify.manager().stats)
