"""Tokens beyond the request: a nightly job and a websocket, for users who sign in to the app
with an account of its own (here a stand-in, /signin?user=NAME; use quart-auth or yours).

Logins are keyed by the app's user id (the ``identity`` hook), so code with no request in it
finds a user's tokens with ``spotify.for_user(user_id)``. Against the built-in fake Spotify
(no account needed), in two terminals::

    python -m quart_spotify_auth fake --port 5001
    export SPOTIFY_ACCOUNTS_URL=http://127.0.0.1:5001 SPOTIFY_API_URL=http://127.0.0.1:5001/v1
    export SPOTIFY_CLIENT_ID=demo-client
    hypercorn --bind 127.0.0.1:5000 examples.jobs:app

Open http://127.0.0.1:5000/signin?user=ada and link Spotify. Then run the nightly job, in a
terminal with the same variables (it reads the same store, here the instance folder's)::

    quart --app examples.jobs nightly

It prints one line per linked user. Admins list and forget logins from the command line:
``python -m quart_spotify_auth logins --app examples.jobs:app``.
"""

from __future__ import annotations

import asyncio

from quart import Quart, ResponseReturnValue, redirect, request, session, websocket

from quart_spotify_auth import SpotifyAuth, SpotifyAuthError, instance_secret_key
from quart_spotify_auth.routes import same_origin_only

app = Quart(__name__)
app.secret_key = instance_secret_key(app)  # SECRET_KEY, else one kept in instance/
app.config["SPOTIFY_SCOPES"] = "user-read-private"


def signed_in_user() -> str | None:
    """The app's own user id (quart-auth: ``current_user.auth_id``)."""
    return session.get("user_id")


spotify = SpotifyAuth(app, identity=signed_in_user)  # tokens keyed by the app's user id


@app.route("/signin")  # a stand-in for the app's own sign-in
async def signin() -> ResponseReturnValue:
    user = request.args.get("user", "")
    if not user.isalnum():
        return "Sign in with /signin?user=NAME (letters and digits).", 400
    session["user_id"] = user
    return redirect("/login")


@app.route("/login")
async def login() -> ResponseReturnValue:
    if signed_in_user() is None:
        return redirect("/signin")
    return redirect(await spotify.get_user())


@app.route("/callback/")
async def callback() -> ResponseReturnValue:
    await spotify.get_user_token(request.args.get("code"))
    return redirect("/")


@app.route("/")
async def home() -> ResponseReturnValue:
    if signed_in_user() is None:
        return redirect("/signin")
    token = await spotify.get_access_token()  # 401 until Spotify is linked
    return {"user": signed_in_user(), "scopes": sorted(token.scopes)}


@app.websocket("/ws")
async def profile_feed() -> ResponseReturnValue | None:
    """Each message in gets the user's Spotify name back: a websocket has no request, so the
    user is found by id. One not signed in, or not linked to Spotify, is refused before the
    socket opens (an HTTP error the browser sees, where the server supports it)."""
    user_id = signed_in_user()
    if user_id is None:
        return "Sign in first: /signin?user=NAME", 401
    user = spotify.for_user(user_id)
    try:
        await user.get_access_token()  # linked to Spotify, and renewed if it had expired
    except SpotifyAuthError as error:
        return error.description or "Link Spotify first: /login", error.code or 401
    api = await user.web_api()
    while True:
        await websocket.receive()
        reply = await api.get("/me")
        await websocket.send_json({"display_name": reply.json()["display_name"]})


@app.post("/logout")  # POST, from this site only: another site cannot log the user out
@same_origin_only
async def logout() -> ResponseReturnValue:
    await spotify.logout()  # this user's Spotify tokens, in every worker
    session.pop("user_id", None)
    return redirect("/signin")


async def nightly() -> None:
    """For every linked user, what a nightly job does with their token (here: their name;
    refreshing a playlist would go here). A token that has expired is renewed first, once,
    even if the app renews it at the same moment."""
    async with app.app_context():
        async for linked in spotify.logins():
            if linked.user_id is None:  # a browser's login: no user to act for
                continue
            try:
                api = await spotify.for_user(linked.user_id).web_api()
                name = (await api.get("/me")).json()["display_name"]
            except SpotifyAuthError as error:  # logged out meanwhile, or must log in again
                print(f"{linked.user_id}: skipped ({error.description})")
                continue
            print(f"{linked.user_id}: {name}")
    await spotify.close(app)  # its connections and the store, as the app does when it stops


@app.cli.command("nightly")  # a command of its own loop: Quart gives it no app context
def nightly_command() -> None:
    """Act for every linked user (run it from cron: quart --app examples.jobs nightly)."""
    asyncio.run(nightly())
