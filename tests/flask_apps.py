"""A Flask app using the shim, for the tests."""

from __future__ import annotations

from typing import Any

import httpx
from flask import Flask, jsonify, redirect, render_template_string, request
from flask.typing import ResponseReturnValue

from quart_spotify_auth.flask import SpotifyAuth

from .apps import CLIENT_ID, CLIENT_SECRET


def make_flask_app(
    *,
    accounts_url: str = "http://fake.invalid",
    redirect_uri: str = "http://127.0.0.1:5000/callback/",
    transport: httpx.AsyncBaseTransport | None = None,
    **options: Any,
) -> tuple[Flask, SpotifyAuth]:
    app = Flask(__name__)
    app.secret_key = "a-test-secret-key-that-is-long-enough"
    app.config.update(
        SPOTIFY_CLIENT_ID=CLIENT_ID,
        SPOTIFY_CLIENT_SECRET=CLIENT_SECRET,
        SPOTIFY_REDIRECT_URI=redirect_uri,
        SPOTIFY_ACCOUNTS_URL=accounts_url,
        SPOTIFY_SCOPES="user-read-private user-read-email streaming",
    )
    spotify = SpotifyAuth(app, transport=transport, **options)

    @app.route("/login")
    def login() -> ResponseReturnValue:
        return redirect(spotify.get_user())

    @app.route("/callback/")
    def callback() -> ResponseReturnValue:
        spotify.get_user_token(request.args.get("code"))
        return redirect("/token")

    @app.route("/token")
    def token() -> ResponseReturnValue:
        access, _header, scopes, expires_in = spotify.get_access_token()
        return jsonify(access_token=access, scopes=sorted(scopes), expires_in=expires_in)

    @app.route("/async-token")
    async def async_token() -> ResponseReturnValue:
        return jsonify(access_token=spotify.get_access_token().access_token)

    @app.route("/player")
    def player() -> ResponseReturnValue:
        return render_template_string(
            "<script>const token = {{ spotify_access_token()|tojson }};</script>"
        )

    @app.route("/renew", methods=["POST"])
    def renew() -> ResponseReturnValue:
        spotify.force_renewal()
        return jsonify(renewed=True)

    @app.route("/logout", methods=["POST"])
    def logout() -> ResponseReturnValue:
        spotify.logout()
        return jsonify(logged_in=spotify.is_logged_in())

    @app.route("/seed/login")
    def seed_login() -> ResponseReturnValue:
        return redirect(spotify.getUser())

    @app.route("/seed/callback/")
    def seed_callback() -> ResponseReturnValue:
        spotify.getUserToken(request.args["code"])
        return redirect("/seed/token")

    @app.route("/seed/token")
    def seed_token() -> ResponseReturnValue:
        token_data = spotify.getAccessToken()
        return jsonify(access_token=token_data[0], expires_in=token_data[3])

    @app.route("/seed/renew")
    def seed_renew() -> ResponseReturnValue:
        spotify.forceRenewal()
        return jsonify(renewed=True)

    return app, spotify
