"""Configuration: the ``SPOTIFY_*`` keys, their defaults, and the checks made at ``init_app``.

Read once per app into :class:`Settings`, which the accounts client, the refresher, the
renewer and the store factory take as they are. Each setting has one name all the way down:
the key without ``SPOTIFY_``, in lower case (``SPOTIFY_TOKEN_IDLE_TTL`` is
``settings.token_idle_ttl``). Precedence for every key: the keyword argument given to
``SpotifyAuth(...)``, then ``app.config``, then (for the keys in :data:`ENVIRONMENT_KEYS`) the
environment variable of the same name, then :data:`DEFAULTS`.
"""

from __future__ import annotations

import difflib
import functools
import math
import os
import re
import sys
import warnings
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from .errors import ConfigurationError
from .retry import Retry
from .scopes import KNOWN_SCOPES, REMOVED_SCOPES, parse_scopes

__all__ = [
    "DEFAULTS",
    "ENVIRONMENT_KEYS",
    "Settings",
    "load_settings",
    "unknown_keys",
    "validate_redirect_uri",
    "warn_user",
]

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
    "SPOTIFY_TOKEN_ENCRYPTION_MIGRATING": False,
    "SPOTIFY_REDIS_MAX_CONNECTIONS": 20,
}

#: Keys also read from the environment when neither an argument nor ``app.config`` sets them.
ENVIRONMENT_KEYS = (
    "SPOTIFY_CLIENT_ID",
    "SPOTIFY_CLIENT_SECRET",
    "SPOTIFY_REDIRECT_URI",
    "SPOTIFY_ACCOUNTS_URL",  # e.g. the fake: python -m quart_spotify_auth fake
    "SPOTIFY_API_URL",
    "SPOTIFY_TOKEN_STORE",
    "SPOTIFY_TOKEN_ENCRYPTION_KEYS",
)

_LOOPBACK_HOSTS = {"127.0.0.1", "::1"}


@dataclass(frozen=True, slots=True)
class Settings:
    """The resolved configuration of one app: one field per ``SPOTIFY_*`` key."""

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
    token_store_prefix: str
    token_idle_ttl: float
    token_encryption_keys: tuple[str, ...]
    token_encryption_migrating: bool
    redis_max_connections: int

    def __repr__(self) -> str:
        secret = "None" if self.client_secret is None else "'***'"
        return (
            f"Settings(client_id={self.client_id!r}, client_secret={secret}, "
            f"redirect_uri={self.redirect_uri!r}, scopes={self.scopes!r})"
        )

    @property
    def retry(self) -> Retry:
        """How requests to Spotify are retried."""
        return Retry(self.retries, self.retry_after_cap)

    @property
    def join_timeout(self) -> float:
        """Longest a refresh may take, all retries included: how long a caller waits for one
        it joined, and how long a claim on it lasts."""
        return self.http_timeout * (self.retries + 1) + self.retry_after_cap


