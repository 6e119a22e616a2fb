"""Issue 20, round 3 of hardening, the stores' part: passwords in reprs and errors, SQL
parameters in logs, the Redis change listener against messages it cannot read, SQLite files
other users can read, and what a public 503 page names."""

from __future__ import annotations

import inspect
import logging
import os
import re
import secrets
import sqlite3
import time
from pathlib import Path

import pytest
from cryptography.fernet import Fernet
from redis.asyncio.connection import SSLConnection

from quart_spotify_auth import ConfigurationError, StoreUnavailable, TokenRecord
from quart_spotify_auth.config import load_settings
from quart_spotify_auth.serving import free_port, serve
from quart_spotify_auth.stores.redis import RedisTokenStore
from quart_spotify_auth.stores.sql import SQLTokenStore
from quart_spotify_auth.testing import FakeSpotify

from .apps import make_app
from .conftest import Browser, FeedLosses
from .servers import RedisServer, until

SECRET = "s3cr3t"

#: Passwords as users write them: in the authority (with characters a URL should have encoded)
#: and in the query, under every name redis-py passes on to its connections.
_REDIS_URLS = [
    f"redis://127.0.0.1:{{port}}/0?password={SECRET}",
    f"redis://:{SECRET}@127.0.0.1:{{port}}/0",
    f"redis://user:{SECRET}/x@127.0.0.1:{{port}}/0",
    f"redis://user:{SECRET}?x@127.0.0.1:{{port}}/0",
    f"redis://user:{SECRET}#x@127.0.0.1:{{port}}/0",
    f"redis://user:{SECRET}@x@127.0.0.1:{{port}}/0",
    pytest.param(
        f"rediss://127.0.0.1:{{port}}/0?ssl_password={SECRET}",
        marks=pytest.mark.skipif(
            "ssl_password" not in inspect.signature(SSLConnection.__init__).parameters,
            reason="this redis-py's SSL connections take no ssl_password",
        ),
    ),
    f"unix://:{SECRET}@/tmp/redis.sock?db=0",
]

#: SPOTIFY_TOKEN_STORE misspelt: each is refused, and the error shows no password.
_MISSPELT = [
    f"redis//:{SECRET}@host",
    f"redis//:{SECRET}/x@host:6379/0",
    f"redis//user:{SECRET}?x@host/0",
    f"redis:/user:{SECRET}#x@host",
    f"redis//host/0?ssl_password={SECRET}",
    f"redis//host/0?password={SECRET}",
    f"postgres//u:{SECRET}@db/app",
    f"postgresql:/u:{SECRET}/x@db/app",
]


def _record() -> TokenRecord:
    return TokenRecord("a", "r", 4_000_000_000.0, 1_000_000_000.0, frozenset(), 1_000_000_000.0)


@pytest.mark.parametrize("url", _MISSPELT)
def test_a_misspelt_store_url_is_refused_without_its_password(url: str) -> None:
    with pytest.raises(ConfigurationError, match="SPOTIFY_TOKEN_STORE") as info:
        load_settings({"SPOTIFY_CLIENT_ID": "c", "SPOTIFY_TOKEN_STORE": url})
    assert SECRET not in str(info.value) and "***" in str(info.value)


