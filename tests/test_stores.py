"""The TokenStore contract, run against the in-memory store and a real redis-server."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from quart_spotify_auth import MemoryTokenStore, StoreUnavailable, TokenRecord, TokenStore
from quart_spotify_auth.stores.base import DUE_LEASE, Due
from quart_spotify_auth.stores.cache import CachedRecords, ReadCache
from quart_spotify_auth.stores.redis import RedisTokenStore
from quart_spotify_auth.stores.sql import SQLTokenStore

from .servers import PostgreSQLServer, RedisServer


@pytest.fixture(name="store", params=["memory", "redis", "sqlite", "postgresql"])
async def _store(
    request: pytest.FixtureRequest, redis_prefix: str, sql_prefix: str, tmp_path: Path
) -> AsyncIterator[TokenStore]:
    store: TokenStore
    if request.param == "memory":
        store = MemoryTokenStore()
    elif request.param == "redis":
        server: RedisServer = request.getfixturevalue("redis_server")
        store = RedisTokenStore(server.url, prefix=redis_prefix)
    elif request.param == "sqlite":
        store = SQLTokenStore(f"sqlite:///{tmp_path}/tokens.sqlite3")
    else:
        pg: PostgreSQLServer = request.getfixturevalue("pg_server")
        store = SQLTokenStore(pg.url, prefix=sql_prefix)
    await store.open()
    yield store
    await store.close()


def _record(access: str = "a1", refresh: str | None = "r1") -> TokenRecord:
    import time

    now = time.time()
    return TokenRecord(access, refresh, now + 3600, now, frozenset({"streaming"}), now)


async def test_put_get_delete(store: TokenStore) -> None:
    assert await store.get("k") is None
    stored = await store.put("k", _record())
    assert stored.version > 0
    assert await store.get("k") == stored
    assert await store.delete("k")
    assert await store.get("k") is None
    assert not await store.delete("k")


async def test_put_always_moves_the_version_forward(store: TokenStore) -> None:
    first = await store.put("k", _record())
    second = await store.put("k", replace(_record("a2"), version=1))
    assert second.version > first.version  # (PostgreSQL's sequence may skip numbers)
    assert await store.get("k") == second


async def test_replace_only_from_the_current_version(store: TokenStore) -> None:
    old = await store.put("k", _record())
    new = old.renewed(_record("a2", None))
    assert await store.replace("k", old, new)
    current = await store.get("k")
    assert current is not None
    assert (current.access_token, current.refresh_token) == ("a2", "r1")
    assert current.version > old.version
    # A second refresh that started from the old version must not land.
    assert not await store.replace("k", old, old.renewed(_record("stale")))
    assert (await store.get("k")) == current


async def test_replace_does_not_resurrect_a_logout(store: TokenStore) -> None:
    old = await store.put("k", _record())
    await store.delete("k")
    assert not await store.replace("k", old, old.renewed(_record("a2")))
    assert await store.get("k") is None


async def test_replace_does_not_overwrite_a_new_login(store: TokenStore) -> None:
    old = await store.put("k", _record())
    login = await store.put("k", _record("fresh-login", "fresh-refresh"))
    assert not await store.replace("k", old, old.renewed(_record("a2")))
    assert await store.get("k") == login


async def test_conditional_delete(store: TokenStore) -> None:
    old = await store.put("k", _record())
    await store.put("k", _record("new"))
    assert not await store.delete("k", old)
    assert await store.get("k") is not None


async def test_schedule_hands_out_due_keys_in_order(store: TokenStore) -> None:
    await store.put("late", _record(), due=300.0)
    await store.put("early", _record(), due=100.0, used=42.0)
    await store.put("never", _record())  # no due: not scheduled
    assert await store.due(50.0, 10) == Due([], 100.0)
    assert (await store.due(1000.0, 10)).entries == [("early", 42.0), ("late", None)]
    await store.reschedule("early", 2000.0)
    await store.reschedule("late", None)
    assert await store.due(1000.0, 10) == Due([], 2000.0)
    await store.delete("early")
    assert await store.due(5000.0, 10) == Due([], None)


async def test_schedule_hands_out_at_most_the_limit(store: TokenStore) -> None:
    for i in range(5):
        await store.put(f"k{i}", _record(), due=float(i))
    due = await store.due(100.0, 2)
    assert due.entries == [("k0", None), ("k1", None)]
    assert due.next is not None and due.next <= 2.0


async def test_a_key_handed_out_is_not_handed_to_another_renewer(store: TokenStore) -> None:
    """Two renewers reading the schedule at once take different keys (else both wait on the
    same claims, and two processes renew no faster than one); a key whose renewer died is
    handed out again once its lease ends."""
    for i in range(4):
        await store.put(f"k{i}", _record(), due=float(i))
    first, second = await asyncio.gather(store.due(100.0, 2), store.due(100.0, 2))
    taken = [key for key, _ in first.entries + second.entries]
    assert sorted(taken) == ["k0", "k1", "k2", "k3"]
    assert (await store.due(101.0, 10)).entries == []
    again = await store.due(100.0 + DUE_LEASE, 10)
    assert len(again.entries) == (4 if store.shared else 0)


async def test_replace_moves_the_schedule(store: TokenStore) -> None:
    old = await store.put("k", _record(), due=100.0)
    assert await store.replace("k", old, old.renewed(_record("a2")), due=500.0)
    assert await store.due(0.0, 10) == Due([], 500.0)


async def test_mark_used_records_use_and_reschedules(store: TokenStore) -> None:
    await store.put("k", _record(), due=5000.0)
    await store.mark_used("k", 42.0)
    assert await store.get("k") is not None
    # Brought forward, looked at now, with its use recorded.
    assert (await store.due(42.0, 10)).entries == [("k", 42.0)]
    await store.reschedule("k", None)
    await store.put("j", _record(), due=7000.0, used=99.0)  # a login is a use
    assert await store.due(100.0, 10) == Due([], 7000.0)
    assert (await store.due(7000.0, 10)).entries == [("j", 99.0)]
    await store.reschedule("j", None)  # a shared store hands it out until rescheduled
    await store.mark_used("missing", 43.0)
    assert await store.get("missing") is None
    assert await store.due(8000.0, 10) == Due([], None)  # nothing scheduled for it


async def test_claims_exclude_each_other(store: TokenStore) -> None:
    first = await store.claim("k", ttl=30, owner="p1")
    assert first is not None
    if store.shared:
        assert await store.claim("k", ttl=30, owner="p2") is None
        await store.release("k", "not-the-holder")
        assert await store.claim("k", ttl=30, owner="p2") is None
    await store.release("k", first)
    assert await store.claim("k", ttl=30, owner="p2") is not None


async def test_an_owner_takes_back_a_claim_it_could_not_release(store: TokenStore) -> None:
    first = await store.claim("k", ttl=30, owner="p1")
    assert first is not None
    if not store.shared:
        return  # one process: the manager's single-flight is the claim
    assert await store.claim("k", ttl=30, owner="p2") is None
    assert await store.claim("k", ttl=30, owner="p") is None  # a prefix is somebody else
    again = await store.claim("k", ttl=30, owner="p1")
    assert again is not None
    assert again != first
    await store.release("k", first)  # the lost release, arriving late, leaves the new claim
    assert await store.claim("k", ttl=30, owner="p2") is None
    await store.release("k", again)
    assert await store.claim("k", ttl=30, owner="p2") is not None


async def test_redis_keys_expire(redis_server: RedisServer, redis_prefix: str) -> None:
    store = RedisTokenStore(redis_server.url, prefix=redis_prefix, idle_ttl=3600)
    await store.put("k", _record())
    # Abandoned users do not pile up: the record expires after idle_ttl without writes.
    assert 3_500_000 < await store.redis.pttl(f"{redis_prefix}t:k") <= 3_600_000
    await store.close()


async def test_redis_encrypts_at_rest(redis_server: RedisServer, redis_prefix: str) -> None:
    from cryptography.fernet import Fernet

    old_key, new_key = Fernet.generate_key(), Fernet.generate_key()
    store = RedisTokenStore(redis_server.url, prefix=redis_prefix, encryption_keys=[old_key])
    record = await store.put("k", _record("access-in-clear?", "refresh-in-clear?"))
    raw: Any = await store.redis.hget(f"{redis_prefix}t:k", "d")
    assert raw.startswith(b"f") and b"in-clear" not in raw
    # Rotation: a new key first, the old one still decrypts.
    rotated = RedisTokenStore(
        redis_server.url, prefix=redis_prefix, encryption_keys=[new_key, old_key]
    )
    assert await rotated.get("k") == record
    await store.close()
    await rotated.close()


def test_redis_store_config_errors() -> None:
    from quart_spotify_auth import ConfigurationError

    with pytest.raises(ConfigurationError, match="url or a client"):
        RedisTokenStore()
    with pytest.raises(ConfigurationError, match="Fernet"):
        RedisTokenStore("redis://127.0.0.1:1/0", encryption_keys=["not-a-key"])
    assert "secret" not in repr(RedisTokenStore("redis://:secret@127.0.0.1:1/0"))


def test_record_repr_hides_tokens() -> None:
    record = _record("access-secret", "refresh-secret")
    assert "secret" not in repr(record)
    assert "secret" not in repr(record.to_access_token(0.0))


def _two_processes(
    kind: str, request: pytest.FixtureRequest, redis_prefix: str, sql_prefix: str, tmp: Path
) -> tuple[TokenStore, TokenStore, Any]:
    """Two stores on one shared backend (as two processes would have), and a way to delete
    the row behind their back."""
    if kind == "redis":
        url = request.getfixturevalue("redis_server").url
        reader, writer = (RedisTokenStore(url, prefix=redis_prefix, cache_ttl=60) for _ in "rw")
        return reader, writer, lambda: reader.redis.delete(f"{redis_prefix}t:k")
    url = (
        request.getfixturevalue("pg_server").url
        if kind == "postgresql"
        else f"sqlite:///{tmp}/tokens.sqlite3"
    )
    prefix = sql_prefix if kind == "postgresql" else "quart_spotify_auth_"
    sql_reader, sql_writer = (SQLTokenStore(url, prefix=prefix) for _ in "rw")

    async def behind() -> None:
        await sql_reader.transaction(lambda c: c.execute(sql_reader.schema.tokens.delete()))

    return sql_reader, sql_writer, behind


@pytest.mark.parametrize("kind", ["redis", "postgresql", "sqlite"])
async def test_a_read_cache_follows_writes_from_other_processes(
    kind: str, request: pytest.FixtureRequest, redis_prefix: str, sql_prefix: str, tmp_path: Path
) -> None:
    import asyncio

    stores = _two_processes(kind, request, redis_prefix, sql_prefix, tmp_path)
    reader, writer, behind = CachedRecords(stores[0]), CachedRecords(stores[1]), stores[2]
    await stores[0].open()
    await stores[1].open()
    try:
        while not reader.cache.listening:
            await asyncio.sleep(0.01)
        first = await writer.put("k", _record("a1"))
        assert await reader.get("k") == first
        while reader.cache.get("k") is None:
            await asyncio.sleep(0.01)
            assert await reader.get("k") == first
        # Served from memory now: not even a row deleted behind the stores' back changes it...
        await behind()
        assert await reader.get("k") == first
        # ...but every write through a store tells the others at once.
        second = await writer.put("k", _record("a2"))
        deadline = asyncio.get_running_loop().time() + 5
        while (await reader.get("k")) != second:
            assert asyncio.get_running_loop().time() < deadline, "no invalidation arrived"
            await asyncio.sleep(0.01)
        await writer.delete("k")
        while (await reader.get("k")) is not None:
            assert asyncio.get_running_loop().time() < deadline, "no invalidation arrived"
            await asyncio.sleep(0.01)
    finally:
        await stores[0].close()
        await stores[1].close()


async def test_redis_wrong_encryption_key_is_a_clean_503(
    redis_server: RedisServer, redis_prefix: str
) -> None:
    from cryptography.fernet import Fernet

    from quart_spotify_auth import StoreUnavailable

    writer = RedisTokenStore(
        redis_server.url, prefix=redis_prefix, encryption_keys=[Fernet.generate_key()]
    )
    await writer.put("k", _record())
    reader = RedisTokenStore(
        redis_server.url, prefix=redis_prefix, encryption_keys=[Fernet.generate_key()]
    )
    with pytest.raises(StoreUnavailable, match="SPOTIFY_TOKEN_ENCRYPTION_KEYS") as info:
        await reader.get("k")
    assert info.value.code == 503
    await writer.close()
    await reader.close()


# -- the read cache's last known copies (served while the store cannot be reached) ---------


def _kept_record(token: str = "a") -> TokenRecord:
    return TokenRecord(token, "r", 2e9, 1e9, frozenset(), 1e9, version=3)


def test_a_kept_copy_outlives_the_cache_but_not_a_write_heard() -> None:
    cache = ReadCache(ttl=1e-9)  # each copy is out of date as soon as it is kept
    cache.listen(True)
    cache.remember("k", _kept_record(), (cache.generation, 0))
    cache.remember("gone", _kept_record("b"), (cache.generation, 0))
    cache.ttl = 1.0  # remember() skips a zero ttl; the entry's own deadline has passed
    assert cache.get("k") is None and cache.last_known("k") == _kept_record()
    cache.changed("gone")  # another process wrote it (a logout): never served from here
    assert cache.last_known("gone") is None
    cache.listen(False)  # the feed is lost with the store: known for last_known_for seconds
    cache.listen(False)  # and the listener's retries do not forget it
    assert cache.last_known("k") == _kept_record() and cache.get("k") is None
    cache.last_known_for = 0.0
    assert cache.last_known("k") is None  # the feed has been away too long to vouch for it
    cache.last_known_for = 30.0
    cache.listen(True)  # back: start afresh
    assert cache.last_known("k") is None


def test_without_a_feed_ever_heard_nothing_is_kept() -> None:
    cache = ReadCache()
    cache.remember("k", _kept_record(), (cache.generation, 0))  # not listening: not kept
    cache.listen(False)
    assert cache.last_known("k") is None


def test_a_late_message_never_brings_back_an_older_copy() -> None:
    # This process wrote version 5 (or deleted the key at 5); the feed's message about
    # version 4 arrives after the reply: it is not kept, nor is a slow read of version 4.
    cache = ReadCache()
    cache.listen(True)
    cache.heard("k", replace(_kept_record(), version=4))
    cache.wrote("k", 5)
    assert cache.get("k") is None and cache.last_known("k") is None
    cache.heard("k", replace(_kept_record(), version=4))
    cache.remember("k", replace(_kept_record(), version=4), cache.begin("k"))
    assert cache.get("k") is None
    cache.heard("k", replace(_kept_record("new"), version=5))
    assert cache.get("k") == replace(_kept_record("new"), version=5)


async def test_the_memory_stores_ended_claims_are_let_go() -> None:
    """Each login claims its state; claims that ended are dropped, not kept up to the bound."""
    store = MemoryTokenStore()
    for n in range(1000):
        assert await store.claim(f"state:{n}", 0, f"owner{n}") is not None  # ends at once
    assert len(store._claims) <= 1  # what the process holds
    assert await store.claim("k", 60, "a") == "a"
    assert await store.claim("k", 60, "b") is None  # one that has not ended still holds


class _GatedStore(MemoryTokenStore):
    """No cache of its own (every read reaches it), reads held at a gate and counted."""

    def __init__(self) -> None:
        super().__init__()
        self.cache = None
        self.gate = asyncio.Event()
        self.started = asyncio.Event()  # set as each read starts
        self.reads = 0
        self.fail_next = False

    async def get(self, key: str) -> TokenRecord | None:
        self.reads += 1
        self.started.set()
        await self.gate.wait()
        if self.fail_next:
            self.fail_next = False
            self.gate.clear()
            raise StoreUnavailable()
        return await super().get(key)


async def _started(count: int, records: CachedRecords) -> list[asyncio.Task[TokenRecord | None]]:
    tasks = [asyncio.ensure_future(records.get("k")) for _ in range(count)]
    await asyncio.sleep(0)  # each task runs to its first wait before this one resumes
    return tasks


async def test_callers_asking_for_one_key_at_once_share_one_read() -> None:
    store = _GatedStore()
    stored = await store.put("k", _record())
    records = CachedRecords(store)
    waiting = await _started(100, records)
    assert store.reads == 1
    store.gate.set()
    assert await asyncio.gather(*waiting) == [stored] * 100
    # A caller after a write this process made reads anew, never the read from before it.
    store.gate.clear()
    before = await _started(5, records)
    newer = await records.put("k", _record("a2"))
    after = await _started(5, records)
    store.gate.set()
    assert store.reads == 3 and await asyncio.gather(*after) == [newer] * 5
    assert len(await asyncio.gather(*before)) == 5


async def test_a_shared_read_that_fails_or_is_cancelled_leaves_the_others_to_read_again() -> None:
    store = _GatedStore()
    stored = await store.put("k", _record())
    records = CachedRecords(store)
    first, *others = await _started(10, records)
    store.started.clear()
    first.cancel()  # the caller whose read the others share goes away
    await store.started.wait()  # one of the others reads again, which the rest share
    assert store.reads == 2
    store.gate.set()
    assert await asyncio.gather(*others) == [stored] * 9 and store.reads == 2
    store.gate.clear()
    store.fail_next = True  # the next read fails, and closes the gate behind it
    first, *others = await _started(10, records)
    store.started.clear()
    store.gate.set()
    with pytest.raises(StoreUnavailable):
        await first  # the error is its own caller's; the others read again, once
    await store.started.wait()
    assert store.reads == 4
    store.gate.set()
    assert await asyncio.gather(*others) == [stored] * 9 and store.reads == 4
