"""The in-memory store: one process, nothing shared, nothing kept across restarts."""

from __future__ import annotations

import heapq
import itertools
import time
from collections.abc import Callable
from dataclasses import replace

from ..tokens import PendingLogin, TokenRecord
from .base import TokenStore


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

    def __len__(self) -> int:
        return len(self._records)

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
        stored = replace(record, version=next(self._versions))
        self._records[key] = stored
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

    async def last_used(self, key: str) -> float | None:
        return self._used.get(key)

    async def reschedule(self, key: str, due: float | None) -> None:
        self._schedule(key, due)

    def _schedule(self, key: str, due: float | None) -> None:
        if due is None:
            self._due.pop(key, None)
            return
        self._due[key] = due
        heapq.heappush(self._heap, (due, next(self._seq), key))

    async def due_keys(self, now: float, limit: int) -> list[str]:
        keys: list[str] = []
        while self._heap and len(keys) < limit and self._heap[0][0] <= now:
            due, _, key = heapq.heappop(self._heap)
            if self._due.get(key) == due:  # not superseded
                del self._due[key]
                keys.append(key)
        return keys

    async def next_due(self) -> float | None:
        while self._heap and self._due.get(self._heap[0][2]) != self._heap[0][0]:
            heapq.heappop(self._heap)  # superseded
        return self._heap[0][0] if self._heap else None

    async def claim(self, key: str, ttl: float, owner: str | None = None) -> str | None:
        return "local"  # one process: the manager's single-flight is the claim

    async def release(self, key: str, claim: str) -> None:
        return None

    @property
    def scheduled(self) -> int:
        """Keys on the renewal schedule."""
        return len(self._due)

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
