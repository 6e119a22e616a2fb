"""The few Web API calls the fake answers, with small canned data: the profile (``/v1/me``,
with or without the trailing slash spotipy and tekore send), the user's top tracks and artists,
and the player (state, devices, play, pause).

Each checks the bearer token and the scope Spotify asks for, and fails as Spotify does: 401
for a token it does not know or that expired, 403 for a missing scope, an app-only token, a
user not allow-listed in development mode, or a player command from a free account.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from quart import Response, request

from .models import FakeUser

if TYPE_CHECKING:
    from .fake import FakeSpotify

__all__ = ["ARTISTS", "TRACKS", "WebAPIRoutes", "api_error", "json_reply", "profile"]

#: The canned artists and tracks every fake user has as their top items.
ARTISTS = [
    {"id": "4Z8W4fKeB5YxbusRsdQVPb", "name": "Radiohead", "genres": ["art rock"]},
    {"id": "0oSGxfWSnnOXhD2fKuz2Gy", "name": "David Bowie", "genres": ["glam rock"]},
    {"id": "1dfeR4HaWDbWqFHLkxsg1d", "name": "Queen", "genres": ["classic rock"]},
]
TRACKS = [
    ("6LgJvl0Xdtc73RJ1mmpotq", "Everything In Its Right Place", 0, 251_000),
    ("72Z17vmmeQKAg8bptWvpVG", "Space Oddity", 1, 315_000),
    ("4u7EnebtmKWzUH433cf5Qv", "Bohemian Rhapsody", 2, 354_000),
    ("2ZWlPOoWh0626oTaHrnl2a", "Idioteque", 0, 309_000),
    ("0pQskrTITgmCMyr85tb9qq", "Heroes", 1, 371_000),
]

_DEVICE = {
    "id": "fake-device-1",
    "is_active": True,
    "is_private_session": False,
    "is_restricted": False,
    "name": "Fake Speaker",
    "type": "Speaker",
    "volume_percent": 50,
    "supports_volume": True,
}


def _artist(index: int) -> dict[str, Any]:
    artist = ARTISTS[index]
    return {
        **artist,
        "type": "artist",
        "uri": f"spotify:artist:{artist['id']}",
        "href": f"https://api.spotify.com/v1/artists/{artist['id']}",
        "popularity": 80 - 5 * index,
    }


def _track(index: int) -> dict[str, Any]:
    track_id, name, artist, duration = TRACKS[index]
    return {
        "id": track_id,
        "name": name,
        "type": "track",
        "uri": f"spotify:track:{track_id}",
        "href": f"https://api.spotify.com/v1/tracks/{track_id}",
        "duration_ms": duration,
        "explicit": False,
        "popularity": 90 - 3 * index,
        "artists": [
            {k: v for k, v in _artist(artist).items() if k in ("id", "name", "type", "uri")}
        ],
        "album": {"id": f"album-{track_id[:8]}", "name": f"{name} (single)", "type": "album"},
    }


class WebAPIRoutes:
    """The Web API routes of one :class:`~quart_spotify_auth.testing.FakeSpotify`."""

    def __init__(self, fake: FakeSpotify) -> None:
        self.fake = fake
        #: Per user: the index of the track playing, and whether it plays (after ``play``).
        self.playback: dict[str, tuple[int, bool]] = {}
        route = fake.app.add_url_rule
        route("/v1/me", view_func=self.me, methods=["GET"], strict_slashes=False)
        route("/v1/me/top/<kind>", view_func=self.top, methods=["GET"])
        route("/v1/me/player", view_func=self.player, methods=["GET"], strict_slashes=False)
        route("/v1/me/player/devices", view_func=self.devices, methods=["GET"])
        route("/v1/me/player/play", view_func=self.play, methods=["PUT"])
        route("/v1/me/player/pause", view_func=self.pause, methods=["PUT"])

    def _caller(
        self, name: str, scope: str | None = None
    ) -> tuple[FakeUser, frozenset[str]] | Response:
        """The user the bearer token is for and its scopes, or Spotify's error reply."""
        fake = self.fake
        fake.requests[name] += 1
        if (limited := fake.rate_limited()) is not None:
            return limited
        record = fake.access(request.headers.get("Authorization", ""))
        if record is None:
            return api_error(401, fake.api_error_message)
        if record.user_id is None:
            return api_error(403, "Forbidden")  # an app (client credentials) token
        user = fake.users.get(record.user_id)
        if user is None:
            return api_error(401, fake.api_error_message)
        client = fake.clients.get(record.client_id)
        allowlist = client.allowlist if client is not None else None
        if fake.dev_mode and allowlist is not None and user.id not in allowlist:
            return api_error(403, "User not registered in the Developer Dashboard")
        if scope is not None and scope not in record.scopes:
            return api_error(403, "Insufficient client scope")
        return user, record.scopes

    async def me(self) -> Response:
        found = self._caller("me")
        if isinstance(found, Response):
            return found
        return json_reply(profile(*found, brief=self.fake.dev_mode))

    async def top(self, kind: str) -> Response:
        found = self._caller(f"top:{kind}", "user-top-read")
        if isinstance(found, Response):
            return found
        if kind not in ("tracks", "artists"):
            return api_error(404, "Service not found")
        try:
            limit = int(request.args.get("limit", "20"))
            offset = int(request.args.get("offset", "0"))
        except ValueError:
            return api_error(400, "Invalid limit")
        if not 0 <= limit <= 50 or offset < 0:
            return api_error(400, "Invalid limit")
        make, count = (_track, len(TRACKS)) if kind == "tracks" else (_artist, len(ARTISTS))
        items = [make(i) for i in range(offset, min(count, offset + limit))]
        return json_reply(
            {
                "href": f"https://api.spotify.com/v1/me/top/{kind}",
                "items": items,
                "limit": limit,
                "offset": offset,
                "total": count,
                "next": None,
                "previous": None,
            }
        )

    async def player(self) -> Response:
        found = self._caller("player", "user-read-playback-state")
        if isinstance(found, Response):
            return found
        user = found[0]
        if user.id not in self.playback:
            return Response("", status=204)  # nothing playing, as Spotify answers
        index, playing = self.playback[user.id]
        return json_reply(
            {"device": _DEVICE, "is_playing": playing, "progress_ms": 0, "item": _track(index)}
        )

    async def devices(self) -> Response:
        found = self._caller("devices", "user-read-playback-state")
        if isinstance(found, Response):
            return found
        return json_reply({"devices": [_DEVICE]})

    async def play(self) -> Response:
        return await self._command(playing=True)

    async def pause(self) -> Response:
        return await self._command(playing=False)

    async def _command(self, *, playing: bool) -> Response:
        found = self._caller("play" if playing else "pause", "user-modify-playback-state")
        if isinstance(found, Response):
            return found
        user = found[0]
        if user.product != "premium":
            return api_error(403, "Player command failed: Premium required", "PREMIUM_REQUIRED")
        index, _ = self.playback.get(user.id, (0, False))
        self.playback[user.id] = (index, playing)
        return Response("", status=204)


