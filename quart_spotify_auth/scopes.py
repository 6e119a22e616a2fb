"""Spotify's scope names: the documented ones, the removed ones, and parsing a scope setting."""

from __future__ import annotations

from collections.abc import Iterable

__all__ = ["KNOWN_SCOPES", "REMOVED_SCOPES", "parse_scopes"]

#: Scope names Spotify documents (developer.spotify.com, concepts/scopes).
KNOWN_SCOPES = frozenset(
    {
        "ugc-image-upload",
        "user-read-playback-state",
        "user-modify-playback-state",
        "user-read-currently-playing",
        "app-remote-control",
        "streaming",
        "playlist-read-private",
        "playlist-read-collaborative",
        "playlist-modify-private",
        "playlist-modify-public",
        "user-follow-modify",
        "user-follow-read",
        "user-read-playback-position",
        "user-top-read",
        "user-read-recently-played",
        "user-library-modify",
        "user-library-read",
        "user-read-email",
        "user-read-private",
        "user-soa-link",
        "user-soa-unlink",
        "soa-manage-entitlements",
        "soa-manage-partner",
        "soa-create-partner",
    }
)

#: Scopes Spotify dropped: asking for one gets its own "Illegal scope" page.
REMOVED_SCOPES = {
    "user-read-birthdate": "Spotify removed it; drop it (the birth date is no longer available)",
}


def parse_scopes(value: str | Iterable[str] | None) -> tuple[str, ...]:
    """Scope names from a space/comma-separated string or an iterable: de-duplicated, in order."""
    items = value.replace(",", " ").split() if isinstance(value, str) else list(value or ())
    return tuple(dict.fromkeys(item.strip() for item in items if item.strip()))
