"""Flask-Spotify-Auth's app on the Flask shim: the import is the only real change.

Against the built-in fake Spotify (no account needed), in two terminals::

    python -m quart_spotify_auth fake --port 5001
    export SPOTIFY_ACCOUNTS_URL=http://127.0.0.1:5001 SPOTIFY_API_URL=http://127.0.0.1:5001/v1
    export SPOTIFY_CLIENT_ID=demo-client
    flask --app examples.flask_app run --host 127.0.0.1 --port 5000

Against real Spotify, register http://127.0.0.1:5000/callback/ in your Spotify app, then::

    export SPOTIFY_CLIENT_ID=... SPOTIFY_CLIENT_SECRET=...
    flask --app examples.flask_app run --host 127.0.0.1 --port 5000

and open http://127.0.0.1:5000/. In production, any WSGI server: ``gunicorn -w 4 -b
127.0.0.1:5000 examples.flask_app:app`` (on the redirect URI's port: gunicorn's own default is
8000; each worker process runs its own renewal loop thread).
"""

from __future__ import annotations

from flask import Flask, abort, redirect, render_template_string, request
from flask.typing import ResponseReturnValue

from quart_spotify_auth import instance_secret_key
from quart_spotify_auth.flask import SpotifyAuth

app = Flask(__name__)
app.secret_key = instance_secret_key(app)  # SECRET_KEY, else one kept in instance/
app.config["SPOTIFY_SCOPES"] = "streaming user-read-email user-read-private"
spotify = SpotifyAuth(app)


@app.route("/")
def index() -> ResponseReturnValue:
    return redirect(spotify.get_user())


@app.route("/callback/")
def callback() -> ResponseReturnValue:
    spotify.get_user_token(request.args.get("code"))
    return redirect("/home")


@app.route("/home")
def home() -> ResponseReturnValue:
    if not spotify.is_logged_in():  # the seed said "Logged in." to everyone
        return redirect("/")
    # The seed promised the token to templates, for the Web Playback SDK's getOAuthToken.
    return render_template_string(
        "<p>Logged in.</p><script>const token = {{ spotify_access_token()|tojson }};</script>"
    )


@app.post("/logout")
def logout() -> ResponseReturnValue:
    if request.headers.get("Sec-Fetch-Site", "same-origin") not in ("same-origin", "none"):
        abort(403)  # another site cannot log the user out
    spotify.logout()
    return redirect("/bye")  # not "/": Spotify sends back at once a user who agreed before


@app.route("/bye")
def bye() -> ResponseReturnValue:
    return 'Logged out. <a href="/">Log in again</a>'
