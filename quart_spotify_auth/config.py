"""Configuration: the ``SPOTIFY_*`` keys, their defaults, and the checks made at ``init_app``.

Shared by the Quart extension and the Flask shim. Precedence for every key: the argument given
to ``SpotifyAuth(...)``, then ``app.config``, then (for the credentials) the environment
variable of the same name, then the default.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from .accounts import KNOWN_SCOPES, REMOVED_SCOPES, AccountsConfig, parse_scopes
from .errors import ConfigurationError

__all__ = ["DEFAULTS", "Settings", "load_settings", "validate_redirect_uri"]

#: Every configuration key and its default. The README's table mirrors this.
DEFAULTS: dict[str, Any] = {
    "SPOTIFY_CLIENT_ID": None,
    "SPOTIFY_CLIENT_SECRET": None,
    "SPOTIFY_REDIRECT_URI": "http://127.0.0.1:5000/callback/",
    "SPOTIFY_SCOPES": "",
    "SPOTIFY_ACCOUNTS_URL": "https://accounts.spotify.com",
    "SPOTIFY_API_URL": "https://api.spotify.com/v1",
    "SPOTIFY_AUTO_RENEW": True,
    "SPOTIFY_USE_PKCE": True,
    "SPOTIFY_SHOW_DIALOG": False,
    "SPOTIFY_SESSION_KEY": "spotify_auth",
    "SPOTIFY_LOGIN_TTL": 600,
    "SPOTIFY_HTTP_TIMEOUT": 10.0,
    "SPOTIFY_RETRIES": 2,
    "SPOTIFY_RETRY_AFTER_CAP": 5.0,
    "SPOTIFY_REFRESH_MARGIN": 300.0,
    "SPOTIFY_RENEW_CONCURRENCY": 16,
    "SPOTIFY_KEEP_WARM": 86400.0,
    "SPOTIFY_TOKEN_STORE": None,
    "SPOTIFY_TOKEN_STORE_PREFIX": "quart_spotify_auth:",
    "SPOTIFY_TOKEN_IDLE_TTL": 30 * 86400.0,
    "SPOTIFY_TOKEN_ENCRYPTION_KEYS": None,
    "SPOTIFY_REDIS_MAX_CONNECTIONS": 20,
}

#: Keys also read from the environment when ``app.config`` does not set them.
ENVIRONMENT_KEYS = (
    "SPOTIFY_CLIENT_ID",
    "SPOTIFY_CLIENT_SECRET",
    "SPOTIFY_TOKEN_STORE",
    "SPOTIFY_TOKEN_ENCRYPTION_KEYS",
)

_LOOPBACK_HOSTS = {"127.0.0.1", "::1"}


@dataclass(frozen=True, slots=True)
class Settings:
    """The resolved configuration of one app."""

    client_id: str
    client_secret: str | None
    redirect_uri: str
    scopes: tuple[str, ...]
    accounts_url: str
    api_url: str
    auto_renew: bool
    use_pkce: bool
    show_dialog: bool
    session_key: str
    login_ttl: float
    http_timeout: float
    retries: int
    retry_after_cap: float
    refresh_margin: float
    renew_concurrency: int
    keep_warm: float
    token_store: str | None
    store_prefix: str
    idle_ttl: float
    encryption_keys: tuple[str, ...]
    redis_max_connections: int

    def __repr__(self) -> str:
        secret = "None" if self.client_secret is None else "'***'"
        return (
            f"Settings(client_id={self.client_id!r}, client_secret={secret}, "
            f"redirect_uri={self.redirect_uri!r}, scopes={self.scopes!r})"
        )

    def accounts_config(self) -> AccountsConfig:
        return AccountsConfig(
            client_id=self.client_id,
            client_secret=self.client_secret,
            accounts_url=self.accounts_url,
            retries=self.retries,
            retry_after_cap=self.retry_after_cap,
        )


def load_settings(config: Mapping[str, Any], overrides: Mapping[str, Any]) -> Settings:
    """Resolve and check the settings; raises :class:`ConfigurationError` with the fix."""

    def value(key: str) -> Any:
        if overrides.get(key) is not None:
            return overrides[key]
        if config.get(key) is not None:
            return config[key]
        if key in ENVIRONMENT_KEYS and os.environ.get(key):
            return os.environ[key]
        return DEFAULTS[key]

    client_id = value("SPOTIFY_CLIENT_ID")
    if not client_id or not isinstance(client_id, str):
        raise ConfigurationError(
            "SPOTIFY_CLIENT_ID is not set. Put your app's Client ID from the Spotify developer "
            "dashboard in app.config['SPOTIFY_CLIENT_ID'] or the SPOTIFY_CLIENT_ID environment "
            "variable."
        )
    secret = value("SPOTIFY_CLIENT_SECRET") or None
    redirect_uri = validate_redirect_uri(str(value("SPOTIFY_REDIRECT_URI")))
    scopes = _check_scopes(parse_scopes(value("SPOTIFY_SCOPES")))
    use_pkce = value("SPOTIFY_USE_PKCE")
    if secret is None and use_pkce is False:
        raise ConfigurationError(
            "SPOTIFY_USE_PKCE is False but there is no SPOTIFY_CLIENT_SECRET: a public client "
            "can only log in with PKCE. Remove SPOTIFY_USE_PKCE or set the secret."
        )
    return Settings(
        client_id=client_id,
        client_secret=secret,
        redirect_uri=redirect_uri,
        scopes=scopes,
        accounts_url=str(value("SPOTIFY_ACCOUNTS_URL")).rstrip("/"),
        api_url=str(value("SPOTIFY_API_URL")).rstrip("/"),
        auto_renew=bool(value("SPOTIFY_AUTO_RENEW")),
        use_pkce=use_pkce is not False,
        show_dialog=bool(value("SPOTIFY_SHOW_DIALOG")),
        session_key=str(value("SPOTIFY_SESSION_KEY")),
        login_ttl=_positive(value, "SPOTIFY_LOGIN_TTL"),
        http_timeout=_positive(value, "SPOTIFY_HTTP_TIMEOUT"),
        retries=int(_positive(value, "SPOTIFY_RETRIES", allow_zero=True)),
        retry_after_cap=_positive(value, "SPOTIFY_RETRY_AFTER_CAP", allow_zero=True),
        refresh_margin=_positive(value, "SPOTIFY_REFRESH_MARGIN", allow_zero=True),
        renew_concurrency=int(_positive(value, "SPOTIFY_RENEW_CONCURRENCY")),
        keep_warm=_positive(value, "SPOTIFY_KEEP_WARM", allow_zero=True),
        token_store=_store_url(value("SPOTIFY_TOKEN_STORE")),
        store_prefix=str(value("SPOTIFY_TOKEN_STORE_PREFIX")),
        idle_ttl=_positive(value, "SPOTIFY_TOKEN_IDLE_TTL"),
        encryption_keys=_keys(value("SPOTIFY_TOKEN_ENCRYPTION_KEYS")),
        redis_max_connections=int(_positive(value, "SPOTIFY_REDIS_MAX_CONNECTIONS")),
    )


def _store_url(raw: Any) -> str | None:
    if raw in (None, "", "memory"):
        return None
    url = str(raw)
    if not url.startswith(("redis://", "rediss://", "unix://")):
        raise ConfigurationError(
            f"SPOTIFY_TOKEN_STORE {url!r} is not a Redis URL. Use redis://host:port/db "
            "(or leave it unset for the in-memory store)."
        )
    return url


def _keys(raw: Any) -> tuple[str, ...]:
    if not raw:
        return ()
    items = raw.split(",") if isinstance(raw, str) else list(raw)
    return tuple(k.decode() if isinstance(k, bytes) else str(k).strip() for k in items if k)


def validate_redirect_uri(uri: str) -> str:
    """Check ``uri`` against Spotify's redirect URI rules; return it unchanged."""
    parts = urlsplit(uri)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigurationError(
            f"SPOTIFY_REDIRECT_URI {uri!r} is not an absolute http(s) URL. Use the callback "
            "route's full URL, e.g. http://127.0.0.1:5000/callback/."
        )
    if parts.fragment or uri.endswith("#"):
        raise ConfigurationError(
            f"SPOTIFY_REDIRECT_URI {uri!r} has a fragment (#...), which OAuth forbids. Remove it."
        )
    host = parts.hostname.lower()
    if host == "localhost" or host.endswith(".localhost"):
        port = f":{parts.port}" if parts.port else ""
        raise ConfigurationError(
            f"SPOTIFY_REDIRECT_URI {uri!r} uses localhost, which Spotify rejects "
            f"('Insecure redirect URI'). Use http://127.0.0.1{port}{parts.path or '/'} instead, "
            "register that in the Spotify dashboard, and open the app on 127.0.0.1 too."
        )
    if parts.scheme == "http" and host not in _LOOPBACK_HOSTS:
        raise ConfigurationError(
            f"SPOTIFY_REDIRECT_URI {uri!r} uses plain http on a host that is not loopback. "
            "Spotify allows http only for 127.0.0.1 and [::1]; use https for any other host."
        )
    return uri