@pytest.mark.parametrize("template", _REDIS_URLS)
async def test_the_redis_store_never_shows_a_password(
    template: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Its repr, where it says it is, its log line when Redis is out of reach and the 503 of
    every call, over a real connection to a port nothing listens on."""
    try:
        store = RedisTokenStore(template.format(port=free_port()), timeout=0.5)
    except ConfigurationError as exc:  # a password redis-py would read as the port
        assert SECRET not in str(exc) and "URL-encode its password" in str(exc)
        return
    shown = [repr(store), store.where]
    caplog.set_level(logging.DEBUG)
    try:
        await store.open()
        await store._reachable()  # the probe open started, awaited here
        for call in (store.get("k"), store.put("k", _record()), store.delete("k")):
            with pytest.raises(StoreUnavailable) as info:
                await call
            shown += [str(info.value), repr(info.value)]
    finally:
        await store.close()
    shown += [record.getMessage() for record in caplog.records]
    assert "***" in store.where
    assert not [text for text in shown if SECRET in text]


@pytest.mark.parametrize(
    "url",
    [
        f"postgresql://u:{SECRET}@127.0.0.1:{{port}}/app",
        f"postgresql://u:{SECRET}/x@127.0.0.1:{{port}}/app",
        f"postgresql://u@127.0.0.1:{{port}}/app?password={SECRET}",
    ],
)
async def test_the_sql_store_never_shows_a_password(
    url: str, caplog: pytest.LogCaptureFixture
) -> None:
    pytest.importorskip("asyncpg")
    store = SQLTokenStore(url.format(port=free_port()))
    shown = [repr(store)]
    caplog.set_level(logging.DEBUG)
    try:
        await store.open()  # logged: out of reach
        with pytest.raises(StoreUnavailable) as info:
            await store.get("k")
        shown += [str(info.value), repr(info.value), repr(store.engine)]
    finally:
        await store.close()
    shown += [record.getMessage() for record in caplog.records]
    assert not [text for text in shown if SECRET in text]


def test_a_sqlite_store_of_memory_says_why_without_more() -> None:
    with pytest.raises(ConfigurationError, match=re.escape(":memory:")):
        SQLTokenStore("sqlite:///:memory:")


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
async def test_sql_logging_never_shows_a_token(
    kind: str, request: pytest.FixtureRequest, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """SQLAlchemy's engine logging at INFO, records in clear: the engines the store makes
    hide their parameters."""
    if kind == "postgresql":
        url = request.getfixturevalue("pg_server").url
    else:
        url = f"sqlite:///{tmp_path}/tokens.sqlite3"
    store = SQLTokenStore(url, prefix=f"t{secrets.token_hex(4)}_")
    token = "AQD" + secrets.token_urlsafe(60)
    caplog.set_level(logging.INFO, logger="sqlalchemy.engine")
    try:
        await store.open()
        now = time.time()
        await store.put("k", TokenRecord(token, token, now + 3600, now, frozenset(), now))
        assert (await store.get("k") or _record()).access_token == token
    finally:
        await store.close()
    logged = "\n".join(record.getMessage() for record in caplog.records)
    assert "INSERT INTO" in logged  # it did log
    assert token[:20] not in logged


async def test_the_redis_listener_keeps_listening_through_messages_it_cannot_read(
    redis_server: RedisServer,
    redis_prefix: str,
    caplog: pytest.LogCaptureFixture,
    feed_losses: FeedLosses,
) -> None:
    """A malformed message on ``<prefix>written`` and a record encrypted with a key this
    process lacks (a rolling key rotation) are counted and logged, content unshown; the
    feed stays up and the next readable write lands in the cache."""
    old, new = Fernet.generate_key(), Fernet.generate_key()
    listener = RedisTokenStore(redis_server.url, prefix=redis_prefix, encryption_keys=[old])
    rotated = RedisTokenStore(redis_server.url, prefix=redis_prefix, encryption_keys=[new, old])
    writer = RedisTokenStore(redis_server.url, prefix=redis_prefix, encryption_keys=[old])
    lost = feed_losses(listener.cache)
    caplog.set_level(logging.DEBUG)
    now = time.time()
    token = "AQD" + secrets.token_urlsafe(40)
    record = TokenRecord(token, token, now + 3600, now, frozenset(), now)
    await listener.open()
    try:
        await until(lambda: listener.cache.listening, "the listener never subscribed")
        await listener.redis.publish(f"{redis_prefix}written", b"\x00garbage")
        await listener.redis.publish(f"{redis_prefix}written", b"\x00" + token.encode() + b"\xff")
        await rotated.put("k", record)  # the new key first: this process cannot read it
        await until(lambda: listener.unreadable == 3, "not every unreadable message counted")
        await writer.put("j", record)  # another process's write, in the listener's key
        await until(lambda: listener.cache.get("j") is not None, "the feed went deaf")
        assert lost == [], "the listener dropped its feed"
    finally:
        await writer.close()
        await rotated.close()
        await listener.close()
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert any("Unreadable write" in text for text in warnings)
    assert not [text for text in warnings if token[:12] in text or "garbage" in text]


def _mode(path: Path) -> int:
    return path.stat().st_mode & 0o777


async def test_an_existing_world_readable_sqlite_file_is_made_private(tmp_path: Path) -> None:
    """The file, its -wal and its -shm (there while another process has it open), all 0644
    from an older install or a copy: each is 0600 once the store has opened."""
    database = tmp_path / "tokens.sqlite3"
    store = SQLTokenStore(f"sqlite:///{database}")
    await store.open()
    await store.put("k", _record())
    await store.close()
    other = sqlite3.connect(database)  # another process: the -wal and -shm stay
    try:
        other.execute("PRAGMA journal_mode=WAL")
        other.execute("SELECT count(*) FROM quart_spotify_auth_tokens").fetchall()
        files = [database, tmp_path / "tokens.sqlite3-wal", tmp_path / "tokens.sqlite3-shm"]
        for path in files:
            path.chmod(0o644)
        store = SQLTokenStore(f"sqlite:///{database}")
        await store.open()
        try:
            assert [_mode(path) for path in files] == [0o600] * 3
            assert await store.get("k") is None  # expired long ago: read, and none served
        finally:
            await store.close()
    finally:
        other.close()


async def test_a_world_readable_sqlite_file_that_cannot_be_made_private_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    database = tmp_path / "tokens.sqlite3"
    sqlite3.connect(database).close()
    database.chmod(0o644)

    def refused(*args: object, **kwargs: object) -> None:
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(os, "chmod", refused)
    store = SQLTokenStore(f"sqlite:///{database}")
    with pytest.raises(ConfigurationError, match=r"other users.*chmod 600") as info:
        await store.open()
    assert str(database) in str(info.value)


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
async def test_the_public_503_page_names_the_kind_of_problem_and_the_log_the_place(
    kind: str, fake: FakeSpotify, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A logged-in browser comes back to an app whose database is damaged (SQLite) or down
    (PostgreSQL): the page says which kind of problem, never the server path nor the host and
    port; the log says where."""
    if kind == "sqlite":
        place = str(tmp_path / "instance-data")
        (tmp_path / "instance-data").mkdir()
        database = tmp_path / "instance-data" / "tokens.sqlite3"
        database.write_bytes(b"this is not a database " * 200)
        url, kind_shown, hidden = f"sqlite:///{database}", "not a SQLite database", [place]
    else:
        pytest.importorskip("asyncpg")
        port = free_port()
        url, kind_shown = f"postgresql://u@127.0.0.1:{port}/tokens", "PostgreSQL"
        place, hidden = f"127.0.0.1:{port}", ["127.0.0.1", str(port)]
    caplog.set_level(logging.INFO)
    async with serve(fake) as fake_url:
        first, second = free_port(), free_port()
        working, _ = make_app(
            accounts_url=fake_url, redirect_uri=f"http://127.0.0.1:{first}/callback/"
        )
        broken, _ = make_app(
            accounts_url=fake_url,
            redirect_uri=f"http://127.0.0.1:{second}/callback/",
            store_url=url,
        )
        async with (
            serve(working, port=first) as working_url,
            serve(broken, port=second) as broken_url,
            Browser(working_url, fake_url) as browser,
        ):
            assert (await browser.login()).status_code == 302
            page = await browser.http.get(broken_url + "/me")  # the same cookie: a login id
    assert page.status_code == 503
    assert kind_shown in page.text
    assert not [text for text in hidden if text in page.text], page.text
    assert place in caplog.text
