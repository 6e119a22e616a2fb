"""Flask-Spotify-Auth's camelCase names (``getUser()``...), deprecated until 0.3: each calls its
new name and warns, with a WARNING log line once per name and process (Python hides the
warning under ``flask run`` and hypercorn). ``manager()``, an early name of our own, goes too."""

from __future__ import annotations

import sys
import warnings
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .signals import logger

if TYPE_CHECKING:
    from .core import Core
    from .refresh import Refresher

__all__ = ["SeedNames"]

#: The seed's names already logged as deprecated in this process.
_SAID: set[str] = set()


def _renamed(old: str, new: str) -> Callable[..., Any]:
    def method(self: Any, *args: Any, **kwargs: Any) -> Any:
        message = f"SpotifyAuth.{old}() is Flask-Spotify-Auth's name; use {new}()."
        warnings.warn(message, DeprecationWarning, stacklevel=2)
        if old not in _SAID:
            _SAID.add(old)
            caller = sys._getframe(1)
            logger.warning(
                "%s:%d: %s It goes in 0.3; the migration page of the docs maps "
                "every Flask-Spotify-Auth name to its new one.",
                caller.f_code.co_filename,
                caller.f_lineno,
                message,
            )
        return getattr(self, new)(*args, **kwargs)

    method.__name__ = old
    method.__doc__ = f"Deprecated: use ``{new}()``."
    return method


class SeedNames:
    """The seed's names on ``SpotifyAuth`` (mixed into both adapters)."""

    getUser = _renamed("getUser", "get_user")  # noqa: N815
    getUserToken = _renamed("getUserToken", "get_user_token")  # noqa: N815
    getAccessToken = _renamed("getAccessToken", "get_access_token")  # noqa: N815
    forceRenewal = _renamed("forceRenewal", "force_renewal")  # noqa: N815
    core: Callable[[Any], Core]

    def manager(self, app: Any = None) -> Refresher:
        """Deprecated: ``core(app).refresher``; for what happened, the :mod:`.signals`."""
        warnings.warn(
            "SpotifyAuth.manager() is deprecated: use core(app).refresher, and the signals in "
            "quart_spotify_auth.signals instead of its stats.",
            DeprecationWarning,
            stacklevel=2,
        )
        return self.core(app).refresher
