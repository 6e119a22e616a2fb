"""This process's copies of a store's records (:class:`ReadCache`), and the wrapper that reads
and writes through them for any store (:class:`CachedRecords`). A store only reports its
changes into its :attr:`~.base.TokenStore.cache`: a feed of writes, change slots or versions."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar, cast

from ..retry import backoff
from ..signals import logger
from ..tasks import stop_if_cancelled
from ..tokens import TokenRecord
from .base import Records, TokenStore

__all__ = ["CachedRecords", "ReadCache", "bounded_insert"]

_FAILED = object()  # a shared read's outcome when it raised: each caller reads for itself


class _Read:
    """A read in flight that callers share: when it began, and what it found once ``done``."""

    __slots__ = ("begun", "done", "outcome")

    def __init__(self, begun: tuple[int, int]) -> None:
        self.begun, self.done, self.outcome = begun, asyncio.Event(), _FAILED


K = TypeVar("K")
V = TypeVar("V")


def bounded_insert(memory: dict[K, V], key: K, value: V, limit: int) -> None:
    """Set ``key`` as the newest entry of ``memory``, forgetting the oldest beyond ``limit``."""
    memory.pop(key, None)
    memory[key] = value
    while len(memory) > limit:
        del memory[next(iter(memory))]


class ReadCache:
    """Records by key, each good for ``ttl`` seconds while no write to its key was heard (or
    its change slot, ``stamp(key)``, is unchanged). A read that spans a change keeps nothing:
    call :meth:`begin` before reading and hand its result to :meth:`remember`."""

    #: Seconds a feed may be quiet before it is asked for a sign of life; one that stays
    #: silent a second time (a blackholed socket) ends, so it is lost within two.
    heartbeat = 10.0

    def __init__(
        self,
        ttl: float = 1.0,
        size: int = 10_000,
        stamp: Callable[[str], int] | None = None,
        last_known_for: float = 30.0,
    ) -> None:
        self.ttl = ttl
        self.size = size
        self.last_known_for = last_known_for
        self._stamp = stamp
        self._lost_at: float | None = None  # when the feed was lost
        #: Whether writes are heard now; nothing is served or kept while they are not.
        self.listening = stamp is not None
        #: Moves on with every change heard, so reads in flight across one are not kept.
        self.generation = 0
        self._entries: dict[str, tuple[float, TokenRecord, int]] = {}
        #: The newest version of each key this process wrote (bounded): no older copy is kept.
        self._floors: dict[str, int] = {}

    def __repr__(self) -> str:
        return f"ReadCache({len(self._entries)} records, listening={self.listening})"

    def get(self, key: str) -> TokenRecord | None:
        """``key``'s copy if known to be current; never waits (Flask's request threads call it)."""
        entry = self._entries.get(key) if self.listening else None
        if entry is None or entry[0] <= time.monotonic():
            return None
        if self._stamp is not None and self._stamp(key) != entry[2]:
            return None
        return entry[1]

    def last_known(self, key: str) -> TokenRecord | None:
        """What this process last read of ``key`` (of any age) if no write to it was heard
        since; with a feed, only while it is up or ``last_known_for`` seconds after. Served
        after the store failed to answer, until it is back."""
        entry = self._entries.get(key)
        if entry is None:
            return None
        if self._stamp is not None:
            return entry[1] if self._stamp(key) == entry[2] else None
        lost = self._lost_at
        if not self.listening and (lost is None or time.monotonic() - lost > self.last_known_for):
            return None
        return entry[1]

    def begin(self, key: str) -> tuple[int, int]:
        """Taken before a read of ``key``, for :meth:`remember`."""
        return self.generation, self._stamp(key) if self._stamp is not None else 0

    def remember(self, key: str, record: TokenRecord | None, begun: tuple[int, int]) -> None:
        """Keep what a read that :meth:`begin` began found (``None``: nothing there)."""
        if record is None:
            self._entries.pop(key, None)
        elif begun[0] == self.generation:
            self._keep(key, record, begun[1])

    def wrote(self, key: str, version: int) -> None:
        """This process wrote ``key`` at ``version``: drop older copies, keep none later."""
        if version > self._floors.get(key, 0):
            bounded_insert(self._floors, key, version, self.size)
        entry = self._entries.get(key)
        if entry is not None and entry[1].version < version:
            del self._entries[key]

    def heard(self, key: str, record: TokenRecord) -> None:
        """Keep ``record``, the feed's news of ``key`` (unless this process wrote a newer one)."""
        self._keep(key, record, 0)

    def _keep(self, key: str, record: TokenRecord, stamp: int) -> None:
        if not self.listening or self.ttl <= 0 or record.version < self._floors.get(key, 0):
            return
        bounded_insert(self._entries, key, (time.monotonic() + self.ttl, record, stamp), self.size)

    def changed(self, key: str | None = None) -> None:
        """``key`` was written somewhere (``None``: anything may have changed)."""
        self.generation += 1
        if key is None:
            self._entries.clear()
        else:
            self._entries.pop(key, None)

    def listen(self, listening: bool) -> None:
        """The feed is (re)connected: start afresh; or lost: nothing is current any more, but
        what was stays :meth:`last_known` for a while."""
        was = self.listening
        self.listening = listening or self._stamp is not None
        if self.listening:
            self._lost_at = None
            self.changed()
        elif was:
            self._lost_at = time.monotonic()
            self.generation += 1  # reads in flight across the loss are not kept

    async def follow(self, feed: Callable[[], Awaitable[None]]) -> None:
        """Run a store's ``feed`` of writes (it reports them here, and calls ``listen(True)``
        once it hears them) again, with backoff, whenever it ends, until cancelled."""
        failures = 0
        while True:
            try:
                await feed()
            except Exception as exc:  # the store is away: try again
                stop_if_cancelled()
                if self.listening and self._stamp is None:
                    logger.warning(
                        "The store's change feed was lost (%s); until it is back, this process "
                        "serves no copy as current",
                        type(exc).__name__,
                    )
            failures = 1 if self.listening and self._stamp is None else failures + 1
            self.listen(False)
            await asyncio.sleep(backoff(failures, base=0.1, cap=5.0))


