"""A read cache for stores shared by several processes.

Reading a token is what every request does, so a shared store keeps what this process read
for up to ``ttl`` seconds, and drops a key the moment any process writes it: the store feeds
the cache its change notifications (Redis pub/sub), and nothing is cached while that feed is
down. Measured on the hot path with Redis: 0.79 of a constant handler without the cache,
0.94 with it (``python -m benchmarks redis-hotpath``; ``docs/benchmarks.md``).
"""

from __future__ import annotations

import time

from ..tokens import TokenRecord

__all__ = ["ReadCache"]


class ReadCache:
    """Records by key, valid while the change feed is heard and for at most ``ttl`` seconds.

    A read that starts before a change and ends after it must not cache what it read: take
    :attr:`generation` before reading and hand it to :meth:`remember`.
    """

    def __init__(self, ttl: float = 1.0, size: int = 10_000) -> None:
        self.ttl = ttl
        self.size = size
        #: Whether the change feed is heard now; nothing is served or kept while it is not.
        self.listening = False
        #: Moves on with every change, so reads in flight across one are not kept.
        self.generation = 0
        self._entries: dict[str, tuple[float, TokenRecord]] = {}

    def __repr__(self) -> str:
        return f"ReadCache({len(self._entries)} records, listening={self.listening})"

    def get(self, key: str) -> TokenRecord | None:
        entry = self._entries.get(key) if self.listening else None
        if entry is None or entry[0] <= time.monotonic():
            return None
        return entry[1]

    def remember(self, key: str, record: TokenRecord | None, generation: int) -> None:
        """Keep what a read that began at ``generation`` found (``None``: nothing there)."""
        if record is None:
            self._entries.pop(key, None)
            return
        if not self.listening or self.ttl <= 0 or generation != self.generation:
            return
        if len(self._entries) >= self.size and key not in self._entries:
            del self._entries[next(iter(self._entries))]  # the oldest entry makes room
        self._entries[key] = (time.monotonic() + self.ttl, record)

    def changed(self, key: str | None = None) -> None:
        """``key`` was written somewhere (``None``: anything may have changed)."""
        self.generation += 1
        if key is None:
            self._entries.clear()
        else:
            self._entries.pop(key, None)

    def listen(self, listening: bool) -> None:
        """The change feed is (re)connected or lost: either way, start afresh."""
        self.listening = listening
        self.changed()
