"""``benchmarks.soak_ours:ours``: the soak's app on quart-spotify-auth: ``/login``, the
callback, and ``/me``, a handler that calls ``/v1/me`` with the user's access token and
answers ``{"id": ...}``. ``benchmarks.soak_peer:peer`` is the same app written with Authlib.
"""

from __future__ import annotations

import os

from quart import Quart, ResponseReturnValue, redirect, request

from quart_spotify_auth import SpotifyAuth

from .soak_settings import CLIENT_ID, CLIENT_SECRET, FAKE_URL, MARGIN, REDIRECT_URI, SECRET_KEY

ours = Quart("soak_ours")
ours.secret_key = SECRET_KEY
ours.config.update(
    SPOTIFY_CLIENT_ID=CLIENT_ID,
    SPOTIFY_CLIENT_SECRET=CLIENT_SECRET,
    SPOTIFY_REDIRECT_URI=REDIRECT_URI,
    SPOTIFY_ACCOUNTS_URL=FAKE_URL,
    SPOTIFY_API_URL=FAKE_URL + "/v1",
    SPOTIFY_REFRESH_MARGIN=MARGIN,
    SPOTIFY_TOKEN_STORE=os.environ.get("SPOTIFY_TOKEN_STORE", "memory"),
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