def profile(user: FakeUser, scopes: frozenset[str], *, brief: bool = False) -> dict[str, Any]:
    """The ``/v1/me`` body: the public part always; email and country with their scopes
    (``brief``: what development mode shows, the public part only)."""
    body: dict[str, Any] = {
        "id": user.id,
        "account_id": user.account_id,
        "display_name": user.display_name,
        "uri": f"spotify:user:{user.id}",
        "href": f"https://api.spotify.com/v1/users/{user.id}",
        "type": "user",
        "external_urls": {"spotify": f"https://open.spotify.com/user/{user.id}"},
        "images": [],
    }
    if brief:
        return body
    body["followers"] = {"href": None, "total": 0}
    if "user-read-email" in scopes:
        body["email"] = user.email
    if "user-read-private" in scopes:
        body["country"] = user.country
        body["product"] = user.product
        body["explicit_content"] = {"filter_enabled": False, "filter_locked": False}
    return body


def api_error(status: int, message: str, reason: str | None = None) -> Response:
    """A Web API error body, as Spotify sends it."""
    error: dict[str, Any] = {"status": status, "message": message}
    if reason is not None:
        error["reason"] = reason
    return json_reply({"error": error}, status=status)


def json_reply(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(
        json.dumps(data), status=status, headers=headers, content_type="application/json"
    )
