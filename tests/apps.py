"""The apps the tests (and the benchmarks) drive: one Quart app and one Flask app with the routes
a Spotify-login app has, in-process or served by hypercorn."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import flask
from flask.typing import ResponseReturnValue as FlaskReturnValue
from quart import Quart, ResponseReturnValue, jsonify, redirect, request

from quart_spotify_auth import SpotifyAuth
from quart_spotify_auth.flask import SpotifyAuth as FlaskSpotifyAuth
from quart_spotify_auth.serving import free_port, serve

from ._httplib import httpx

CLIENT_ID = "test-client"
CLIENT_SECRET = "test-secret"
SECRET_KEY = "a-test-secret-key-that-is-long-enough"


def app_config(
    accounts_url: str = "https://fake.invalid",
    redirect_uri: str = "http://127.0.0.1:5000/callback/",
    *,
    public: bool = False,
    scopes: str = "user-read-private user-read-email",
    store: str | None = "memory",
    secret_key: str = SECRET_KEY,
) -> dict[str, Any]:
    """The settings of a test app using the fake at ``accounts_url`` (``store=None``: the
    default store, SQLite in the instance folder)."""
    config = {
        "SECRET_KEY": secret_key,
        "SPOTIFY_CLIENT_ID": CLIENT_ID,
        "SPOTIFY_CLIENT_SECRET": None if public else CLIENT_SECRET,
        "SPOTIFY_REDIRECT_URI": redirect_uri,
        "SPOTIFY_ACCOUNTS_URL": accounts_url,
        "SPOTIFY_API_URL": accounts_url + "/v1",
        "SPOTIFY_SCOPES": scopes,
    }
    return config if store is None else {**config, "SPOTIFY_TOKEN_STORE": store}


def make_app(
    *,
    accounts_url: str = "https://fake.invalid",
    redirect_uri: str = "http://127.0.0.1:5000/callback/",
    transport: httpx.AsyncBaseTransport | None = None,
    api_transport: httpx.AsyncBaseTransport | None = None,
    public: bool = False,
    store_url: str | None = "memory",
    instance_path: str | None = None,
    secret_key: str = SECRET_KEY,
    **options: Any,
) -> tuple[Quart, SpotifyAuth]:
    """A Quart app with /login, /callback/, /token, /me, /renew, /logout and /status."""
    app = Quart(__name__, instance_path=instance_path)
    config = app_config(accounts_url, redirect_uri, public=public, store=store_url)
    app.config.update(config, SECRET_KEY=secret_key)
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
            access_token=access, header=header, scopes=sorted(scopes), expires_in=expires_in
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


def served_worker(fake_url: str, store: Any, **options: Any) -> tuple[Quart, SpotifyAuth]:
    """One of several workers serving the one user "u" (the ``identity``) over ``store``, each
    on its own port (``app.config["TEST_PORT"]``), which its redirect URI names."""
    port = free_port()
    app, spotify = make_app(
        accounts_url=fake_url,
        redirect_uri=f"http://127.0.0.1:{port}/callback/",
        store=store,
        identity=lambda: "u",
        **options,
    )
    app.config["TEST_PORT"] = port
    return app, spotify


@contextlib.asynccontextmanager
async def two_workers(
    app_a: Quart, app_b: Quart
) -> AsyncIterator[tuple[str, str, httpx.AsyncClient]]:
    """Serve two :func:`served_worker` apps on their ports; yields their base URLs and a
    client to call them with (all stopped on exit)."""
    async with (
        serve(app_a, port=app_a.config["TEST_PORT"]) as a,
        serve(app_b, port=app_b.config["TEST_PORT"]) as b,
        httpx.AsyncClient(timeout=30) as http,
    ):
        yield a, b, http


def make_flask_app(
    *,
    accounts_url: str = "https://fake.invalid",
    redirect_uri: str = "http://127.0.0.1:5000/callback/",
    transport: httpx.AsyncBaseTransport | None = None,
    store_url: str | None = "memory",
    instance_path: str | None = None,
    **options: Any,
) -> tuple[flask.Flask, FlaskSpotifyAuth]:
    """The same app on Flask, through the shim, with the seed's names under /seed/."""
    app = flask.Flask(__name__, instance_path=instance_path)
    scopes = "user-read-private user-read-email streaming"
    app.config.update(app_config(accounts_url, redirect_uri, scopes=scopes, store=store_url))
    spotify = FlaskSpotifyAuth(app, transport=transport, **options)

    @app.route("/login")
    def login() -> FlaskReturnValue:
        return flask.redirect(spotify.get_user())

    @app.route("/callback/")
    def callback() -> FlaskReturnValue:
        spotify.get_user_token(flask.request.args.get("code"))
        return flask.redirect("/token")

    @app.route("/token")
    def token() -> FlaskReturnValue:
        access, _header, scopes, expires_in = spotify.get_access_token()
        return flask.jsonify(access_token=access, scopes=sorted(scopes), expires_in=expires_in)

    @app.route("/async-token")
    async def async_token() -> FlaskReturnValue:
        return flask.jsonify(access_token=spotify.get_access_token().access_token)

    @app.route("/player")
    def player() -> FlaskReturnValue:
        return flask.render_template_string(
            "<script>const token = {{ spotify_access_token()|tojson }};</script>"
        )

    @app.route("/renew", methods=["POST"])
    def renew() -> FlaskReturnValue:
        spotify.force_renewal()
        return flask.jsonify(renewed=True)

    @app.route("/logout", methods=["POST"])
    def logout() -> FlaskReturnValue:
        spotify.logout()
        return flask.jsonify(logged_in=spotify.is_logged_in())

    @app.route("/seed/login")
    def seed_login() -> FlaskReturnValue:
        return flask.redirect(spotify.getUser())

    @app.route("/seed/callback/")
    def seed_callback() -> FlaskReturnValue:
        spotify.getUserToken(flask.request.args["code"])
        return flask.redirect("/seed/token")

    @app.route("/seed/token")
    def seed_token() -> FlaskReturnValue:
        token_data = spotify.getAccessToken()
        return flask.jsonify(access_token=token_data[0], expires_in=token_data[3])

    @app.route("/seed/renew")
    def seed_renew() -> FlaskReturnValue:
        spotify.forceRenewal()
        return flask.jsonify(renewed=True)

    return app, spotify
