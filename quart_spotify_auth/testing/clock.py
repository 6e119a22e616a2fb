"""A clock tests move by hand."""

from __future__ import annotations

import time

__all__ = ["FakeClock"]


class FakeClock:
    """A clock that only moves when told to; pass it as ``FakeSpotify(clock=...)`` and
    ``SpotifyAuth(app, clock=...)``."""

    def __init__(self, start: float | None = None) -> None:
        self.now = time.time() if start is None else float(start)

    def __call__(self) -> float:
        """The current fake time in seconds since the epoch."""
        return self.now

    def advance(self, seconds: float) -> None:
        """Move the clock forward by ``seconds``."""
        self.now += seconds
