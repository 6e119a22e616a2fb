"""A small app the tests drive, in-process or served by hypercorn."""

from __future__ import annotations

from typing import Any

import httpx
from quart import Quart, ResponseReturnValue, jsonify, redirect, request

from quart_spotify_auth import SpotifyAuth

CLIENT_ID = "test-client"
CLIENT_SECRET = "test-secret"


def make_app(
    *,
    accounts_url: str = "http://fake.invalid",
    redirect_uri: str = "http://127.0.0.1:5000/callback/",
    transport: httpx.AsyncBaseTransport | None = None,
    api_transport: httpx.AsyncBaseTransport | None = None,
    public: bool = False,
    **options: Any,
) -> tuple[Quart, SpotifyAuth]:
    """An app with the routes a Spotify-login app has: /login, /callback/, /token, /me,
    /renew, /logout."""
    app = Quart(__name__)
    app.secret_key = "a-test-secret-key-that-is-long-enough"
    app.config.update(
        SPOTIFY_CLIENT_ID=CLIENT_ID,
        SPOTIFY_CLIENT_SECRET=None if public else CLIENT_SECRET,
        SPOTIFY_REDIRECT_URI=redirect_uri,
        SPOTIFY_ACCOUNTS_URL=accounts_url,
        SPOTIFY_API_URL=accounts_url + "/v1",
        SPOTIFY_SCOPES="user-read-private user-read-email",
    )
    spotify = SpotifyAuth(app, transport=transport, **options)

    @app.route("/login")
    async def login() -> ResponseReturnValue:
        return redirect(await spotify.get_user())

    @app.route("/callback/")
    async def callback() -> ResponseReturnValue:
        await spotify.get_user_token(request.args.get("code"))
        return redirect("/token")

    @app.route("/token")
    async def token() -> ResponseReturnValue:
        access, header, scopes, expires_in = await spotify.get_access_token()
        return jsonify(
            access_token=access,
            header=header,
            scopes=sorted(scopes),
            expires_in=expires_in,
        )

    @app.route("/me")
    async def me() -> ResponseReturnValue:
        token = await spotify.get_access_token()
        async with httpx.AsyncClient(transport=api_transport or transport) as http:
            reply = await http.get(
                app.config["SPOTIFY_API_URL"] + "/me", headers=token.authorization_header
            )
        return jsonify(reply.json()), reply.status_code

    @app.route("/renew", methods=["POST"])
    async def renew() -> ResponseReturnValue:
        await spotify.force_renewal()
        return jsonify(renewed=True)

    @app.route("/logout", methods=["POST"])
    async def logout() -> ResponseReturnValue:
        await spotify.logout()
        return jsonify(logged_in=await spotify.is_logged_in())

    @app.route("/status")
    async def status() -> ResponseReturnValue:
        return jsonify(logged_in=await spotify.is_logged_in())

    return app, spotify
