"""The demo: `python -m quart_spotify_auth demo` serves it on http://127.0.0.1:5000.

With no ``SPOTIFY_CLIENT_ID`` in the environment it runs against the built-in FakeSpotify
(served on the next port), with one-minute tokens so renewal can be watched; with real
credentials it talks to Spotify.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
from typing import Any

from quart import Quart, ResponseReturnValue, redirect, render_template_string, url_for

from .errors import SpotifyAuthError
from .extension import SpotifyAuth
from .routes import same_origin_only, spotify_blueprint
from .serving import PortInUse, serve
from .testing import make_fake

PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>quart-spotify-auth demo</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
 body{font-family:system-ui,sans-serif;background:#121212;color:#eee;margin:0}
 main{max-width:40rem;margin:3rem auto;padding:2rem;background:#1e1e1e;border-radius:12px}
 h1{margin-top:0;font-size:1.6rem} .mode{color:#1db954;font-size:.9rem}
 .btn{display:inline-block;background:#1db954;color:#000;border:0;border-radius:999px;
      padding:.6rem 1.4rem;font-weight:700;text-decoration:none;cursor:pointer;font-size:1rem}
 .btn.alt{background:#333;color:#eee} form{display:inline}
 dl{display:grid;grid-template-columns:9rem 1fr;gap:.4rem 1rem} dt{color:#aaa}
 .scope{display:inline-block;background:#2a2a2a;border-radius:4px;padding:0 .4rem;margin:.1rem}
 .error{border-left:4px solid #e22134;padding-left:1rem}
 .bar{height:6px;background:#333;border-radius:3px;overflow:hidden;margin-top:.3rem}
 .bar div{height:100%;background:#1db954;transition:width 1s linear}
</style></head><body><main>
<p class="mode">{{ mode }}</p>
{% if error %}
  <h1>{{ error.name }}</h1>
  <p class="error" id="error">{{ error.description }}</p>
  <p><a class="btn" href="{{ url_for('spotify_auth.login', next='/') }}">Log in again</a>
     <a class="btn alt" href="{{ url_for('index') }}">Home</a></p>
{% elif profile %}
  <h1>Hello, <span id="name">{{ profile.display_name or profile.id }}</span></h1>
  <dl>
   <dt>Spotify id</dt><dd id="user-id">{{ profile.id }}</dd>
   <dt>Scopes</dt><dd id="scopes">{% for s in token.scopes|sort %}<span class="scope">{{ s }}</span>
     {% else %}(none){% endfor %}</dd>
   <dt>Token expires in</dt><dd><span id="expires">{{ token.expires_in }}</span> s
     <div class="bar"><div id="bar" style="width:100%"></div></div></dd>
   <dt>Token</dt><dd id="token-id">{{ token_id }}</dd>
   <dt>Renewals seen</dt><dd id="renewals">0</dd>
  </dl>
  <form method="post" action="{{ url_for('renew') }}">
    <button class="btn" id="renew">Renew now</button></form>
  <form method="post" action="{{ url_for('spotify_auth.logout', next='/') }}">
    <button class="btn alt" id="logout">Log out</button></form>
  <script>
   // The countdown follows the token endpoint: when the background renewal lands, the
   // token changes and the countdown rolls over, with no page reload.
   let expiresAt = Date.now() / 1000 + {{ token.expires_in }}, lifetime = {{ lifetime }};
   let current = {{ token_id|tojson }}, renewals = 0;
   async function poll() {
     const reply = await fetch("{{ url_for('spotify_auth.token') }}", {cache: "no-store"});
     if (reply.status === 401) { location.reload(); return; }
     const data = await reply.json(), id = "\u2026" + data.access_token.slice(-6);
     expiresAt = Date.now() / 1000 + data.expires_in;
     if (id !== current) {
       current = id; renewals += 1;
       document.getElementById("token-id").textContent = id;
       document.getElementById("renewals").textContent = renewals;
     }
     tick();
   }
   function tick() {
     const left = Math.max(0, Math.floor(expiresAt - Date.now() / 1000));
     document.getElementById("expires").textContent = left;
     document.getElementById("bar").style.width = (100 * left / lifetime) + "%";
   }
   setInterval(poll, 1000); setInterval(tick, 250); tick();
  </script>
{% else %}
  <h1>quart-spotify-auth</h1>
  <p>Log in with Spotify: the app keeps your tokens server-side and renews them in the
     background, before they expire.</p>
  <a class="btn" id="login" href="{{ url_for('spotify_auth.login', next='/') }}">
    Log in with Spotify</a>
{% endif %}
</main></body></html>"""


def _spotify_mode() -> str:
    """Which Spotify the demo talks to when credentials are set: the real one, unless
    ``SPOTIFY_ACCOUNTS_URL`` names another (a fake one of the user's own)."""
    url = os.environ.get("SPOTIFY_ACCOUNTS_URL", "").strip().rstrip("/")
    if url in ("", "https://accounts.spotify.com"):
        return "Real Spotify"
    return f"The Spotify at {url} (SPOTIFY_ACCOUNTS_URL)"


