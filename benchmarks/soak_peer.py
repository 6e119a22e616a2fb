"""The soak's peer: the app of ``benchmarks.soak_ours`` as a user would write it with Authlib's
``AsyncOAuth2Client`` (``benchmarks.soak_peer:peer``).

Tokens live in a dict keyed by a login id kept in the session. Each request makes a client
bound to that user's token (sharing one connection pool, as a careful user would, instead of
one per client), and Authlib's own lazy refresh renews an expired token, storing the new one
back through ``update_token``. Login uses state and PKCE (S256). A failure to reach Spotify is
a 503 through an error handler, as ours is.
"""

from __future__ import annotations

import os
import secrets
import sys
import warnings
from typing import Any

if os.environ.get("BENCH_HTTP_LIBRARY") == "httpx":  # Authlib as it runs without httpx2
    sys.modules["httpx2"] = None  # type: ignore[assignment]  # its import fails, as if absent
    warnings.filterwarnings("ignore", "The httpx module is deprecated", module="authlib")

from authlib.common.security import generate_token
from authlib.integrations.base_client.errors import OAuthError
from authlib.integrations.httpx_client import AsyncOAuth2Client

# Authlib 1.9 runs on httpx2 when it is installed (else on httpx, with a deprecation warning;
# before 1.9, always on httpx): its client takes a transport, and raises errors, of that
# library only. Its choice, read where it made it:
try:
    from authlib.integrations.httpx_client._compat import httpx2 as httpx
except ImportError:  # Authlib before 1.9
    import httpx
from quart import Quart, ResponseReturnValue, redirect, request, session

from .soak_settings import CLIENT_ID, CLIENT_SECRET, FAKE_URL, MARGIN, REDIRECT_URI, SECRET_KEY

peer = Quart("soak_peer")
peer.secret_key = SECRET_KEY
tokens: dict[str, dict[str, Any]] = {}  # login id -> Authlib token dict
pool: httpx.AsyncHTTPTransport | None = None


@peer.before_serving
async def open_pool() -> None:
    global pool
    pool = httpx.AsyncHTTPTransport(limits=httpx.Limits(max_connections=100))


@peer.after_serving
async def close_pool() -> None:
    if pool is not None:
        await pool.aclose()


def oauth_client(login_id: str | None = None) -> AsyncOAuth2Client:
    async def update_token(token: dict[str, Any], **_: Any) -> None:
        if login_id is not None:
            tokens[login_id] = dict(token)

    return AsyncOAuth2Client(
        CLIENT_ID,
        CLIENT_SECRET,
        scope="user-read-private",
        redirect_uri=REDIRECT_URI,
        token=tokens.get(login_id) if login_id else None,
        token_endpoint=FAKE_URL + "/api/token",
        update_token=update_token,
        leeway=MARGIN,  # the same as our refresh margin
        code_challenge_method="S256",
        transport=pool,
    )


@peer.route("/library")
async def peer_library() -> ResponseReturnValue:
    """The HTTP library Authlib's client runs on here, for the measure to report."""
    return {"library": httpx.__name__}


@peer.route("/login")
async def peer_login() -> ResponseReturnValue:
    verifier = generate_token(48)
    url, state = oauth_client().create_authorization_url(
        FAKE_URL + "/authorize", code_verifier=verifier
    )
    session["oauth"] = {"state": state, "verifier": verifier}
    return redirect(url)


@peer.route("/callback/")
async def peer_callback() -> ResponseReturnValue:
    pending = session.pop("oauth", None)
    if pending is None or request.args.get("state") != pending["state"]:
        return "bad state", 400
    token = await oauth_client().fetch_token(
        FAKE_URL + "/api/token",
        code=request.args.get("code"),
        code_verifier=pending["verifier"],
    )
    login_id = secrets.token_urlsafe(16)
    tokens[login_id] = dict(token)
    session["login"] = login_id
    return "logged in"


@peer.route("/me")
async def peer_me() -> ResponseReturnValue:
    login_id = session.get("login")
    if login_id not in tokens:
        return {"error": "log in"}, 401
    reply = await oauth_client(login_id).get(FAKE_URL + "/v1/me")  # refreshes if expired
    if reply.status_code != 200:
        return reply.json(), reply.status_code
    return {"id": reply.json()["id"]}


@peer.errorhandler(OAuthError)
@peer.errorhandler(httpx.HTTPError)
async def peer_unavailable(exc: Exception) -> ResponseReturnValue:
    return {"error": f"Spotify unavailable ({type(exc).__name__})"}, 503
