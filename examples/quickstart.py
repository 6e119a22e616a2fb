from quart import Quart, ResponseReturnValue, redirect, render_template_string, request

from quart_spotify_auth import LoginRequired, SpotifyAuth, instance_secret_key
from quart_spotify_auth.routes import same_origin_only

app = Quart(__name__)
app.secret_key = instance_secret_key(app)  # SECRET_KEY, else one kept in instance/
app.config["SPOTIFY_SCOPES"] = "user-read-private user-read-email"
spotify = SpotifyAuth(app)  # SPOTIFY_CLIENT_ID (and _SECRET, if any) from the environment


@app.route("/login")
async def login() -> ResponseReturnValue:
    return redirect(await spotify.get_user())  # state + PKCE remembered for this browser


@app.route("/callback/")  # SPOTIFY_REDIRECT_URI points here
async def callback() -> ResponseReturnValue:
    await spotify.get_user_token(request.args.get("code"))  # checks the state itself
    return redirect("/")


HOME = """<p>Logged in with Spotify, scopes {{ scopes | join(", ") }}; this token has
{{ left }} s left.</p> <form method="post" action="/logout"><button>Log out</button></form>"""


@app.route("/")
async def home() -> ResponseReturnValue:
    try:
        token = await spotify.get_access_token()  # this user's, renewed ahead of expiry
    except LoginRequired:
        return '<a href="/login">Log in with Spotify</a>'
    return await render_template_string(HOME, scopes=sorted(token.scopes), left=token.expires_in)


@app.post("/logout")  # POST, from this site only: another site cannot log the user out
@same_origin_only
async def logout() -> ResponseReturnValue:
    await spotify.logout()  # this user's tokens are forgotten, in every worker
    return redirect("/")  # not /login: Spotify sends back at once a user who agreed before
