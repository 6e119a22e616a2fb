"""The TokenStore contract. Every store implementation must pass these."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace

import pytest

from quart_spotify_auth import MemoryTokenStore, TokenRecord, TokenStore
from quart_spotify_auth.testing import FakeClock
from quart_spotify_auth.tokens import PendingLogin


@pytest.fixture(name="clock")
def _clock() -> FakeClock:
    return FakeClock(0)


@pytest.fixture(name="store", params=["memory"])
async def _store(request: pytest.FixtureRequest, clock: FakeClock) -> AsyncIterator[TokenStore]:
    store = MemoryTokenStore(clock=clock)
    await store.open()
    yield store
    await store.close()


def _record(access: str = "a1", refresh: str | None = "r1") -> TokenRecord:
    return TokenRecord(access, refresh, 3600.0, 0.0, frozenset({"streaming"}), 0.0)


async def test_put_get_delete(store: TokenStore) -> None:
    assert await store.get("k") is None
    stored = await store.put("k", _record())
    assert stored.version == 1
    assert await store.get("k") == stored
    assert await store.delete("k")
    assert await store.get("k") is None
    assert not await store.delete("k")


async def test_put_always_moves_the_version_forward(store: TokenStore) -> None:
    first = await store.put("k", _record())
    second = await store.put("k", replace(_record("a2"), version=1))
    assert second.version == first.version + 1


async def test_replace_only_from_the_current_version(store: TokenStore) -> None:
    old = await store.put("k", _record())
    new = old.renewed(_record("a2", None))
    assert await store.replace("k", old, new)
    current = await store.get("k")
    assert current is not None
    assert (current.access_token, current.refresh_token, current.version) == ("a2", "r1", 2)
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


async def test_pending_is_single_use_and_expires(store: TokenStore, clock: FakeClock) -> None:
    pending = PendingLogin("verifier", "http://127.0.0.1:5000/callback/", 0.0)
    await store.add_pending("s1", pending, ttl=600)
    await store.add_pending("s2", pending, ttl=600)
    assert await store.pop_pending("s1") == pending
    assert await store.pop_pending("s1") is None
    clock.advance(601)
    assert await store.pop_pending("s2") is None
    assert await store.pop_pending("never") is None


async def test_expired_pending_logins_are_swept(clock: FakeClock) -> None:
    store = MemoryTokenStore(clock=clock)
    pending = PendingLogin(None, "http://127.0.0.1:5000/callback/", 0.0)
    for i in range(100):
        await store.add_pending(f"s{i}", pending, ttl=10)
    clock.advance(11)
    await store.add_pending("new", pending, ttl=10)
    assert "100 records" not in repr(store)
    assert repr(store) == "MemoryTokenStore(0 records, 1 pending)"


def test_record_repr_hides_tokens() -> None:
    record = _record("access-secret", "refresh-secret")
    assert "secret" not in repr(record)
    assert "secret" not in repr(record.to_access_token(0.0))
