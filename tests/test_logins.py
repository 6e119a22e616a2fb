"""Logins as a whole: every store lists what it holds and takes logins in from another as they
are stored (versions, schedules, encrypted blobs), over no newer version."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from cryptography.fernet import Fernet

from quart_spotify_auth import MemoryTokenStore, TokenRecord, TokenStore
from quart_spotify_auth.logins import Login, logins, move
from quart_spotify_auth.stores.base import Stored
from quart_spotify_auth.stores.redis import RedisTokenStore
from quart_spotify_auth.stores.sql import SQLTokenStore

from .servers import PostgreSQLServer, RedisServer

KINDS = ["memory", "redis", "sqlite", "postgresql"]
Opener = Callable[..., TokenStore]


@pytest.fixture(name="open_store")
async def _open_store(
    request: pytest.FixtureRequest, redis_prefix: str, sql_prefix: str, tmp_path: Path
) -> AsyncIterator[Opener]:
    """Opens stores of each kind, each with a prefix (or file) of its own; closes them."""
    opened: list[TokenStore] = []

    def open_store(kind: str, name: str = "a", **options: Any) -> TokenStore:
        store: TokenStore
        if kind == "memory":
            store = MemoryTokenStore()
        elif kind == "redis":
            server: RedisServer = request.getfixturevalue("redis_server")
            store = RedisTokenStore(server.url, prefix=f"{redis_prefix}{name}:", **options)
        elif kind == "sqlite":
            store = SQLTokenStore(f"sqlite:///{tmp_path}/{name}.sqlite3", **options)
        else:
            pg: PostgreSQLServer = request.getfixturevalue("pg_server")
            store = SQLTokenStore(pg.url, prefix=f"{sql_prefix}{name}", **options)
        opened.append(store)
        return store

    yield open_store
    for store in opened:
        await store.close()


def _record(access: str, consented: float | None = None) -> TokenRecord:
    now = time.time()
    scopes = frozenset({"streaming", "user-read-email"})
    return TokenRecord(access, "r-" + access, now + 3600, now, scopes, consented or now)


async def _all(store: TokenStore, page: int = 500) -> dict[str, Stored]:
    return {row.key: row async for rows in store.stored(page) for row in rows}


@pytest.mark.parametrize("kind", KINDS)
async def test_a_store_lists_every_live_login_with_its_schedule_and_use(
    kind: str, open_store: Opener
) -> None:
    store = open_store(kind)
    await store.open()
    now = time.time()
    for n in range(5):
        await store.put(f"user:{n}", _record(f"a{n}"), due=now + 100 + n, used=now - n)
    await store.delete("user:3")
    for page in (1, 2, 500):  # however it is paged, each login once
        found = await _all(store, page)
        assert sorted(found) == ["user:0", "user:1", "user:2", "user:4"]
    row = found["user:4"]
    assert row.record is not None and row.record == await store.get("user:4")
    assert row.version == row.record.version
    assert row.due == pytest.approx(now + 104) and row.used == pytest.approx(now - 4)
    assert row.blob and b"r-a4" in row.blob  # as stored: in clear without keys


@pytest.mark.parametrize(
    ("source_kind", "target_kind"),
    [("sqlite", "postgresql"), ("sqlite", "redis"), ("redis", "sqlite"), ("memory", "sqlite")],
)
async def test_logins_move_as_they_are_and_a_second_move_copies_nothing(
    source_kind: str, target_kind: str, open_store: Opener
) -> None:
    source, target = open_store(source_kind, "source"), open_store(target_kind, "target")
    await source.open()
    await target.open()
    now = time.time()
    for n in range(7):  # several versions in: the copies keep theirs
        await source.put(f"user:{n}", _record(f"old{n}"), due=now + 500 + n, used=now - 60)
        await source.put(f"user:{n}", _record(f"a{n}"), due=now + 100 + n, used=now - 10 * n)
    moved = await move(source, target, dry_run=True)
    assert (moved.copied, moved.current) == (7, 0) and await target.get("user:0") is None
    moved = await move(source, target)
    assert (moved.copied, moved.current, moved.unreadable) == (7, 0, 0)
    copies, originals = await _all(target), await _all(source)
    assert sorted(copies) == sorted(originals)
    for key, original in originals.items():
        copy = copies[key]
        assert copy.version == original.version and copy.record == original.record
        assert (copy.due, copy.used) == pytest.approx((original.due, original.used))
    assert (await move(source, target)).copied == 0  # idempotent
    # The target renews them when the source would have (its schedule is theirs).
    due = await target.due(now + 103.5, 100)
    assert [entry.key for entry in due.entries] == ["user:0", "user:1", "user:2", "user:3"]
    # A login made on the target since is newer: a later move leaves it alone...
    newer = await target.put("user:5", _record("fresh"))
    assert newer.version > originals["user:5"].version  # versions go on above the copies'
    assert (await move(source, target)).copied == 0
    assert (await target.get("user:5")) == newer
    # ...and a login renewed on the source since is copied over the older copy.
    current = originals["user:6"].record
    assert current is not None
    renewed = await source.replace("user:6", current, current.renewed(_record("renewed")))
    assert renewed is not None
    assert (await move(source, target)).copied == 1
    assert (await target.get("user:6")) == renewed


@pytest.mark.parametrize("target_kind", ["postgresql", "redis"])
async def test_encrypted_logins_move_still_encrypted_and_bound_to_their_keys(
    target_kind: str, open_store: Opener
) -> None:
    keys = [Fernet.generate_key().decode()]
    source = open_store("sqlite", "source", encryption_keys=keys)
    target = open_store(target_kind, "target", encryption_keys=keys)
    await source.open()
    await target.open()
    await source.put("user:ada", _record("secret-access"))
    assert (await move(source, target)).copied == 1
    copy, original = (await _all(target))["user:ada"], (await _all(source))["user:ada"]
    assert copy.blob == original.blob and b"secret-access" not in copy.blob  # as it was
    assert (await target.get("user:ada")) == await source.get("user:ada")
    # Bound to its key: the same blob under another key is refused, moved or not.
    moved_away = copy._replace(key="user:mallory")
    await target.adopt([moved_away._replace(record=None)])  # unreadable rows are not taken
    assert await target.get("user:mallory") is None


async def test_logins_that_cannot_be_read_stay_behind_and_are_counted(
    open_store: Opener,
) -> None:
    source = open_store("sqlite", "source", encryption_keys=[Fernet.generate_key().decode()])
    await source.open()
    await source.put("user:ada", _record("a"))
    await source.close()
    other_keys = [Fernet.generate_key().decode()]  # the keys were changed, the old one lost
    source, target = (
        open_store("sqlite", "source", encryption_keys=other_keys),
        open_store("sqlite", "target"),
    )
    await source.open()
    await target.open()
    moved = await move(source, target)
    assert (moved.copied, moved.unreadable) == (0, 1)
    assert [login.readable async for login in logins(source)] == [False]


async def test_the_admin_view_names_the_user_and_never_a_token(open_store: Opener) -> None:
    store = open_store("sqlite")
    await store.open()
    consented = time.time() - 86400
    await store.put("user:ada", _record("tok-ada", consented), used=consented + 60)
    await store.put("browser:Zx9", _record("tok-browser"))
    await store.put("user!edb3ad", _record("tok-odd"))  # an id that was not text: its bytes, hex
    await store.put("app:client-credentials", _record("tok-app"))  # the app's own: not a login
    found = {login.key: login async for login in logins(store)}
    assert sorted(found) == ["browser:Zx9", "user!edb3ad", "user:ada"]
    ada = found["user:ada"]
    assert (ada.user_id, ada.authorized_at, ada.last_used) == ("ada", consented, consented + 60)
    assert ada.scopes == {"streaming", "user-read-email"} and ada.readable
    assert found["browser:Zx9"].user_id is None and found["user!edb3ad"].user_id == "\udced"
    shown = repr(list(found.values())) + repr([login.as_dict() for login in found.values()])
    assert "tok-" not in shown and "r-tok" not in shown
    assert set(Login.__dataclass_fields__) >= {"key", "user_id", "scopes", "last_used"}
