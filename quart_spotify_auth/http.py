"""Which HTTP library an app's requests to Spotify go through: httpx, or its fork httpx2 (the
same API under another name), chosen by ``SPOTIFY_HTTP_LIBRARY`` or by the app's transport,
never by what happens to be installed."""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import Any, Protocol

from .errors import ConfigurationError

__all__ = ["LIBRARIES", "Transport", "choose", "library_of"]

LIBRARIES = ("httpx", "httpx2")


class Transport(Protocol):
    """An httpx or an httpx2 async transport (``transport=``)."""

    async def handle_async_request(self, request: Any) -> Any: ...


def _name_of(obj: object) -> str | None:
    """The library ``obj``'s class (or a base of it) comes from, or ``None``."""
    tops = (cls.__module__.partition(".")[0] for cls in type(obj).__mro__)
    return next((top for top in tops if top in LIBRARIES), None)


def library_of(obj: object) -> ModuleType:
    """The module of the library whose client (or transport) ``obj`` is."""
    return importlib.import_module(_name_of(obj) or "httpx")


def choose(setting: str | None, transport: object = None) -> ModuleType:
    """The library ``SPOTIFY_HTTP_LIBRARY`` names, else the transport's, else httpx."""
    given = None if transport is None else _name_of(transport)
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