def load_settings(config: Mapping[str, Any], overrides: Mapping[str, Any] = {}) -> Settings:
    """Resolve and check the settings; raises :class:`ConfigurationError` with the fix."""
    read = _Reader(config, overrides)
    client_id = read.text("SPOTIFY_CLIENT_ID")
    if not client_id:
        raise ConfigurationError(
            "SPOTIFY_CLIENT_ID is not set. Put your app's Client ID from the Spotify developer "
            "dashboard in app.config['SPOTIFY_CLIENT_ID'] or the SPOTIFY_CLIENT_ID environment "
            "variable."
        )
    secret = read.text("SPOTIFY_CLIENT_SECRET") or None
    use_pkce = read.flag("SPOTIFY_USE_PKCE")
    if secret is None and not use_pkce:
        raise ConfigurationError(
            "SPOTIFY_USE_PKCE is False but there is no SPOTIFY_CLIENT_SECRET: a public client "
            "can only log in with PKCE. Remove SPOTIFY_USE_PKCE or set the secret."
        )
    return Settings(
        client_id=client_id,
        client_secret=secret,
        redirect_uri=validate_redirect_uri(read.text("SPOTIFY_REDIRECT_URI")),
        scopes=_check_scopes(read.scopes("SPOTIFY_SCOPES")),
        accounts_url=read.service_url("SPOTIFY_ACCOUNTS_URL"),
        api_url=read.service_url("SPOTIFY_API_URL"),
        auto_renew=read.flag("SPOTIFY_AUTO_RENEW"),
        use_pkce=use_pkce,
        show_dialog=read.flag("SPOTIFY_SHOW_DIALOG"),
        session_key=read.text("SPOTIFY_SESSION_KEY"),
        login_ttl=read.number("SPOTIFY_LOGIN_TTL"),
        http_timeout=read.number("SPOTIFY_HTTP_TIMEOUT"),
        retries=int(read.number("SPOTIFY_RETRIES", zero=True, whole=True)),
        retry_after_cap=read.number("SPOTIFY_RETRY_AFTER_CAP", zero=True),
        refresh_margin=read.number("SPOTIFY_REFRESH_MARGIN", zero=True),
        renew_concurrency=int(read.number("SPOTIFY_RENEW_CONCURRENCY", whole=True)),
        keep_warm=read.number("SPOTIFY_KEEP_WARM", zero=True),
        token_store=_store_url(read.value("SPOTIFY_TOKEN_STORE")),
        token_store_prefix=read.text("SPOTIFY_TOKEN_STORE_PREFIX"),
        token_idle_ttl=read.number("SPOTIFY_TOKEN_IDLE_TTL"),
        token_encryption_keys=_keys(read.value("SPOTIFY_TOKEN_ENCRYPTION_KEYS")),
        token_encryption_migrating=read.flag("SPOTIFY_TOKEN_ENCRYPTION_MIGRATING"),
        redis_max_connections=int(read.number("SPOTIFY_REDIS_MAX_CONNECTIONS", whole=True)),
    )


def unknown_keys(config: Mapping[str, Any], environ: Mapping[str, str] | None = None) -> list[str]:
    """Warnings for keys that look like a misspelt setting, in ``config`` and in the
    environment (``environ``, by default ``os.environ``): a typo after the prefix
    (``SPOTIFY_CLIENT_SECERT``), in the prefix (``SPOTFY_CLIENT_SECRET``) or in its case
    (``spotify_scopes``); and environment variables naming a setting that is read only from
    ``app.config`` (``SPOTIFY_SCOPES``), when ``config`` does not set it. Never a value."""
    found = []
    for key in config:
        close = _near_miss(key) if isinstance(key, str) else None
        if close:
            found.append(f"{key} is not a setting of quart-spotify-auth; did you mean {close}?")
    for key in os.environ if environ is None else environ:
        if key in ENVIRONMENT_KEYS:
            continue
        if key in DEFAULTS:
            if config.get(key) is None:
                found.append(
                    f"The environment variable {key} is ignored: quart-spotify-auth reads only "
                    f"{', '.join(ENVIRONMENT_KEYS)} from the environment. Set "
                    f"app.config[{key!r}] instead."
                )
            continue
        close = _near_miss(key)
        if close:
            read = "" if close in ENVIRONMENT_KEYS else " (which is read only from app.config)"
            found.append(
                f"The environment variable {key} is not a setting of quart-spotify-auth; "
                f"did you mean {close}{read}?"
            )
    return found


#: Other libraries' environment variables, near our names but not misspellings of them.
_FOREIGN_PREFIXES = ("SPOTIPY_",)  # spotipy's SPOTIPY_CLIENT_ID...
_PREFIX = "SPOTIFY_"


