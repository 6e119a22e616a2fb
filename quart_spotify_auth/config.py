"""Each ``SPOTIFY_*`` setting declared once, as a field of :class:`Settings` (``token_idle_ttl``
is ``SPOTIFY_TOKEN_IDLE_TTL``), its docstring its line in docs/configuration.md. Precedence: the
keyword argument to ``SpotifyAuth(...)``, ``app.config``, the environment (for
:data:`ENVIRONMENT_KEYS`), :data:`DEFAULTS`."""

from __future__ import annotations

import difflib
import functools
import math
import os
import re
import sys
import warnings
from collections.abc import Callable, Iterable, Mapping
from dataclasses import Field, dataclass, field, fields
from typing import Any
from urllib.parse import urlsplit

from .errors import ConfigurationError
from .http import LIBRARIES
from .retry import Retry
from .scopes import KNOWN_SCOPES, REMOVED_SCOPES, parse_scopes
from .stores import STORE_SCHEMES

__all__ = [
    "DEFAULTS",
    "ENVIRONMENT_KEYS",
    "FIELDS",
    "Settings",
    "load_settings",
    "unknown_keys",
    "validate_redirect_uri",
    "warn_user",
]

Check = Callable[[str, Any], Any]
_LOOPBACK_HOSTS = {"127.0.0.1", "::1"}
_PREFIX = "SPOTIFY_"
_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__)) + os.sep


def setting(default: Any, check: Check, *, env: bool = False) -> Any:
    """One setting: ``check(key, value given or default)`` gives the field's value or raises a
    :class:`ConfigurationError` naming the key and the fix; ``env``: the environment may set it."""
    return field(metadata={"default": default, "check": check, "env": env})


def _text(key: str, raw: Any) -> str:
    if isinstance(raw, bytes):
        raw = raw.decode("utf-8", "replace")
    if not isinstance(raw, str | None):
        raise ConfigurationError(f"{key} must be a string, not {type(raw).__name__}.")
    return (raw or "").strip()


def _client_id(key: str, raw: Any) -> str:
    if not (client_id := _text(key, raw)):
        raise ConfigurationError(
            "SPOTIFY_CLIENT_ID is not set. Put your app's Client ID from the Spotify developer "
            "dashboard in app.config['SPOTIFY_CLIENT_ID'] or the SPOTIFY_CLIENT_ID environment "
            "variable."
        )
    return client_id


_FLAGS = {"true": True, "yes": True, "on": True, "1": True, "false": False, "no": False,
          "off": False, "0": False}  # fmt: skip


def _flag(key: str, raw: Any) -> bool:
    text = str(raw).strip().lower() if isinstance(raw, str | int) else ""  # True, 1: "true", "1"
    if text not in _FLAGS:
        raise ConfigurationError(
            f"{key} must be True or False (or the strings 'true' / 'false'), not {_shown(raw)}."
        )
    return _FLAGS[text]


def _number(*, zero: bool = False, whole: bool = False) -> Check:
    """Finite, and above 0 (at least 0 with ``zero``); an ``int`` with ``whole``."""

    def check(key: str, raw: Any) -> float:
        try:
            number = float(raw) if not isinstance(raw, bool) else math.nan
        except (TypeError, ValueError, OverflowError):
            number = math.nan
        if not math.isfinite(number):
            raise ConfigurationError(f"{key} must be a finite number, not {_shown(raw)}.")
        if whole and not number.is_integer():
            raise ConfigurationError(f"{key} must be a whole number, not {_shown(raw)}.")
        if number < 0 or (number == 0 and not zero):
            raise ConfigurationError(f"{key} must be {'>=' if zero else '>'} 0, not {_shown(raw)}.")
        return int(number) if whole else number

    return check


