"""Which HTTP library an app's requests to Spotify go through: httpx, or its fork httpx2 (the
same API under another name), chosen by ``SPOTIFY_HTTP_LIBRARY`` or by the app's transport,
never by what happens to be installed."""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import Any, Protocol

from .errors import ConfigurationError

__all__ = ["LIBRARIES", "Transport", "choose"]

LIBRARIES = ("httpx", "httpx2")


class Transport(Protocol):
    """An httpx or an httpx2 async transport (``transport=``)."""

    async def handle_async_request(self, request: Any) -> Any: ...


def choose(setting: str | None, transport: object = None) -> ModuleType:
    """The library ``SPOTIFY_HTTP_LIBRARY`` names, else the one ``transport`` (or a client) is
    from, else httpx."""
    tops = (cls.__module__.partition(".")[0] for cls in type(transport).__mro__)
    given = next((top for top in tops if top in LIBRARIES), None)
    name = setting or given or "httpx"
    try:
        lib = importlib.import_module(name)
    except ImportError:
        raise ConfigurationError(
            f"The HTTP library {name} (SPOTIFY_HTTP_LIBRARY: 'httpx' unless set) is not "
            f"installed: pip install {name}"
        ) from None
    if given is not None and given != lib.__name__:  # httpx2.alias_httpx(): httpx is httpx2
        raise ConfigurationError(
            f"SPOTIFY_HTTP_LIBRARY is {name!r} but transport= is an {given} transport. Pass a "
            f"{name} transport, or set SPOTIFY_HTTP_LIBRARY to {given!r}."
        )
    return lib