class CachedRecords(Records):
    """``store``'s records, read through its ``cache`` (none: every read goes to the store);
    writes go through here too, so no older copy outlives them."""

    def __init__(self, store: TokenStore) -> None:
        self.store = store
        self.cache = store.cache or ReadCache(ttl=0)
        #: Reads in flight, by key: when each began (:meth:`ReadCache.begin`) and its outcome.
        self._reading: dict[str, _Read] = {}

    async def get(self, key: str) -> TokenRecord | None:
        """The cache's copy, else the store's record; callers that ask for a key while a read
        of it is in flight, with no change heard since it began, share that read."""
        while (record := self.cache.get(key)) is None:
            begun = self.cache.begin(key)
            reading = self._reading.get(key)
            if reading is None or reading.begun != begun:
                return await self._read(key, begun)
            await reading.done.wait()
            if reading.outcome is not _FAILED:  # else: read again, each for itself
                return cast("TokenRecord | None", reading.outcome)
        return record

    async def _read(self, key: str, begun: tuple[int, int]) -> TokenRecord | None:
        shared = self._reading[key] = _Read(begun)
        try:
            shared.outcome = record = await self.store.get(key)
            self.cache.remember(key, record, begun)
            return record
        finally:
            if self._reading.get(key) is shared:
                del self._reading[key]
            shared.done.set()

    async def put(
        self, key: str, record: TokenRecord, *, due: float | None = None, used: float | None = None
    ) -> TokenRecord:
        self.cache.changed(key)  # reads in flight keep nothing; a feed brings the new copy
        stored = await self.store.put(key, record, due=due, used=used)
        self.cache.wrote(key, stored.version)
        return stored

    async def replace(
        self, key: str, old: TokenRecord, new: TokenRecord, *, due: float | None = None
    ) -> TokenRecord | None:
        self.cache.changed(key)
        stored = await self.store.replace(key, old, new, due=due)
        if stored is not None:
            self.cache.wrote(key, stored.version)
        return stored

    async def delete(self, key: str, old: TokenRecord | None = None) -> bool:
        self.cache.changed(key)
        try:
            return await self.store.delete(key, old)
        finally:
            self.cache.changed(key)  # nor a read that began before the delete landed