def _check_scopes(scopes: tuple[str, ...]) -> tuple[str, ...]:
    removed = [s for s in scopes if s in REMOVED_SCOPES]
    if removed:
        details = "; ".join(f"{s}: {REMOVED_SCOPES[s]}" for s in removed)
        raise ConfigurationError(
            f"SPOTIFY_SCOPES asks for scopes Spotify no longer knows ({details}). Spotify would "
            "answer the login only with its own 'Illegal scope' page."
        )
    unknown = [s for s in scopes if s not in KNOWN_SCOPES]
    if unknown:
        warnings.warn(
            f"SPOTIFY_SCOPES has scopes Spotify does not document: {', '.join(unknown)}. "
            "If Spotify does not know them, logins end on its 'Illegal scope' page.",
            UserWarning,
            stacklevel=4,
        )
    return scopes


def _positive(value: Callable[[str], Any], key: str, *, allow_zero: bool = False) -> float:
    raw = value(key)
    try:
        number = float(raw)
    except (TypeError, ValueError):
        raise ConfigurationError(f"{key} must be a number, not {raw!r}.") from None
    if number < 0 or (number == 0 and not allow_zero):
        raise ConfigurationError(f"{key} must be {'>= 0' if allow_zero else '> 0'}, not {raw!r}.")
    return number
