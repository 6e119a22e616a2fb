"""The in-memory store: one process, nothing shared, nothing kept across restarts."""

from __future__ import annotations

import heapq
import itertools
import math
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import replace

from ..tokens import TokenRecord
from .base import Due, DueKey, Stored, TokenStore
from .cache import ReadCache, bounded_insert
from .codec import Codec

__all__ = ["MemoryTokenStore"]


class MemoryTokenStore(TokenStore):
    """Records in a dict, the schedule in a heap (O(log n); superseded entries are skipped as
    they surface). No method awaits between reading and writing: each is atomic on its loop."""

    def __init__(self) -> None:
        self._records: dict[str, TokenRecord] = {}
        self._used: dict[str, float] = {}
        self._due: dict[str, float] = {}
        self._heap: list[tuple[float, int, str]] = []
        self._claims: dict[str, tuple[str, float]] = {}  # owner, until; the newest 100,000
        self._seq = itertools.count()
        self._top = 0  # the last version given: never reused, not even after a delete
        # Its change slots are the versions: a copy is current while its version is stored.
        self.cache = ReadCache(math.inf, stamp=self._version)

    def __repr__(self) -> str:
        return f"MemoryTokenStore({len(self._records)} records, {len(self._due)} scheduled)"

    def _version(self, key: str) -> int:
        record = self._records.get(key)
        return 0 if record is None else record.version

    async def get(self, key: str) -> TokenRecord | None:
        return self._records.get(key)

    async def put(
        self, key: str, record: TokenRecord, *, due: float | None = None, used: float | None = None
    ) -> TokenRecord:
        stored = self._records[key] = replace(record, version=self._next())
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
        stored = self._records[key] = replace(new, version=self._next())
        self._schedule(key, due)
        return stored

    def _next(self) -> int:
        self._top += 1
        return self._top

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

    async def stored(self, page: int = 500) -> AsyncIterator[list[Stored]]:
        rows, codec = list(self._records.items()), Codec()
        for start in range(0, len(rows), page):
            yield [
                Stored(k, r.version, codec.record(k, r), r, self._due.get(k), self._used.get(k))
                for k, r in rows[start : start + page]
            ]

    async def adopt(self, rows: Sequence[Stored]) -> int:
        adopted = 0
        for row in rows:
            current = self._records.get(row.key)
            if row.record is None or (current is not None and current.version >= row.version):
                continue
            self._records[row.key] = replace(row.record, version=row.version)
            self._top = max(self._top, row.version)
            if row.used is not None:
                self._used[row.key] = row.used
            self._schedule(row.key, row.due)
            adopted += 1
        return adopted

    async def mark_used(self, key: str, at: float) -> None:
        if key in self._records:
            self._used[key] = at
            if self._due.get(key, math.inf) > at:
                self._schedule(key, at)

    def _schedule(self, key: str, due: float | None) -> None:
        if due is None:
            self._due.pop(key, None)
            return
        self._due[key] = due
        heapq.heappush(self._heap, (due, next(self._seq), key))

    async def due(self, now: float, limit: int) -> Due:
        keys: list[DueKey] = []
        heap = self._heap
        while heap and (len(keys) < limit or self._due.get(heap[0][2]) != heap[0][0]):
            due, _, key = heap[0]
            if self._due.get(key) != due:  # superseded
                heapq.heappop(heap)
            elif due <= now:
                heapq.heappop(heap)
                del self._due[key]
                keys.append(DueKey(key, self._used.get(key)))
            else:
                break
        return Due(keys, heap[0][0] if heap else None)

    async def claim(self, key: str, ttl: float, owner: str) -> str | None:
        now, claims = time.monotonic(), self._claims
        while claims and next(iter(claims.values()))[1] <= now:  # the oldest, once ended
            del claims[next(iter(claims))]
        held = claims.get(key)
        if held is not None and held[0] != owner and held[1] > now:
            return None
        bounded_insert(claims, key, (owner, now + ttl), 100_000)
        return owner

    async def release(self, key: str, claim: str) -> None:
        if self._claims.get(key, ("",))[0] == claim:
            del self._claims[key]