def _scopes(key: str, raw: Any) -> tuple[str, ...]:
    names = isinstance(raw, list | tuple | set | frozenset) and all(isinstance(s, str) for s in raw)
    if not (isinstance(raw, str) or names):
        raise ConfigurationError(
            f"{key} must be a space-separated string or a list of scope names, not "
            f"{type(raw).__name__}."
        )
    scopes = parse_scopes(raw)
    if removed := [s for s in scopes if s in REMOVED_SCOPES]:
        details = "; ".join(f"{s}: {REMOVED_SCOPES[s]}" for s in removed)
        raise ConfigurationError(
            f"{key} asks for scopes Spotify no longer knows ({details}). Spotify would "
            "answer the login only with its own 'Illegal scope' page."
        )
    if unknown := [s for s in scopes if s not in KNOWN_SCOPES]:
        warn_user(
            f"{key} has scopes Spotify does not document: {', '.join(unknown)}. "
            "If Spotify does not know them, logins end on its 'Illegal scope' page."
        )
    return scopes


def _service_url(key: str, raw: Any) -> str:
    """Spotify's base URLs (or a fake's): https, or plain http only to this machine."""
    url = _text(key, raw).rstrip("/")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigurationError(f"{key} must be an absolute https URL, not {_shown(url)}.")
    if parts.scheme == "http" and parts.hostname not in _LOOPBACK_HOSTS | {"localhost"}:
        raise ConfigurationError(
            f"{key} {_shown(url)} uses plain http to another machine: the client secret and "
            "tokens would cross the network in clear. Use https (plain http is allowed "
            "only to this machine, 127.0.0.1, ::1 or localhost, for a fake Spotify)."
        )
    return url


def _redirect_uri(key: str, raw: Any) -> str:
    return validate_redirect_uri(_text(key, raw), name=key)


def store_url(key: str, raw: Any) -> str | None:
    """``raw`` as a store URL (``key`` names it in the error): ``None`` for the default."""
    if raw in (None, ""):
        return None  # the default: SQLite in the app's instance folder
    # postgres:// is Heroku's and Render's DATABASE_URL spelling.
    url = re.sub(r"^postgres://", "postgresql://", str(raw).strip())
    bare = url in ("sqlite:///", "sqlite:////") or (url.startswith("memory") and url != "memory")
    if bare or not url.startswith(tuple(STORE_SCHEMES)):
        raise ConfigurationError(
            f"{key} {_shown(url)} is not a store this package knows. Use sqlite:///tokens.sqlite3 "
            "(a file in the app's instance folder), sqlite:////absolute/path/tokens.sqlite3 (four "
            "slashes), postgresql://user:password@host/db, redis://host:port/db or memory (or "
            "leave it unset: SQLite in the app's instance folder)."
        )
    _server_url_parts(key, url)
    return url


def _server_url_parts(key: str, url: str) -> None:
    """A Redis or PostgreSQL URL whose port or Redis database number cannot work: said here,
    naming the part, rather than by the driver at start (its text may show the password)."""
    if not url.startswith(("redis", "postgresql")):
        return  # sqlite:///, memory, unix:// (a socket path)
    try:
        parts = urlsplit(url)
    except ValueError:  # an unclosed [ of an IPv6 host
        raise ConfigurationError(f"{key} {_shown(url)} cannot be read as a URL.") from None
    try:
        port = parts.port
    except ValueError:
        port = -1
    if port is not None and not 0 < port < 65536:
        raise ConfigurationError(
            f"{key} {_shown(url)}: its port is not a number from 1 to 65535 (a password "
            "holding : / @ ? or # must be URL-encoded)."
        )
    database = parts.path.strip("/")
    if url.startswith("redis") and database and not database.isdigit():
        raise ConfigurationError(
            f"{key} {_shown(url)}: the path of a Redis URL is the database number "
            "(redis://host:6379/0), not a name."
        )


def _library(key: str, raw: Any) -> str | None:
    if (name := _text(key, raw).lower() or None) not in (None, *LIBRARIES):
        raise ConfigurationError(f"{key} must be 'httpx' or 'httpx2' or unset, not {_shown(raw)}.")
    return name


def _keys(key: str, raw: Any) -> tuple[str, ...]:
    items: Iterable[Any] = raw.split(",") if isinstance(raw, str) else list(raw or ())
    return tuple(k.decode() if isinstance(k, bytes) else str(k).strip() for k in items if k)