def create_app(*, port: int = 5000, fake_url: str | None = None) -> Quart:
    """The demo app served on ``port``; ``fake_url`` points it at a FakeSpotify instead of
    Spotify."""
    app = Quart(__name__)
    app.secret_key = os.environ.get("SECRET_KEY") or secrets.token_hex(32)
    app.config["SPOTIFY_SCOPES"] = "user-read-private user-read-email"
    app.config["SESSION_COOKIE_SAMESITE"] = "Lax"  # as docs/security.md asks of every app
    # A demo keeps its logins in memory (and writes no file); your app's default is SQLite.
    app.config["SPOTIFY_TOKEN_STORE"] = os.environ.get("SPOTIFY_TOKEN_STORE", "memory")
    app.config["SPOTIFY_REDIRECT_URI"] = os.environ.get(
        "SPOTIFY_REDIRECT_URI", f"http://127.0.0.1:{port}/callback/"
    )
    if fake_url is not None:
        app.config.update(
            SPOTIFY_CLIENT_ID="demo-client",
            SPOTIFY_CLIENT_SECRET="demo-secret",
            SPOTIFY_ACCOUNTS_URL=fake_url,
            SPOTIFY_API_URL=fake_url + "/v1",
        )
        mode = f"Demo mode: the built-in fake Spotify at {fake_url} (no credentials set)"
    else:
        mode = _spotify_mode()
    spotify = SpotifyAuth(app)
    app.register_blueprint(spotify_blueprint(spotify))

    async def page(**context: Any) -> str:
        return await render_template_string(PAGE, mode=mode, **context)

    @app.route("/")
    async def index() -> ResponseReturnValue:
        record = await spotify.token_record()
        if record is None:
            return await page()
        token = await spotify.get_access_token()
        reply = await (await spotify.web_api()).get("/me")
        profile = reply.json() if reply.status_code == 200 else {"id": "?"}
        return await page(
            profile=profile,
            token=token,
            lifetime=max(1, round(record.lifetime)),
            token_id="\u2026" + token.access_token[-6:],
        )

    @app.route("/login")
    async def login() -> ResponseReturnValue:
        return redirect(url_for("spotify_auth.login", next="/"))

    @app.post("/renew")
    @same_origin_only
    async def renew() -> ResponseReturnValue:
        await spotify.force_renewal()
        return redirect(url_for("index"))

    @app.errorhandler(SpotifyAuthError)
    async def failed(error: SpotifyAuthError) -> ResponseReturnValue:
        return await page(error=error), error.code or 500, error.response_headers

    return app


async def run_fake(
    port: int,
    *,
    client_id: str,
    client_secret: str | None,
    redirect_uri: str,
    access_ttl: float,
) -> None:
    """Serve only the fake Spotify until interrupted, for trying an app without Spotify."""
    fake = make_fake(
        client_id=client_id,
        client_secret=client_secret,
        redirect_uri=redirect_uri,
        access_ttl=access_ttl,
    )
    async with serve(fake, port=port) as url:
        print(f"Fake Spotify at {url} (client {client_id!r}, callback {redirect_uri}).")
        print(f"Set SPOTIFY_ACCOUNTS_URL={url} and SPOTIFY_API_URL={url}/v1 in your app.")
        print(f"Users: alice, bob. Switches: POST {url}/_fake/control; counters: {url}/_fake/state")
        await asyncio.Event().wait()


async def run(port: int = 5000, fake_port: int | None = None) -> None:
    """Serve the demo (and the fake Spotify when no credentials are set) until interrupted."""
    app_url = f"http://127.0.0.1:{port}"
    if os.environ.get("SPOTIFY_CLIENT_ID"):
        mode = _spotify_mode()
        print(f"quart-spotify-auth demo, {mode[0].lower()}{mode[1:]}: open {app_url}/", flush=True)
        print(f"Register {app_url}/callback/ as a redirect URI in your Spotify app.", flush=True)
        async with serve(create_app(port=port), port=port):
            await asyncio.Event().wait()
        return
    fake = make_fake(
        client_id="demo-client",
        client_secret="demo-secret",
        redirect_uri=f"{app_url}/callback/",
        access_ttl=60,
    )
    async with contextlib.AsyncExitStack() as served:
        try:
            fake_url = await served.enter_async_context(serve(fake, port=fake_port or port + 1))
        except PortInUse as exc:  # the fake's port: --fake-port chooses it (default PORT + 1)
            raise PortInUse(exc.host, exc.port, "--fake-port") from exc
        await served.enter_async_context(serve(create_app(port=port, fake_url=fake_url), port=port))
        print(f"quart-spotify-auth demo: open {app_url}/", flush=True)
        print(
            f"Mode: fake Spotify at {fake_url} (set SPOTIFY_CLIENT_ID to use real Spotify, "
            "and SPOTIFY_CLIENT_SECRET if your Spotify app has one: without it the login "
            "uses PKCE alone). Tokens last 60 s here.",
            flush=True,
        )
        await asyncio.Event().wait()
