"""Many workers, one login store: every worker serves every login, and each token is renewed
once per period however many workers run.

On one host nothing needs configuring: the default store is a SQLite file in the app's
instance folder, shared by the workers and kept across restarts, and so is the secret key
that signs their session cookies (``instance/secret_key``, made by the first worker). Against
the built-in fake Spotify (no account needed), in two terminals::

    python -m quart_spotify_auth fake --port 5001
    export SPOTIFY_ACCOUNTS_URL=http://127.0.0.1:5001 SPOTIFY_API_URL=http://127.0.0.1:5001/v1
    export SPOTIFY_CLIENT_ID=demo-client
    hypercorn --workers 4 --bind 127.0.0.1:5000 examples.multiworker:app

Against real Spotify, register http://127.0.0.1:5000/callback/ and set SPOTIFY_CLIENT_ID and
SPOTIFY_CLIENT_SECRET instead of the fake's three variables. For several hosts, point them
all at one PostgreSQL or Redis::

    pip install 'quart-spotify-auth[postgresql]'   # or [redis]
    export SPOTIFY_TOKEN_STORE=postgresql://user:password@db/app   # or redis://host:6379/0
    export SECRET_KEY=...   # one long random string, the same on every host

Every worker must sign with the same secret key: on one host the instance folder's file sees
to it; across hosts, SECRET_KEY does. Open
http://127.0.0.1:5000/ and reload /worker: it closes its connection after each answer, so the
next reload may land on another worker, which answers for the same login.
"""

from __future__ import annotations

import os

from quart import Quart, ResponseReturnValue, redirect, request

from quart_spotify_auth import SpotifyAuth, instance_secret_key
from quart_spotify_auth.routes import same_origin_only

app = Quart(__name__)
app.secret_key = instance_secret_key(app)  # SECRET_KEY, else one kept in instance/
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


@app.post("/logout")  # POST, from this site only: another site cannot log the user out
@same_origin_only
async def logout() -> ResponseReturnValue:
    await spotify.logout()  # whichever worker answers, the login is gone for all of them
    return redirect("/bye")  # not /login: Spotify sends back at once a user who agreed before


@app.route("/bye")
async def bye() -> ResponseReturnValue:
    return 'Logged out. <a href="/">Log in again</a>'
