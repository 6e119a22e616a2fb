"""The in-memory store: one process, nothing shared, nothing kept across restarts."""

from __future__ import annotations

import heapq
import itertools
import time
from collections.abc import Callable
from dataclasses import replace

from ..tokens import PendingLogin, TokenRecord
from .base import Due, TokenStore

__all__ = ["MemoryTokenStore"]


class MemoryTokenStore(TokenStore):
    """Keeps records in a dict and the schedule in a heap. Safe for concurrent tasks on one
    event loop: no method awaits between reading and writing, so each is atomic there.

    Scheduling a key is O(log n); superseded heap entries are skipped when they surface.
    Pending logins expire after their ttl and are swept as new ones are added; at most
    ``max_pending`` are kept (the oldest make room), so a flood of unfinished logins is bounded.
    """

    def __init__(
        self, *, clock: Callable[[], float] = time.monotonic, max_pending: int = 100_000
    ) -> None:
        self._records: dict[str, TokenRecord] = {}
        self._pending: dict[str, tuple[float, PendingLogin]] = {}
        self._used: dict[str, float] = {}
        self._due: dict[str, float] = {}
        self._heap: list[tuple[float, int, str]] = []
        self._seq = itertools.count()
        self._versions = itertools.count(1)  # never reused, not even after a delete
        self._clock = clock
        self._max_pending = max_pending

    def __repr__(self) -> str:
        return f"MemoryTokenStore({len(self._records)} records, {len(self._pending)} pending)"

    def peek(self, key: str) -> TokenRecord | None:
        return self._records.get(key)

    async def get(
        self, key: str, *, touch: float | None = None, fresh: bool = False
    ) -> TokenRecord | None:
        record = self._records.get(key)
        if touch is not None and record is not None:
            self._used[key] = touch
            if self._due.get(key, touch + 1) > touch:
                self._schedule(key, touch)
        return record

    async def put(
        self, key: str, record: TokenRecord, *, due: float | None = None, used: float | None = None
    ) -> TokenRecord:
        stored = self._records[key] = replace(record, version=next(self._versions))
        if used is not None:
            self._used[key] = used
        self._schedule(key, due)
        return stored

    async def replace(
        self, key: str, old: TokenRecord, new: TokenRecord, *, due: float | None = None
    ) -> TokenRecord | None:
        current = self._records.get(key)
        if current is None or current.version != old.version:
            return None
        stored = self._records[key] = replace(new, version=next(self._versions))
        self._schedule(key, due)
        return stored

    async def delete(self, key: str, old: TokenRecord | None = None) -> bool:
        current = self._records.get(key)
        if current is None or (old is not None and current.version != old.version):
            return False
        del self._records[key]
        self._due.pop(key, None)
        self._used.pop(key, None)
        return True

    async def reschedule(self, key: str, due: float | None) -> None:
        self._schedule(key, due)

    def _schedule(self, key: str, due: float | None) -> None:
        if due is None:
            self._due.pop(key, None)
            return
        self._due[key] = due
        heapq.heappush(self._heap, (due, next(self._seq), key))

    async def due(self, now: float, limit: int) -> Due:
        keys: list[tuple[str, float | None]] = []
        heap = self._heap
        while heap and (len(keys) < limit or self._due.get(heap[0][2]) != heap[0][0]):
            due, _, key = heap[0]
            if self._due.get(key) != due:  # superseded
                heapq.heappop(heap)
            elif due <= now:
                heapq.heappop(heap)
                del self._due[key]
                keys.append((key, self._used.get(key)))
            else:
                break
        return Due(keys, heap[0][0] if heap else None)

    async def add_pending(self, state: str, pending: PendingLogin, ttl: float) -> None:
        now = self._clock()
        # Entries are in insertion order, which is deadline order for one ttl: drop the
        # expired ones from the front and stop at the first live one.
        while self._pending:
            oldest = next(iter(self._pending))
            if self._pending[oldest][0] > now:
                break
            del self._pending[oldest]
        if len(self._pending) >= self._max_pending:  # a flood of abandoned logins: oldest go
            del self._pending[next(iter(self._pending))]
        self._pending[state] = (now + ttl, pending)

    async def pop_pending(self, state: str) -> PendingLogin | None:
        entry = self._pending.pop(state, None)
        if entry is None or entry[0] <= self._clock():
            return None
        return entry[1]