@dataclass(frozen=True, slots=True)
class Settings:
    """The resolved configuration of one app; each field declares its ``SPOTIFY_*`` setting."""

    client_id: str = setting(None, _client_id, env=True)
    """The app's client id, from the Spotify developer dashboard."""
    client_secret: str | None = setting(None, lambda key, raw: _text(key, raw) or None, env=True)
    """Unset: a public client, which logs in with PKCE only."""
    redirect_uri: str = setting("http://127.0.0.1:5000/callback/", _redirect_uri, env=True)
    """The callback route's full URL: https, or http on `127.0.0.1`/`[::1]`; no `localhost`."""
    scopes: tuple[str, ...] = setting("", _scopes)
    """The scopes to ask for: a space-separated string or a list."""
    accounts_url: str = setting("https://accounts.spotify.com", _service_url, env=True)
    """`/authorize` and `/api/token` hang off it."""
    api_url: str = setting("https://api.spotify.com/v1", _service_url, env=True)
    """The Web API's base URL."""
    auto_renew: bool = setting(True, _flag)
    """Background renewal; `False`: renew lazily on access only."""
    use_pkce: bool = setting(True, _flag)
    """PKCE for every login; `False` (confidential clients only) turns it off."""
    show_dialog: bool = setting(False, _flag)
    """Ask Spotify to show the consent page even to users who agreed before."""
    session_key: str = setting("spotify_auth", _text)
    """The session key holding the login id and pending-login digests."""
    login_ttl: float = setting(600, _number())
    """Seconds a started login may take to come back."""
    http_timeout: float = setting(10.0, _number())
    """Seconds, for each request to Spotify."""
    http_library: str | None = setting(None, _library, env=True)
    """`"httpx"` or `"httpx2"`; unset: httpx, or httpx2 if `transport=` is an httpx2 one."""
    retries: int = setting(2, _number(zero=True, whole=True))
    """Extra attempts after network errors, timeouts, 5xx and unreadable replies."""
    retry_after_cap: float = setting(5.0, _number(zero=True))
    """Longest a request waits out 429s, all of them together; past it, a 503."""
    refresh_margin: float = setting(300.0, _number(zero=True))
    """Background renewal refreshes this many seconds before expiry."""
    renew_concurrency: int = setting(16, _number(whole=True))
    """Background refreshes in flight at once, at most."""
    keep_warm: float = setting(86400.0, _number(zero=True))
    """Seconds since a user's last request during which the renewer keeps their token fresh."""
    token_store: str | None = setting(None, store_url, env=True)
    """Where tokens live. Unset: a SQLite file in the app's instance folder."""
    token_store_prefix: str = setting("quart_spotify_auth:", _text)
    """Redis key prefix; for SQL, the tables' name prefix."""
    token_idle_ttl: float = setting(30 * 86400.0, _number())
    """A login unused for this many seconds (30 days) is forgotten."""
    token_encryption_keys: tuple[str, ...] = setting(None, _keys, env=True)
    """Fernet keys (a list, or comma-separated) that encrypt tokens at rest."""
    token_encryption_migrating: bool = setting(False, _flag)
    """With keys set, still read records written in clear or by 0.1, and rewrite them."""
    redis_max_connections: int = setting(20, _number(whole=True))
    """The bound of each process's Redis connection pool."""

    def __post_init__(self) -> None:
        if self.client_secret is None and not self.use_pkce:
            raise ConfigurationError(
                "SPOTIFY_USE_PKCE is False but there is no SPOTIFY_CLIENT_SECRET: a public client "
                "can only log in with PKCE. Remove SPOTIFY_USE_PKCE or set the secret."
            )

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
        """Longest a refresh may take, all retries included (a joined wait, a claim)."""
        return self.http_timeout * (self.retries + 1) + self.retry_after_cap


#: Every setting's field, by its key.
FIELDS: dict[str, Field[Any]] = {_PREFIX + f.name.upper(): f for f in fields(Settings)}
#: Every key and its default (as ``app.config`` would give it).
DEFAULTS: dict[str, Any] = {key: f.metadata["default"] for key, f in FIELDS.items()}
#: Keys also read from the environment when neither an argument nor ``app.config`` sets them.
ENVIRONMENT_KEYS = tuple(key for key, f in FIELDS.items() if f.metadata["env"])


