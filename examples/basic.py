"""Flask-Spotify-Auth's example app (its README's ``startup.py`` routes), ported.

Against the built-in fake Spotify (no account needed): the fake in one terminal, the app in
another, then open http://127.0.0.1:5000/ and pick a user on the fake's consent page::

    python -m quart_spotify_auth fake --port 5001
    export SPOTIFY_ACCOUNTS_URL=http://127.0.0.1:5001 SPOTIFY_API_URL=http://127.0.0.1:5001/v1
    export SPOTIFY_CLIENT_ID=demo-client
    hypercorn --bind 127.0.0.1:5000 examples.basic:app

Against real Spotify, register http://127.0.0.1:5000/callback/ in your Spotify app, then::

    export SPOTIFY_CLIENT_ID=... SPOTIFY_CLIENT_SECRET=...
    hypercorn --bind 127.0.0.1:5000 examples.basic:app

Open http://127.0.0.1:5000/, not localhost: the session cookie must come back to the host of
the redirect URI. Logins are kept in ``instance/quart_spotify_auth.sqlite3``.
"""

from __future__ import annotations

from quart import Quart, ResponseReturnValue, redirect, request

from quart_spotify_auth import SpotifyAuth, instance_secret_key
from quart_spotify_auth.routes import same_origin_only

app = Quart(__name__)
app.secret_key = instance_secret_key(app)  # SECRET_KEY, else one kept in instance/
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


@app.post("/logout")  # POST, from this site only: another site cannot log the user out
@same_origin_only
async def logout() -> ResponseReturnValue:
    await spotify.logout()
    return redirect("/bye")  # not "/": Spotify sends back at once a user who agreed before


@app.route("/bye")
async def bye() -> ResponseReturnValue:
    return 'Logged out. <a href="/">Log in again</a>'
