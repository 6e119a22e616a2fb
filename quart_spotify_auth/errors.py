"""Every error a request can meet: an ``HTTPException`` under :class:`SpotifyAuthError`, saying
what to do (never a secret); :class:`ConfigurationError` comes from ``init_app``."""

from __future__ import annotations

from typing import Any

from werkzeug.exceptions import HTTPException

__all__ = [
    "AuthorizationDenied",
    "ConfigurationError",
    "CrossSiteRequest",
    "InvalidCallback",
    "InvalidClient",
    "LoginRequired",
    "RateLimited",
    "ReauthorizationRequired",
    "ScopesNotAllowed",
    "ScopesNotGranted",
    "SpotifyAuthError",
    "SpotifyBadResponse",
    "SpotifyUnavailable",
    "StoreUnavailable",
]


class ConfigurationError(ValueError):
    """The extension's configuration cannot work; the message says the fix."""


class SpotifyAuthError(HTTPException):
    """Base of every HTTP-facing error here; no status of its own, so that
    ``@app.errorhandler(SpotifyAuthError)`` catches all of them."""

    code: int | None = None
    #: The heading of its error page: what went wrong, rather than "Bad Request".
    name = "Spotify login failed"
    description = "Spotify login failed."

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.code}, {self.description!r})"

    @property
    def response_headers(self) -> dict[str, str]:
        """The headers its response needs besides a page's own (``Retry-After``, when it is
        known): for an error handler of your own, ``return page, error.code,
        error.response_headers``."""
        return {}

    def get_headers(
        self, environ: Any = None, scope: dict[str, Any] | None = None
    ) -> list[tuple[str, str]]:
        return [*super().get_headers(environ, scope), *self.response_headers.items()]


class InvalidCallback(SpotifyAuthError):
    """400: the callback's ``state`` is missing, forged, replayed or expired, or Spotify
    rejected the authorization code (``invalid_grant``)."""

    code = 400
    name = "Login could not be completed"
    description = "This login callback is not valid. Start the login again."


class AuthorizationDenied(SpotifyAuthError):
    """403: the user refused consent on Spotify's page (``error=access_denied``)."""

    code = 403
    name = "Login cancelled"
    description = (
        "Spotify login was cancelled: the user did not grant this app access. "
        "Start the login again to retry."
    )


class LoginRequired(SpotifyAuthError):
    """401: this browser (or identity) has no Spotify login."""

    code = 401
    name = "Not logged in"
    description = "Not logged in with Spotify. Log in first."


class ReauthorizationRequired(LoginRequired):
    """401: Spotify no longer accepts this user's refresh token; the tokens were dropped."""

    name = "Please log in again"
    description = (
        "Spotify no longer accepts this login (access was revoked or the login is older than "
        "Spotify allows). Log in with Spotify again."
    )


class InvalidClient(SpotifyAuthError):
    """502: Spotify rejected the app's own credentials (``invalid_client``)."""

    name = "The app's Spotify credentials were refused"
    code = 502
    description = (
        "Spotify rejected this app's client credentials (invalid_client). Check "
        "SPOTIFY_CLIENT_ID and SPOTIFY_CLIENT_SECRET against the Spotify developer dashboard."
    )


class SpotifyBadResponse(SpotifyAuthError):
    """502: Spotify answered with something that is not a valid reply."""

    code = 502
    name = "Spotify sent an unexpected reply"
    description = "Spotify's accounts service sent a reply that could not be understood."


class SpotifyUnavailable(SpotifyAuthError):
    """503: Spotify could not be reached, kept failing, or asked us to slow down; tokens are
    kept. ``retry_after`` (seconds), when known, is sent as ``Retry-After``."""

    code = 503
    name = "Spotify is unavailable"
    description = "Spotify's accounts service is unavailable right now. Try again shortly."

    def __init__(self, description: str | None = None, *, retry_after: int | None = None) -> None:
        super().__init__(description)
        self.retry_after = retry_after

    @property
    def response_headers(self) -> dict[str, str]:
        return {} if self.retry_after is None else {"Retry-After": str(self.retry_after)}


class RateLimited(SpotifyUnavailable):
    """503: the Web API kept answering 429 beyond the wait the app allows."""

    name = "Spotify asked us to slow down"


class ScopesNotGranted(SpotifyAuthError):
    """403: the user was asked for scopes a page needs and Spotify did not grant them."""

    code = 403
    name = "Permissions not granted"
    description = "This page needs Spotify permissions that were not granted."


class ScopesNotAllowed(SpotifyAuthError):
    """400: a login link asked for scopes the app uses nowhere (config or guards)."""

    code = 400
    name = "Permissions not used by this app"
    description = "This login asks for Spotify permissions this app does not use."


class CrossSiteRequest(SpotifyAuthError):
    """403: a state-changing request (log out, renew) came from another site's page."""

    code = 403
    name = "Request from another site refused"
    description = (
        "This request came from another site, so it was refused. Use the buttons of this app."
    )


class StoreUnavailable(SpotifyAuthError):
    """503: the token store cannot be reached; nothing stored was lost, try again shortly."""

    code = 503
    name = "Login store unavailable"
    description = (
        "The login store is unavailable right now (the app cannot reach it). Try again shortly."
    )

    @classmethod
    def of(cls, kind: str, cause: BaseException, where: str | None, said: str) -> StoreUnavailable:
        """The 503 for ``cause``: its page names the store's ``kind`` and the error's type; its
        note, for the log, also ``where`` it was met and what the store ``said``."""
        name = type(cause).__name__
        exc = cls(f"The login store is unavailable right now ({kind}: {name}). Try again shortly.")
        exc.add_note(f"{where}: {name}: {said}")
        return exc
