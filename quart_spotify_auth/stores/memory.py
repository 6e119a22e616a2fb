"""The in-memory store: one process, nothing shared, nothing kept across restarts."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import replace

from ..tokens import PendingLogin, TokenRecord
from .base import TokenStore


class MemoryTokenStore(TokenStore):
    """Keeps records in a dict. Safe for concurrent tasks on one event loop: no method awaits
    between reading and writing, so each is atomic there.

    Pending logins expire after their ttl; expired ones are swept as new ones are added, so
    abandoned logins do not pile up.
    """

    def __init__(self, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._records: dict[str, TokenRecord] = {}
        self._pending: dict[str, tuple[float, PendingLogin]] = {}
        self._clock = clock

    def __repr__(self) -> str:
        return f"MemoryTokenStore({len(self._records)} records, {len(self._pending)} pending)"

    def __len__(self) -> int:
        return len(self._records)

    async def get(self, key: str) -> TokenRecord | None:
        return self._records.get(key)

    async def put(self, key: str, record: TokenRecord) -> TokenRecord:
        current = self._records.get(key)
        stored = replace(record, version=(current.version if current else 0) + 1)
        self._records[key] = stored
        return stored

    async def replace(self, key: str, old: TokenRecord, new: TokenRecord) -> bool:
        current = self._records.get(key)
        if current is None or current.version != old.version:
            return False
        self._records[key] = replace(new, version=old.version + 1)
        return True

    async def delete(self, key: str, old: TokenRecord | None = None) -> bool:
        current = self._records.get(key)
        if current is None or (old is not None and current.version != old.version):
            return False
        del self._records[key]
        return True

    async def add_pending(self, state: str, pending: PendingLogin, ttl: float) -> None:
        now = self._clock()
        # Entries are in insertion order, which is deadline order for one ttl: drop the
        # expired ones from the front and stop at the first live one.
        while self._pending:
            oldest = next(iter(self._pending))
            if self._pending[oldest][0] > now:
                break
            del self._pending[oldest]
        self._pending[state] = (now + ttl, pending)

    async def pop_pending(self, state: str) -> PendingLogin | None:
        entry = self._pending.pop(state, None)
        if entry is None or entry[0] <= self._clock():
            return None
        return entry[1]