@functools.lru_cache(maxsize=1024)
def _near_miss(key: str) -> str | None:
    """The setting ``key`` looks like a misspelling of, or ``None``."""
    if key in DEFAULTS:
        return None
    upper = key.upper()
    if upper in DEFAULTS:
        return upper
    if upper.startswith(_FOREIGN_PREFIXES):
        return None
    if not upper.startswith(_PREFIX):
        # Only a name whose start is close to the prefix (SPOTFY_, SPOITFY_, SPOTIFYCLIENT):
        # an app's own MY_SPOTIFY_CLIENT_ID or POSTGRES_TOKEN_STORE is no typo of ours.
        head = difflib.SequenceMatcher(None, upper[: len(_PREFIX)], _PREFIX).ratio()
        if head < 0.75:
            return None
    close = difflib.get_close_matches(upper, DEFAULTS, n=1, cutoff=0.85)
    return close[0] if close else None


def warn_user(message: str, category: type[Warning] = UserWarning) -> None:
    """Warn at the first caller outside this package: the user's ``SpotifyAuth(app)`` or
    ``init_app(app)`` line, however many of the adapters' frames lie between (Python 3.11
    has no ``skip_file_prefixes``)."""
    frame, level = sys._getframe(1), 2
    while frame.f_back is not None and frame.f_code.co_filename.startswith(_PACKAGE_DIR):
        frame, level = frame.f_back, level + 1
    warnings.warn(message, category, stacklevel=level)


_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__)) + os.sep


_FLAGS = {"true": True, "yes": True, "on": True, "1": True, "false": False, "no": False,
          "off": False, "0": False}  # fmt: skip


class _Reader:
    """Reads one setting at a time, checking its type; errors name the key and the fix, and
    never echo a value that may be a secret."""

    def __init__(self, config: Mapping[str, Any], overrides: Mapping[str, Any]) -> None:
        self._config = config
        self._overrides = overrides

    def value(self, key: str) -> Any:
        if self._overrides.get(key) is not None:
            return self._overrides[key]
        if self._config.get(key) is not None:
            return self._config[key]
        if key in ENVIRONMENT_KEYS and os.environ.get(key):
            return os.environ[key]
        return DEFAULTS[key]

    def text(self, key: str) -> str:
        raw = self.value(key)
        if isinstance(raw, bytes):
            raw = raw.decode("utf-8", "replace")
        if raw is None:
            return ""
        if not isinstance(raw, str):
            raise ConfigurationError(f"{key} must be a string, not {type(raw).__name__}.")
        return raw.strip()

    def flag(self, key: str) -> bool:
        raw = self.value(key)
        if isinstance(raw, bool):
            return raw
        if isinstance(raw, int) and raw in (0, 1):
            return bool(raw)
        if isinstance(raw, str) and raw.strip().lower() in _FLAGS:
            return _FLAGS[raw.strip().lower()]
        raise ConfigurationError(
            f"{key} must be True or False (or the strings 'true' / 'false'), not {_shown(raw)}."
        )

    def number(self, key: str, *, zero: bool = False, whole: bool = False) -> float:
        raw = self.value(key)
        try:
            number = float(raw) if not isinstance(raw, bool) else math.nan
        except (TypeError, ValueError, OverflowError):
            number = math.nan
        if not math.isfinite(number):
            raise ConfigurationError(f"{key} must be a finite number, not {_shown(raw)}.")
        if whole and not number.is_integer():
            raise ConfigurationError(f"{key} must be a whole number, not {_shown(raw)}.")
        if number < 0 or (number == 0 and not zero):
            bound = ">= 0" if zero else "> 0"
            raise ConfigurationError(f"{key} must be {bound}, not {_shown(raw)}.")
        return number

    def scopes(self, key: str) -> tuple[str, ...]:
        raw = self.value(key)
        if isinstance(raw, str) or (
            isinstance(raw, list | tuple | set | frozenset) and all(isinstance(s, str) for s in raw)
        ):
            return parse_scopes(raw)
        raise ConfigurationError(
            f"{key} must be a space-separated string or a list of scope names, not "
            f"{type(raw).__name__}."
        )

    def service_url(self, key: str) -> str:
        """Spotify's base URLs (or a fake's): https, or plain http only to this machine, so
        the client secret never crosses a network in clear."""
        url = self.text(key).rstrip("/")
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConfigurationError(f"{key} must be an absolute https URL, not {_shown(url)}.")
        if parts.scheme == "http" and parts.hostname not in _LOOPBACK_HOSTS | {"localhost"}:
            raise ConfigurationError(
                f"{key} {_shown(url)} uses plain http to another machine: the client secret and "
                "tokens would cross the network in clear. Use https (plain http is allowed "
                "only on 127.0.0.1, for a fake Spotify)."
            )
        return url


