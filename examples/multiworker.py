"""Many workers, one login store: every worker serves every login, and each token is renewed
once per period however many workers run.

On one host nothing needs configuring: the default store is a SQLite file in the app's
instance folder, shared by the workers (and kept across restarts):

    export SPOTIFY_CLIENT_ID=... SPOTIFY_CLIENT_SECRET=...
    export SECRET_KEY=$(python -c 'import secrets; print(secrets.token_hex(32))')
    hypercorn --workers 4 --bind 127.0.0.1:5000 examples.multiworker:app

For several hosts, point them all at one PostgreSQL or Redis:

    pip install 'quart-spotify-auth[postgresql]'   # or [redis]
    export SPOTIFY_TOKEN_STORE=postgresql://user:password@db/app   # or redis://host:6379/0

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
