"""Many workers sharing one Redis: every worker serves every login, and each token is renewed
once per period however many workers run.

    pip install 'quart-spotify-auth[redis]'
    export SPOTIFY_CLIENT_ID=... SPOTIFY_CLIENT_SECRET=...
    export SECRET_KEY=$(python -c 'import secrets; print(secrets.token_hex(32))')
    export SPOTIFY_TOKEN_STORE=redis://127.0.0.1:6379/0
    hypercorn --workers 4 --bind 127.0.0.1:5000 examples.multiworker:app

Every worker must have the same SECRET_KEY (the session cookie is signed with it). Open
http://127.0.0.1:5000/ and reload /worker to see different workers answer for the same login.
"""

from __future__ import annotations

import os

from quart import Quart, ResponseReturnValue, redirect, request

from quart_spotify_auth import SpotifyAuth

app = Quart(__name__)
app.secret_key = os.environ["SECRET_KEY"]
app.config["SPOTIFY_SCOPES"] = "user-read-private"
app.config.setdefault("SPOTIFY_TOKEN_STORE", os.environ.get("SPOTIFY_TOKEN_STORE"))
spotify = SpotifyAuth(app)


@app.route("/")
async def index() -> ResponseReturnValue:
    if not await spotify.is_logged_in():
        return redirect("/login")
    return redirect("/worker")


@app.route("/login")
async def login() -> ResponseReturnValue:
    return redirect(await spotify.get_user())


@app.route("/callback/")
async def callback() -> ResponseReturnValue:
    await spotify.get_user_token(request.args.get("code"))
    return redirect("/worker")


@app.route("/worker")
async def worker() -> ResponseReturnValue:
    token = await spotify.get_access_token()
    return {"worker_pid": os.getpid(), "expires_in": token.expires_in}
