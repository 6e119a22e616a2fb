"""A Web Playback SDK page on quart-spotify-auth: the SDK asks ``getOAuthToken`` for a token
whenever it needs one, and the page answers from the blueprint's token endpoint, which always
holds a fresh token because the extension renews it in the background.

Against the built-in fake Spotify (no account needed): the page shows the login flow and the
token being renewed every minute; there is no audio, since the SDK itself comes from Spotify::

    python -m quart_spotify_auth fake --port 5001 --token-lifetime 60
    export SPOTIFY_ACCOUNTS_URL=http://127.0.0.1:5001 SPOTIFY_API_URL=http://127.0.0.1:5001/v1
    export SPOTIFY_CLIENT_ID=demo-client
    hypercorn --bind 127.0.0.1:5000 examples.playback.app:app

Real Spotify (a Premium account; register http://127.0.0.1:5000/callback/)::

    export SPOTIFY_CLIENT_ID=... SPOTIFY_CLIENT_SECRET=...
    hypercorn --bind 127.0.0.1:5000 examples.playback.app:app
"""

from __future__ import annotations

from quart import Quart, ResponseReturnValue, render_template_string

from quart_spotify_auth import SpotifyAuth, instance_secret_key
from quart_spotify_auth.routes import login_required, spotify_blueprint

PAGE = """<!doctype html><html lang="en"><head><meta charset="utf-8">
<title>Web Playback</title></head><body>
<h1>Web Playback SDK</h1>
<p>Player: <span id="status">loading the SDK...</span></p>
<p>Token: <span id="token">...</span>, <span id="expires">?</span> s left</p>
<button id="toggle">Play / pause</button>
<form method="post" action="{{ url_for('spotify_auth.logout', next='/bye') }}">
  <button>Log out</button></form>
<script>
  const tokenUrl = "{{ url_for('spotify_auth.token') }}";
  async function freshToken() {
    const reply = await fetch(tokenUrl, {cache: "no-store"});
    if (reply.status === 401) { location.href = "{{ url_for('spotify_auth.login', next='/') }}"; }
    const data = await reply.json();
    document.getElementById("token").textContent = "\\u2026" + data.access_token.slice(-6);
    document.getElementById("expires").textContent = data.expires_in;
    return data.access_token;
  }
  setInterval(freshToken, 5000); freshToken();
  window.onSpotifyWebPlaybackSDKReady = () => {
    const player = new Spotify.Player({
      name: "quart-spotify-auth", volume: 0.5,
      getOAuthToken: callback => { freshToken().then(callback); },
    });
    const status = text => { document.getElementById("status").textContent = text; };
    player.addListener("ready", ({device_id}) => status("ready, device " + device_id));
    player.addListener("not_ready", () => status("offline"));
    player.addListener("account_error", () => status("a Premium account is needed"));
    player.addListener("authentication_error", ({message}) => status(message));
    document.getElementById("toggle").onclick = () => player.togglePlay();
    player.connect();
  };
</script>
<script src="https://sdk.scdn.co/spotify-player.js"
        onerror="document.getElementById('status').textContent = 'SDK unreachable'"></script>
</body></html>"""

app = Quart(__name__)
app.secret_key = instance_secret_key(app)  # SECRET_KEY, else one kept in instance/
app.config["SPOTIFY_SCOPES"] = "streaming user-read-email user-read-private"
spotify = SpotifyAuth(app)
app.register_blueprint(spotify_blueprint(spotify))


@app.route("/")
@login_required
async def player() -> ResponseReturnValue:
    return await render_template_string(PAGE)


@app.route("/bye")
async def bye() -> ResponseReturnValue:
    # Logged out: a page of its own, or "/" would send the browser straight back to Spotify.
    return await render_template_string(
        "<!doctype html><title>Logged out</title><p>Logged out of Spotify here.</p>"
        "<p><a href=\"{{ url_for('player') }}\">Log in again</a></p>"
    )
