"""Signals (blinker) about logins: the app is the sender, the login's store key ``key`` (see the
signals page). Receivers may be sync or async and must not block; one that raises is logged."""

from __future__ import annotations

import inspect
import logging
from typing import Any

from blinker import NamedSignal, Namespace

__all__ = [
    "logged_in",
    "logged_out",
    "login_forgotten",
    "reauthorization_required",
    "renewal_failed",
    "renewal_skipped",
    "send",
    "token_renewed",
]

logger = logging.getLogger("quart_spotify_auth")  # the package's one logger, for every module

_signals = Namespace()

#: A user logged in: ``key``, ``scopes`` (the granted scopes).
logged_in = _signals.signal("logged-in")
#: A user logged out (their tokens were forgotten): ``key``.
logged_out = _signals.signal("logged-out")
#: A token was renewed by this process: ``key``, ``in_background`` (``False``: on a request,
#: a forced renewal or a 401 from the Web API).
token_renewed = _signals.signal("token-renewed")
#: A background renewal failed and will be retried: ``key``, ``error`` (the exception).
renewal_failed = _signals.signal("renewal-failed")
#: Spotify no longer accepts a user's refresh token; the login was dropped: ``key``.
reauthorization_required = _signals.signal("reauthorization-required")
#: The renewer looked at a token and left it: ``key``, ``reason``: ``"idle"`` (not used
#: within ``SPOTIFY_KEEP_WARM``: renewed on next use instead), ``"current"`` (another process
#: renewed it), ``"gone"`` (logged out or replaced meanwhile) or ``"rate-limited"`` (put off
#: until the ``Retry-After`` of a 429 Spotify sent a refresh: its rate limit is the app's).
renewal_skipped = _signals.signal("renewal-skipped")
#: A login unused for ``SPOTIFY_TOKEN_IDLE_TTL`` was forgotten: ``key``.
login_forgotten = _signals.signal("login-forgotten")


async def send(signal: NamedSignal, sender: Any, **data: Any) -> None:
    """Send ``signal`` for ``sender``, awaiting async receivers; one that raises is logged."""
    for receiver in signal.receivers_for(sender):
        try:
            result = receiver(sender, **data)
            if inspect.isawaitable(result):
                await result
        except Exception:
            logger.exception("A receiver of the %r signal failed", signal.name)
