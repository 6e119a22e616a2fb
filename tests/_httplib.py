"""The HTTP library the suite runs on: the module ``SPOTIFY_HTTP_LIBRARY`` names (httpx unless
set). The tests import ``httpx`` from here, so ``nox -s httpx2`` (which sets it to httpx2 and
uninstalls httpx) runs them, and the apps under test, on httpx2."""

from __future__ import annotations

import importlib
import os
from typing import TYPE_CHECKING

import pytest

__all__ = ["CHOICE", "NAME", "httpx", "needs_real_httpx"]

#: ``"httpx"`` or ``"httpx2"``: also what each app under test reads from the environment.
NAME = os.environ.get("SPOTIFY_HTTP_LIBRARY") or "httpx"

#: The choice, for a process the tests give an environment without ``SPOTIFY_*`` variables.
CHOICE = {"SPOTIFY_HTTP_LIBRARY": NAME} if os.environ.get("SPOTIFY_HTTP_LIBRARY") else {}

if TYPE_CHECKING:
    import httpx as httpx
else:
    httpx = importlib.import_module(NAME)


def needs_real_httpx(what: str) -> None:
    """Skip the calling module when httpx itself is not installed (``nox -s httpx2``)."""
    pytest.importorskip("httpx", reason=f"{what} needs httpx itself, not installed here")
