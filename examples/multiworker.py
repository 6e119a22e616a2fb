"""Many workers, one login store: every worker serves every login, and each token is renewed
once per period however many workers run.

On one host nothing needs configuring: the default store is a SQLite file in the app's
instance folder, shared by the workers and kept across restarts. Against the built-in fake
Spotify (no account needed), in two terminals::

    python -m quart_spotify_auth fake --port 5001
    export SPOTIFY_ACCOUNTS_URL=http://127.0.0.1:5001 SPOTIFY_API_URL=http://127.0.0.1:5001/v1
    export SPOTIFY_CLIENT_ID=demo-client
    export SECRET_KEY=$(python -c 'import secrets; print(secrets.token_hex(32))')
    hypercorn --workers 4 --bind 127.0.0.1:5000 examples.multiworker:app

Against real Spotify, register http://127.0.0.1:5000/callback/ and set SPOTIFY_CLIENT_ID and
SPOTIFY_CLIENT_SECRET instead of the fake's three variables. For several hosts, point them
all at one PostgreSQL or Redis::

    pip install 'quart-spotify-auth[postgresql]'   # or [redis]
    export SPOTIFY_TOKEN_STORE=postgresql://user:password@db/app   # or redis://host:6379/0

Every worker must have the same SECRET_KEY (the session cookie is signed with it). Open
http://127.0.0.1:5000/ and reload /worker: it closes its connection after each answer, so the
next reload may land on another worker, which answers for the same login.
"""

from __future__ import annotations

import os

from quart import Quart, ResponseReturnValue, redirect, request

from quart_spotify_auth import SpotifyAuth

app = Quart(__name__)
app.secret_key = os.environ["SECRET_KEY"]
app.config["SPOTIFY_SCOPES"] = "user-read-private"
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
    # A browser keeps its connection to one worker; closing it lets the next reload reach
    # whichever worker accepts first.
    headers = {"Connection": "close"}
    return {"worker_pid": os.getpid(), "expires_in": token.expires_in}, 200, headers
