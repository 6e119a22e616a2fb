"""Spotify login for Quart: per-user server-side tokens, state and PKCE, background renewal.

.. code-block:: python

    from quart_spotify_auth import SpotifyAuth

    spotify = SpotifyAuth(app)
    url = await spotify.get_user()                # send the browser here
    token = await spotify.get_user_token(code)    # in the callback route
    token = await spotify.get_access_token()      # anywhere after
"""

from __future__ import annotations

from .config import DEFAULTS, Settings
from .errors import (
    AuthorizationDenied,
    ConfigurationError,
    InvalidCallback,
    InvalidClient,
    LoginRequired,
    RateLimited,
    ReauthorizationRequired,
    ScopesNotGranted,
    SpotifyAuthError,
    SpotifyBadResponse,
    SpotifyUnavailable,
    StoreUnavailable,
)
from .extension import SpotifyAuth
from .secret_key import instance_secret_key
from .stores import MemoryTokenStore, TokenStore
from .tokens import AccessToken, TokenRecord

__version__ = "0.2.0"  # the one place: pyproject.toml and the docs take it from here

__all__ = [
    "DEFAULTS",
    "AccessToken",
    "AuthorizationDenied",
    "ConfigurationError",
    "InvalidCallback",
    "InvalidClient",
    "LoginRequired",
    "MemoryTokenStore",
    "RateLimited",
    "ReauthorizationRequired",
    "ScopesNotGranted",
    "Settings",
    "SpotifyAuth",
    "SpotifyAuthError",
    "SpotifyBadResponse",
    "SpotifyUnavailable",
    "StoreUnavailable",
    "TokenRecord",
    "TokenStore",
    "instance_secret_key",
]