def load_settings(config: Mapping[str, Any], overrides: Mapping[str, Any] = {}) -> Settings:
    """Resolve and check the settings; raises :class:`ConfigurationError` with the fix."""

    def given(key: str) -> Any:
        for source in (overrides, config):
            if source.get(key) is not None:
                return source[key]
        if key in ENVIRONMENT_KEYS and os.environ.get(key):
            return os.environ[key]
        return DEFAULTS[key]

    return Settings(**{f.name: f.metadata["check"](key, given(key)) for key, f in FIELDS.items()})


def unknown_keys(config: Mapping[str, Any], environ: Mapping[str, str] | None = None) -> list[str]:
    """Warnings, never showing a value, for keys in ``config`` and ``environ`` (by default
    ``os.environ``) that look misspelt, and for environment variables that only ``app.config``
    may set (``SPOTIFY_SCOPES``) when ``config`` does not."""
    found = []
    for key in config:
        if isinstance(key, str) and (close := _near_miss(key)):
            found.append(f"{key} is not a setting of quart-spotify-auth; did you mean {close}?")
    for key in os.environ if environ is None else environ:
        if key in DEFAULTS and key not in ENVIRONMENT_KEYS and config.get(key) is None:
            found.append(
                f"The environment variable {key} is ignored: quart-spotify-auth reads only "
                f"{', '.join(ENVIRONMENT_KEYS)} from the environment. Set "
                f"app.config[{key!r}] instead."
            )
        elif close := _near_miss(key):
            read = "" if close in ENVIRONMENT_KEYS else " (which is read only from app.config)"
            found.append(
                f"The environment variable {key} is not a setting of quart-spotify-auth; "
                f"did you mean {close}{read}?"
            )
    return found


@functools.lru_cache(maxsize=1024)
def _near_miss(key: str) -> str | None:
    """The setting ``key`` looks like a misspelling of, or ``None``."""
    if key in DEFAULTS:
        return None
    upper = key.upper()
    if upper in DEFAULTS:
        return upper
    if upper.startswith("SPOTIPY_"):  # spotipy's: near our names, not misspellings of them
        return None
    # SPOTFY_X is a typo of ours; an app's own MY_SPOTIFY_CLIENT_ID is not.
    if difflib.SequenceMatcher(None, upper[: len(_PREFIX)], _PREFIX).ratio() < 0.75:
        return None
    close = difflib.get_close_matches(upper, DEFAULTS, n=1, cutoff=0.85)
    return close[0] if close else None


def warn_user(message: str) -> None:
    """Warn at the first caller outside this package (the user's ``SpotifyAuth(app)`` line),
    however many of our frames lie between (Python 3.11 has no ``skip_file_prefixes``)."""
    frame, level = sys._getframe(1), 2
    while frame.f_back is not None and frame.f_code.co_filename.startswith(_PACKAGE_DIR):
        frame, level = frame.f_back, level + 1
    warnings.warn(message, UserWarning, stacklevel=level)


def _shown(raw: Any) -> str:
    """A value as an error may show it: any password masked, at most 60 characters."""
    text = repr(mask_password(raw) if isinstance(raw, str) else raw)
    return text if len(text) <= 60 else text[:57] + "..."


def mask_password(url: str) -> str:
    """``url`` with any password in it replaced by ``***``: all from the first ``:`` not before
    ``//`` to the last ``@``, and the value of a query key ending in ``password`` or ``pass``."""
    url = re.sub(r"(?<=:)(?!//).*(?=@[^@]*$)", "***", url, count=1, flags=re.S)
    return re.sub(r"(?i)([?&]\w*(?:password|passwd|pass)=)[^&#]*", r"\1***", url)


def validate_redirect_uri(uri: str, *, name: str = "SPOTIFY_REDIRECT_URI") -> str:
    """Check ``uri`` against Spotify's redirect URI rules (errors name it ``name``); return it."""
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
