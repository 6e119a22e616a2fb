"""Flask-Spotify-Auth's example app (its README's ``startup.py`` routes), ported.

Run it against real Spotify (register http://127.0.0.1:5000/callback/ in your Spotify app)::

    export SPOTIFY_CLIENT_ID=... SPOTIFY_CLIENT_SECRET=...
    hypercorn --bind 127.0.0.1:5000 examples.basic:app

Then open http://127.0.0.1:5000/ (not localhost: the session cookie must come back to the same
host as the redirect URI).
"""

from __future__ import annotations

import os
import secrets

from quart import Quart, ResponseReturnValue, redirect, request

from quart_spotify_auth import SpotifyAuth

app = Quart(__name__)
app.secret_key = os.environ.get("SECRET_KEY") or secrets.token_hex(32)
# The seed asked for user-read-birthdate too; Spotify removed that scope.
app.config["SPOTIFY_SCOPES"] = "streaming user-read-email user-read-private"
spotify = SpotifyAuth(app)


@app.route("/")
async def index() -> ResponseReturnValue:
    return redirect(await spotify.get_user())


@app.route("/callback/")
async def callback() -> ResponseReturnValue:
    await spotify.get_user_token(request.args.get("code"))
    return redirect("/home")


@app.route("/home")
async def home() -> ResponseReturnValue:
    token = await spotify.get_access_token()
    return {"scopes": sorted(token.scopes), "expires_in": token.expires_in}


@app.route("/renew")
async def renew() -> ResponseReturnValue:
    await spotify.force_renewal()
    return redirect("/home")
