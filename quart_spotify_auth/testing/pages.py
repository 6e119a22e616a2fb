"""The fake's pages: Spotify's consent page (a form a person or a browser test can answer) and
its error page."""

from __future__ import annotations

import html
from collections.abc import Iterable

from quart import Response

__all__ = ["consent_page", "error_page"]

_STYLE = (
    "body{font-family:system-ui,sans-serif;background:#121212;color:#fff;display:flex;"
    "justify-content:center;padding:3em 1em}main{background:#181818;border-radius:8px;"
    "padding:2em;max-width:28em;width:100%}h1{font-size:1.5em}code{color:#1ed760}"
    "select,button{font-size:1em;padding:.6em 1.2em;border-radius:2em;margin:.3em .3em 0 0}"
    "#agree{background:#1ed760;border:0;font-weight:bold}#cancel{background:none;color:#fff;"
    "border:1px solid #888}"
)


def error_page(message: str) -> Response:
    """What Spotify shows instead of redirecting back (an invalid client, an illegal scope)."""
    body = (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        "<title>Error - Spotify (fake)</title></head>"
        '<body style="font-family:sans-serif;background:#121212;color:#fff;padding:3em">'
        "<h1>Oops! Something went wrong, please try again or check out our help area.</h1>"
        f'<p id="error">{html.escape(message)}</p></body></html>'
    )
    return Response(body, status=400, content_type="text/html; charset=utf-8")


def consent_page(
    client_id: str,
    scopes: Iterable[str],
    users: Iterable[tuple[str, str]],
    params: Iterable[tuple[str, str]],
) -> Response:
    """The consent form: the app's id, the scopes asked for, a choice of user (id, name), and
    Agree / Cancel, posting the authorize query back to ``/authorize``."""
    esc = html.escape
    hidden = "".join(
        f'<input type="hidden" name="{esc(k)}" value="{esc(v)}">'
        for k, v in params
        if k not in ("user", "action")
    )
    options = "".join(
        f'<option value="{esc(uid)}">{esc(name)} ({esc(uid)})</option>' for uid, name in users
    )
    items = "".join(f"<li><code>{esc(s)}</code></li>" for s in scopes)
    page = (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>Log in to Spotify (fake)</title><style>{_STYLE}</style></head><body>"
        "<main><h1>Log in to Spotify (fake)</h1>"
        f'<p>The app <strong id="client-id">{esc(client_id)}</strong> would like to:</p>'
        f'<ul id="scopes">{items or "<li>Your public profile only</li>"}</ul>'
        f'<form method="post" action="/authorize">{hidden}'
        f'<p><label for="user">Continue as </label><select id="user" name="user">{options}'
        "</select></p>"
        '<button type="submit" id="agree" name="action" value="approve">Agree</button>'
        '<button type="submit" id="cancel" name="action" value="deny">Cancel</button>'
        "</form></main></body></html>"
    )
    return Response(page, status=200, content_type="text/html; charset=utf-8")