def _shown(raw: Any) -> str:
    """A value as an error may show it: a URL's password masked (also in a URL too broken to
    parse, such as ``redis//:pw@host``, and in a ``password=`` query), at most 60
    characters."""
    text = repr(mask_password(raw) if isinstance(raw, str) else raw)
    return text if len(text) <= 60 else text[:57] + "..."


def mask_password(url: str) -> str:
    """``url`` with any password in it replaced by ``***``: the part between ``:`` and ``@``
    of its authority, and the value of a ``password=`` query parameter."""
    url = re.sub(r"(?<=:)[^:/@?#]*(?=@)", "***", url)
    return re.sub(r"(?i)(?<=[?&]password=)[^&#]*", "***", url)


#: What SPOTIFY_TOKEN_STORE may name, by how it starts.
STORE_SCHEMES = (
    "memory",
    "sqlite:///",
    "postgresql://",
    "postgresql+asyncpg://",
    "redis://",
    "rediss://",
    "unix://",
)


def _store_url(raw: Any) -> str | None:
    if raw in (None, ""):
        return None  # the default: SQLite in the app's instance folder
    url = str(raw).strip()
    if url.startswith("postgres://"):  # Heroku's and Render's DATABASE_URL spelling
        url = "postgresql://" + url[len("postgres://") :]
    if not url.startswith(STORE_SCHEMES) or url in ("sqlite:///", "sqlite:////"):
        raise ConfigurationError(
            f"SPOTIFY_TOKEN_STORE {_shown(url)} is not a store this package knows. Use "
            "sqlite:///tokens.sqlite3 (a file in the app's instance folder), "
            "sqlite:////absolute/path/tokens.sqlite3 (four slashes), "
            "postgresql://user:password@host/db, redis://host:port/db or memory (or leave it "
            "unset: SQLite in the app's instance folder)."
        )
    return url


def _keys(raw: Any) -> tuple[str, ...]:
    if not raw:
        return ()
    items: Iterable[Any] = raw.split(",") if isinstance(raw, str) else list(raw)
    return tuple(k.decode() if isinstance(k, bytes) else str(k).strip() for k in items if k)


def validate_redirect_uri(uri: str, *, name: str = "SPOTIFY_REDIRECT_URI") -> str:
    """Check ``uri`` against Spotify's redirect URI rules; return it unchanged. Errors call
    it ``name`` (the fake's command line: ``--redirect-uri``)."""
    parts = urlsplit(uri)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigurationError(
            f"{name} {uri!r} is not an absolute http(s) URL. Use the callback "
            "route's full URL, e.g. http://127.0.0.1:5000/callback/."
        )
    if parts.fragment or uri.endswith("#"):
        raise ConfigurationError(
            f"{name} {uri!r} has a fragment (#...), which OAuth forbids. Remove it."
        )
    host = parts.hostname.lower()
    if host == "localhost" or host.endswith(".localhost"):
        port = f":{parts.port}" if parts.port else ""
        raise ConfigurationError(
            f"{name} {uri!r} uses localhost, which Spotify rejects "
            f"('Insecure redirect URI'). Use http://127.0.0.1{port}{parts.path or '/'} instead, "
            "register that in the Spotify dashboard, and open the app on 127.0.0.1 too."
        )
    if parts.scheme == "http" and host not in _LOOPBACK_HOSTS:
        raise ConfigurationError(
            f"{name} {uri!r} uses plain http on a host that is not loopback. "
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
        warn_user(
            f"SPOTIFY_SCOPES has scopes Spotify does not document: {', '.join(unknown)}. "
            "If Spotify does not know them, logins end on its 'Illegal scope' page."
        )
    return scopes
