"""``benchmarks.soak_ours:ours``: the soak's app on quart-spotify-auth: ``/login``, the
callback, and ``/me``, a handler that calls ``/v1/me`` with the user's access token and
answers ``{"id": ...}``. ``benchmarks.soak_peer:peer`` is the same app written with Authlib.
"""

from __future__ import annotations

import os

from quart import Quart, ResponseReturnValue, redirect, request

from quart_spotify_auth import SpotifyAuth

from .soak_settings import CLIENT_ID, CLIENT_SECRET, FAKE_URL, MARGIN, REDIRECT_URI, SECRET_KEY

#: "memory", a Redis URL, or "default": the default store (a SQLite file in BENCH_INSTANCE).
STORE = os.environ.get("BENCH_STORE", "memory")

ours = Quart("soak_ours", instance_path=os.environ.get("BENCH_INSTANCE"))
ours.secret_key = SECRET_KEY
ours.config.update(
    SPOTIFY_CLIENT_ID=CLIENT_ID,
    SPOTIFY_CLIENT_SECRET=CLIENT_SECRET,
    SPOTIFY_REDIRECT_URI=REDIRECT_URI,
    SPOTIFY_ACCOUNTS_URL=FAKE_URL,
    SPOTIFY_API_URL=FAKE_URL + "/v1",
    SPOTIFY_REFRESH_MARGIN=MARGIN,
)
if "BENCH_HTTP_LIBRARY" in os.environ:  # "httpx2": the library Authlib's client runs on
    ours.config["SPOTIFY_HTTP_LIBRARY"] = os.environ["BENCH_HTTP_LIBRARY"]
if STORE != "default":
    ours.config["SPOTIFY_TOKEN_STORE"] = STORE
spotify = SpotifyAuth(ours)


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
