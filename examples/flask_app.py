"""Flask-Spotify-Auth's app on the Flask shim: the import is the only real change.

    export SPOTIFY_CLIENT_ID=... SPOTIFY_CLIENT_SECRET=...
    flask --app examples.flask_app run --host 127.0.0.1 --port 5000

Register http://127.0.0.1:5000/callback/ in your Spotify app and open http://127.0.0.1:5000/.
"""

from __future__ import annotations

import os
import secrets

from flask import Flask, redirect, render_template_string, request
from flask.typing import ResponseReturnValue

from quart_spotify_auth.flask import SpotifyAuth

app = Flask(__name__)
app.secret_key = os.environ.get("SECRET_KEY") or secrets.token_hex(32)
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
    # The seed promised the token to templates, for the Web Playback SDK's getOAuthToken.
    return render_template_string(
        "<p>Logged in.</p><script>const token = {{ spotify_access_token()|tojson }};</script>"
    )
