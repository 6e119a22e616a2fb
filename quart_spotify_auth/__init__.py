"""Spotify login for Quart: per-user server-side tokens, state and PKCE, background renewal.

Start at :class:`SpotifyAuth`; everything an app imports is exported here.
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
from .logins import Login
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
    "Login",
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
