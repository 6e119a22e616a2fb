"""Logins that outlive the process: the default store (SQLite in the instance folder) across a
SIGKILL and many workers, PostgreSQL across a restart, and what a broken database gives."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing
import os
import shutil
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Connection, create_engine
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import QueuePool

from benchmarks.servers import Server
from quart_spotify_auth import ConfigurationError, StoreUnavailable, TokenRecord
from quart_spotify_auth.__main__ import main
from quart_spotify_auth.config import load_settings
from quart_spotify_auth.serving import free_port, serve
from quart_spotify_auth.stores.sql import SQLTokenStore
from quart_spotify_auth.stores.sqldirect import CHECKPOINT_EVERY, DirectSQLite
from quart_spotify_auth.testing import FakeSpotify, log_in

from ._httplib import httpx
from .apps import make_app
from .conftest import Browser
from .servers import PostgreSQLServer, until


def _app(fake_url: str, workers: int, **env: str) -> Server:
    """``hypercorn --workers N tests.served_app:app`` on a port of its own."""
    port = free_port()
    env = {"TEST_FAKE_URL": fake_url, "TEST_PORT": str(port), **env}
    return Server("tests.served_app:app", env=env, workers=workers, port=port)


@contextlib.asynccontextmanager
async def served(
    fake: FakeSpotify, workers: int = 1, **env: str
) -> AsyncIterator[tuple[Server, str]]:
    async with serve(fake) as fake_url, _app(fake_url, workers, **env) as app:
        yield app, fake_url


async def test_a_sigkill_while_renewals_are_in_flight_loses_no_login(
    fake: FakeSpotify, tmp_path: Path
) -> None:
    fake.rotate_confidential = True  # each refresh retires the refresh token it used
    fake.access_ttl = 4  # renewed from 2 s on
    async with served(fake, TEST_INSTANCE=str(tmp_path)) as (app, fake_url):
        browsers = [Browser(app.url, fake_url) for _ in range(5)]
        users = ["alice", "bob", "alice", "bob", "alice"]
        for browser, user in zip(browsers, users, strict=True):
            assert (await browser.login(user)).status_code == 302
        fake.slow = 3.0  # renewals wait at Spotify...
        await until(lambda: fake._in_flight["token"] >= 3)
        await app.kill()  # ...when the app dies
        assert (tmp_path / "quart_spotify_auth.sqlite3").exists()
        fake.slow = 0
        await app.start()
        for browser in browsers:  # the old connections died with the app; the cookies did not
            cookies = browser.http.cookies
            await browser.http.aclose()
            browser.http = httpx.AsyncClient(cookies=cookies, follow_redirects=False, timeout=30)
        for browser, user in zip(browsers, users, strict=True):
            reply = await browser.http.get(app.url + "/me")
            assert reply.status_code == 200 and reply.json()["id"] == user
        before = fake.requests["token:refresh_token"]
        await until(lambda: fake.requests["token:refresh_token"] >= before + 10)  # renewals go on
        for browser in browsers:
            assert (await browser.http.get(app.url + "/token")).status_code == 200
            await browser.http.aclose()
    assert fake.requests["refused:invalid_grant"] == 0  # no refresh token reused or lost


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
async def test_every_login_completes_across_workers_with_a_new_connection_each_time(
    fake: FakeSpotify, kind: str, tmp_path: Path, request: pytest.FixtureRequest, sql_prefix: str
) -> None:
    env, workers = {"TEST_INSTANCE": str(tmp_path)}, 4  # the default store: nothing set
    pg: PostgreSQLServer | None = None
    if kind == "postgresql":
        pg = request.getfixturevalue("pg_server")
        env, workers = {"TEST_STORE": pg.url, "TEST_PREFIX": sql_prefix}, 3
    async with served(fake, workers, **env) as (app, fake_url):
        limits = httpx.Limits(max_keepalive_connections=0)  # a new connection per request
        for i in range(10):
            if pg is not None and i == 5:  # PostgreSQL restarts mid-run
                pg.stop()
                pg.start()
            async with httpx.AsyncClient(limits=limits, timeout=30) as http:
                authorize = (await http.get(app.url + "/login")).headers["location"]
                query = dict(httpx.URL(authorize).params)
                consent = await http.post(fake_url + "/authorize", data={**query, "user": "bob"})
                done = await http.get(consent.headers["location"])
                assert done.status_code == 302, done.text
                assert (await http.get(app.url + "/me")).json()["id"] == "bob"


async def test_the_default_store_is_a_private_file_in_the_instance_folder(
    fake: FakeSpotify, tmp_path: Path
) -> None:
    instance = tmp_path / "instance"
    app, spotify = make_app(
        transport=httpx.ASGITransport(app=fake), store_url=None, instance_path=str(instance)
    )
    store = spotify.core(app).store
    assert isinstance(store, SQLTokenStore) and store.dialect == "sqlite"
    async with app.test_app():
        await log_in(app.test_client(), fake)
    database = instance / "quart_spotify_auth.sqlite3"
    assert instance.stat().st_mode & 0o777 == 0o700
    assert database.stat().st_mode & 0o777 == 0o600
    with contextlib.closing(sqlite3.connect(database)) as connection:
        mode = connection.execute("PRAGMA journal_mode").fetchone()[0]
    assert mode == "wal"


def _record() -> TokenRecord:
    return TokenRecord("a", "r", 4_000_000_000.0, 1_000_000_000.0, frozenset(), 1_000_000_000.0)


def _busy_timeout(connection: Connection) -> int:
    return int(connection.exec_driver_sql("PRAGMA busy_timeout").scalar_one())


def _fresh() -> TokenRecord:
    """A login given consent now (a store reads no login past its six months)."""
    now = time.time()
    return TokenRecord("a", "r", now + 3600, now, frozenset(), now)


async def test_a_corrupt_file_is_a_clean_503_and_is_never_replaced(tmp_path: Path) -> None:
    database = tmp_path / "tokens.sqlite3"
    database.write_bytes(b"this is not a database " * 200)
    before = database.read_bytes()
    store = SQLTokenStore(f"sqlite:///{database}")
    await store.open()  # the app still starts: its requests get the 503
    with pytest.raises(StoreUnavailable, match="not a SQLite database") as info:
        await store.get("k")
    assert info.value.code == 503 and "never replaced" in info.value.description
    with pytest.raises(StoreUnavailable):
        await store.put("k", _record())
    await store.close()
    assert database.read_bytes() == before


async def test_a_connection_to_a_corrupt_file_is_closed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Setting up a connection to a file that is no database fails; the connection is closed,
    not left to the garbage collector (SQLAlchemy before 2.1 leaves it: one per request)."""
    database = tmp_path / "tokens.sqlite3"
    database.write_bytes(b"this is not a database " * 200)
    opened: list[sqlite3.Connection] = []
    connect = sqlite3.dbapi2.connect  # what SQLAlchemy's pysqlite dialect calls

    def recorded(*args: Any, **kwargs: Any) -> sqlite3.Connection:
        opened.append(connect(*args, **kwargs))
        return opened[-1]

    monkeypatch.setattr(sqlite3.dbapi2, "connect", recorded)
    store = SQLTokenStore(f"sqlite:///{database}")
    await store.open()
    with pytest.raises(StoreUnavailable):
        await store.get("k")
    await store.close()
    assert opened
    for connection in opened:
        with pytest.raises(sqlite3.ProgrammingError, match="closed"):
            connection.execute("SELECT 1")


async def test_a_file_locked_too_long_is_a_503_and_works_when_released(tmp_path: Path) -> None:
    database = tmp_path / "tokens.sqlite3"
    store = SQLTokenStore(f"sqlite:///{database}", busy_timeout=0.2)
    await store.open()
    holder = sqlite3.connect(database, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")  # another process holds the write lock
    try:
        with pytest.raises(StoreUnavailable, match="locked"):
            await store.put("k", _record())
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert (await store.put("k", _record())).version == 1
    await store.close()


async def test_a_call_waits_for_another_processs_lock_without_holding_up_the_loop(
    tmp_path: Path,
) -> None:
    """The store's one-row calls run on the event loop's thread while the file is free; one
    that finds another process's write lock waits for it on a store thread, and the loop
    serves other calls meanwhile. Were it to wait on the loop, the read below would come only
    after the 30 s busy timeout, far past its own deadline."""
    database = tmp_path / "tokens.sqlite3"
    store = SQLTokenStore(f"sqlite:///{database}", busy_timeout=30, cache_ttl=0)
    # The first calls at once open the loop's connection once: none that never waits may go
    # back to the pool, where the store's threads (which must wait) would take it.
    assert await asyncio.gather(*(store.get(f"k{i}") for i in range(8))) == [None] * 8
    waits = await asyncio.gather(
        *(store.transaction(_busy_timeout, write=False) for _ in range(12))
    )  # every connection the pool hands the threads
    assert waits == [30_000] * 12
    first = await store.put("other", _fresh())
    holder = sqlite3.connect(database, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")  # another process holds the write lock
    try:
        writing = asyncio.create_task(store.put("k", _fresh()))
        claiming = asyncio.create_task(store.claim("state:x", 60, "me"))
        loop = asyncio.get_running_loop()
        began = loop.time()
        assert await store.get("other") == first  # the tasks above run their first steps
        assert loop.time() - began < 10  # not held up for the busy timeout (30 s)
        assert not writing.done() and not claiming.done()
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert (await writing).version == first.version + 1
    assert await claiming is not None
    assert await store.get("k") == await writing
    await store.close()


async def test_a_write_is_made_whole_or_cancelled_unmade(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With nothing of this process on the lock, a write runs at once, with no await, so a
    caller cancelled after it began still finds it made and reported; one that waits its turn
    (a checkpoint copying, as every CHECKPOINT_EVERY writes) waits before its statement, so
    a caller cancelled there gets CancelledError and nothing was written (not a login saved
    behind its back)."""
    copied = threading.Event()  # the checkpoint copies until the test lets it end
    checkpoint = DirectSQLite.checkpoint
    monkeypatch.setattr(DirectSQLite, "checkpoint", lambda d: (copied.wait(30), checkpoint(d)))
    store = SQLTokenStore(f"sqlite:///{tmp_path}/tokens.sqlite3", cache_ttl=0)
    await store.put("warm", _fresh())  # the loop's connection is open
    at_once = asyncio.create_task(store.put("now", _fresh()))
    await asyncio.sleep(0)  # the task runs until its first await: there is none
    at_once.cancel()
    assert (await at_once).version > 0 and await store.get("now") is not None
    runner = store._runner
    for i in range(2 * CHECKPOINT_EVERY):  # until a checkpoint is copying
        await store.put(f"browser:{i}", _fresh())
        if runner.checkpoint_pending():
            break
    assert runner.checkpoint_pending()
    waiting = asyncio.create_task(store.put("k", _fresh()))
    await asyncio.sleep(0)  # the write waits for the checkpoint
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    copied.set()
    assert await store.get("k") is None
    assert await store.get("warm") is not None
    await store.close()


def _use_unopened(store: SQLTokenStore, parent: int, out: multiprocessing.Queue[object]) -> None:
    try:

        async def use() -> tuple[bool, bool]:
            found = await store.get("k")
            await store.put("from-child", _fresh())
            return found is not None, id(store._runner) != parent

        out.put(asyncio.run(use()))
    except BaseException as exc:  # report anything to the parent
        out.put(repr(exc))


def test_a_forked_child_that_skips_open_uses_connections_of_its_own(tmp_path: Path) -> None:
    """A worker forked after its parent used the store (gunicorn --preload), calling it
    without open(): its first call starts afresh, never on the parent's SQLite connections
    (SQLite forbids using one across a fork), and each process sees the other's writes."""
    store = SQLTokenStore(f"sqlite:///{tmp_path}/tokens.sqlite3", cache_ttl=0)
    asyncio.run(store.put("k", _fresh()))  # the parent's inline connection is open
    context = multiprocessing.get_context("fork")
    out: multiprocessing.Queue[object] = context.Queue()
    child = context.Process(target=_use_unopened, args=(store, id(store._runner), out))
    child.start()
    result = out.get(timeout=60)
    child.join(60)
    assert child.exitcode == 0 and result == (True, True), result
    assert asyncio.run(store.get("from-child")) is not None  # the parent's connection is sound
    asyncio.run(store.close())


def test_a_loop_thread_that_ends_gives_its_connection_back(tmp_path: Path) -> None:
    """Sync code may call the store from short-lived threads, each with its own loop
    (``asyncio.run``): each thread's own connection closes with it, so the pool (5 and 10
    more) is never spent, which would make every later call wait 30 s and fail."""
    store = SQLTokenStore(f"sqlite:///{tmp_path}/tokens.sqlite3", cache_ttl=0)
    asyncio.run(store.put("k", _fresh()))
    found: list[TokenRecord | None] = []
    for _ in range(20):
        worker = threading.Thread(target=lambda: found.append(asyncio.run(store.get("k"))))
        worker.start()
        worker.join(60)
    assert len(found) == 20 and all(record is not None for record in found)
    pool = store.engine.pool
    assert isinstance(pool, QueuePool)
    assert pool.checkedout() <= 2, pool.status()  # this thread's own, and a store thread's
    asyncio.run(store.close())


async def test_writes_on_the_loop_keep_the_write_ahead_log_from_growing(tmp_path: Path) -> None:
    """Inline connections never checkpoint themselves (it would stall the loop); the store
    checkpoints on a thread every CHECKPOINT_EVERY writes, so the log is used again instead of
    growing by about five pages a write."""
    database = tmp_path / "tokens.sqlite3"
    store = SQLTokenStore(f"sqlite:///{database}", cache_ttl=0)
    sizes = []
    for i in range(8 * CHECKPOINT_EVERY):
        await store.put(f"browser:{i}", _fresh(), due=3e9, used=1e9)
        if (i + 1) % CHECKPOINT_EVERY == 0:
            sizes.append(Path(f"{database}-wal").stat().st_size)
    await store.close()
    assert sizes[-1] < 2 * sizes[0], sizes  # without checkpoints: 8 times
    reopened = SQLTokenStore(f"sqlite:///{database}")
    assert await reopened.get(f"browser:{8 * CHECKPOINT_EVERY - 1}") is not None
    assert await reopened.get("browser:0") is not None
    await reopened.close()


def test_a_store_used_by_one_loop_after_another_keeps_checkpointing(tmp_path: Path) -> None:
    """A store may serve one event loop after another (a script's asyncio.run per task, a
    loop thread started again): each loop's writers take turns on a lock of their own, so
    the checkpoints go on in the next loop and the log stays bounded. Before, the lock stayed
    bound to the first loop that waited on it, and every later checkpoint failed."""
    database = tmp_path / "tokens.sqlite3"
    store = SQLTokenStore(f"sqlite:///{database}", cache_ttl=0)

    async def write(first: int, count: int) -> list[int]:
        sizes = []
        for i in range(first, first + count):
            await store.put(f"browser:{i}", _fresh(), due=3e9, used=1e9)
            if (i + 1) % CHECKPOINT_EVERY == 0:
                sizes.append(Path(f"{database}-wal").stat().st_size)
        return sizes

    asyncio.run(write(0, 2 * CHECKPOINT_EVERY))  # a checkpoint waited on this loop's lock
    sizes = asyncio.run(write(10 * CHECKPOINT_EVERY, 8 * CHECKPOINT_EVERY))
    asyncio.run(store.close())
    assert sizes[-1] < 2 * sizes[0], sizes  # without checkpoints: 8 times


def test_a_store_written_in_a_loop_per_call_keeps_checkpointing(tmp_path: Path) -> None:
    """Sync code may write through ``asyncio.run`` per call: a checkpoint's copy on a store
    thread outlives the loop that started it, and the writes of the next loops wait for it
    (else they never let it catch up). Before, they went on beside it and the log grew by
    every write until the last connection closed: 35 MB after 1,600 writes, against 5.6."""
    database = tmp_path / "tokens.sqlite3"
    store = SQLTokenStore(f"sqlite:///{database}", cache_ttl=0)
    sizes = []
    for i in range(8 * CHECKPOINT_EVERY):
        asyncio.run(store.put(f"browser:{i}", _fresh(), due=3e9, used=1e9))
        if (i + 1) % (2 * CHECKPOINT_EVERY) == 0:
            sizes.append(Path(f"{database}-wal").stat().st_size)
    asyncio.run(store.close())
    assert sizes[-1] < 2 * sizes[0], sizes  # without checkpoints: 4 times


def test_a_checkpoint_that_fails_is_no_writers_failure(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A write on the next loop waits for the last loop's checkpoint copy; that copy failing
    (the file locked, away) is logged, and the write goes on. Before, the write raised the
    copy's error: a 503, and a login lost."""
    copying, release = threading.Event(), threading.Event()

    def failing(self: DirectSQLite) -> None:
        self.writes = 0
        copying.set()
        release.wait(30)  # still copying when the next loop's write comes
        raise sqlite3.OperationalError("disk I/O error")

    monkeypatch.setattr(DirectSQLite, "checkpoint", failing)
    store = SQLTokenStore(f"sqlite:///{tmp_path}/tokens.sqlite3", cache_ttl=0)

    async def until_a_checkpoint_copies() -> None:
        for i in range(CHECKPOINT_EVERY):
            await store.put(f"browser:{i}", _fresh())
        await asyncio.to_thread(copying.wait, 30)  # the copy has begun; this loop ends

    async def next_loop_write() -> TokenRecord:
        writing = asyncio.create_task(store.put("next-loop", _fresh()))
        await asyncio.sleep(0)
        assert not writing.done()  # it waits for the copy
        release.set()  # which fails
        return await writing

    asyncio.run(until_a_checkpoint_copies())
    written = asyncio.run(next_loop_write())
    assert written.version > 0 and asyncio.run(store.get("next-loop")) == written
    asyncio.run(store.close())


def test_a_store_closed_and_used_on_another_loop_takes_a_burst_of_first_calls(
    tmp_path: Path,
) -> None:
    """A store's first calls wait for one creation of its tables, on a lock of the running
    loop's: a store closed and used again on another loop (a script's asyncio.run per task, a
    test framework's loop per test) takes a burst of first calls there too. Before, the lock
    stayed bound to the first loop that waited on it, and the second burst raised
    RuntimeError."""
    store = SQLTokenStore(f"sqlite:///{tmp_path}/tokens.sqlite3", cache_ttl=0)

    async def first_calls_at_once(put: bool) -> list[TokenRecord | None]:
        written = [await store.put("k", _fresh())] if put else []
        found = await asyncio.gather(*(store.get("k") for _ in range(8)))  # 7 wait on the lock
        await store.close()
        return written + found

    assert asyncio.run(first_calls_at_once(put=False)) == [None] * 8
    assert asyncio.run(first_calls_at_once(put=False)) == [None] * 8  # another loop
    written, *found = asyncio.run(first_calls_at_once(put=True))
    assert written is not None and found == [written] * 8


@contextlib.contextmanager
def _unwritable(*paths: Path) -> Iterator[None]:
    """Make ``paths`` unwritable, for root too (which ignores permissions, not chattr +i)."""
    root = os.geteuid() == 0
    if root and shutil.which("chattr") is None:
        pytest.skip("chattr is not available to make a file unwritable for root")
    for path in paths:
        if root:
            subprocess.run(["chattr", "+i", str(path)], check=True)
        else:
            path.chmod(0o555 if path.is_dir() else 0o444)
    try:
        yield
    finally:
        for path in paths:
            if root:
                subprocess.run(["chattr", "-i", str(path)], check=True)
            else:
                path.chmod(0o755 if path.is_dir() else 0o644)


async def test_an_unwritable_file_is_a_503_that_says_so_and_works_when_fixed(
    tmp_path: Path,
) -> None:
    folder = tmp_path / "data"
    database = folder / "tokens.sqlite3"
    store = SQLTokenStore(f"sqlite:///{database}")
    await store.open()  # the tables are there
    await store.close()  # and nothing is open: the next write opens the file afresh
    with _unwritable(database, folder):
        with pytest.raises(StoreUnavailable, match="cannot be written") as info:
            await store.put("k", _record())
        assert "permissions" in info.value.description
    assert (await store.put("k", _record())).version == 1  # fixed: nothing to restart
    await store.close()


@pytest.mark.parametrize("which", ["file", "folder"])
async def test_an_existing_file_that_cannot_be_written_is_said_at_start(
    tmp_path: Path, which: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Its tables are there, so nothing at start needed a write: still, the start says the
    file cannot be written, with the fix (not the first login, as a 503 to retry), and
    ``check`` says so; a read-only file can still be read (a copy listed or migrated from)."""
    from quart_spotify_auth.cli_check import _try_store

    folder = tmp_path / "data"
    database = folder / "tokens.sqlite3"
    url = f"sqlite:///{database}"
    store = SQLTokenStore(url)
    await store.open()
    now = time.time()
    await store.put("k", TokenRecord("a", "r", now + 3600, now, frozenset(), now))
    await store.close()
    settings = load_settings({"SPOTIFY_CLIENT_ID": "c", "SPOTIFY_TOKEN_STORE": url})
    with _unwritable(database if which == "file" else folder):
        with caplog.at_level(logging.ERROR, logger="quart_spotify_auth"):
            await store.open()
        assert "cannot be written" in caplog.text and "permissions" in caplog.text
        if which == "file":
            assert "can be read but not written" in caplog.text
            assert (await store.get("k")) is not None  # read-only: still read
        with pytest.raises(StoreUnavailable, match="cannot be written"):
            await store.put("k2", _record())
        await store.close()
        said = await asyncio.to_thread(_try_store, None, settings, None, 10.0)
        assert said is not None and "cannot be written" in said, said
    await store.open()  # fixed: it opens, and writes, with nothing restarted
    assert (await store.put("k2", _record())).version == 2
    assert store.unwritable is None
    await store.close()


async def test_tables_of_another_schema_version_say_what_to_run(tmp_path: Path) -> None:
    store = SQLTokenStore(f"sqlite:///{tmp_path}/tokens.sqlite3")
    await store.open()
    meta = store.schema.meta
    await store.transaction(
        lambda c: c.execute(meta.update().where(meta.c.name == "schema").values(value=0))
    )
    await store.close()
    with pytest.raises(ConfigurationError, match="python -m quart_spotify_auth schema"):
        await SQLTokenStore(f"sqlite:///{tmp_path}/tokens.sqlite3").open()


@pytest.mark.parametrize("kind", ["sync", "async"])
async def test_tokens_can_live_in_the_apps_own_database_keyed_by_its_users(
    fake: FakeSpotify, tmp_path: Path, kind: str
) -> None:
    # The app's engine, either kind: a sync one runs on the store's threads, an async one on
    # the loop.
    engine: Any = (
        create_async_engine(f"sqlite+aiosqlite:///{tmp_path}/app.sqlite3")
        if kind == "async"
        else create_engine(f"sqlite:///{tmp_path}/app.sqlite3")
    )
    store = SQLTokenStore(engine=engine)
    app, _ = make_app(
        transport=httpx.ASGITransport(app=fake), store=store, identity=lambda: "user-42"
    )
    async with app.test_app():
        await log_in(app.test_client(), fake, "bob", identity="user-42")
        assert (await app.test_client().get("/me")).status_code == 200
    # The app's engine: still open after the app stopped, the app's to close.
    if kind == "async":
        async with engine.connect() as connection:
            rows = (await connection.execute(store.schema.tokens.select())).all()
        await engine.dispose()
    else:
        with engine.connect() as connection:
            rows = connection.execute(store.schema.tokens.select()).all()
        engine.dispose()
    assert [row.key for row in rows] == ["user:user-42"]


def test_the_schema_command_prints_the_tables(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["schema", "--dialect", "sqlite", "--prefix", "spotify_"]) == 0
    out = capsys.readouterr().out
    assert "CREATE TABLE spotify_tokens" in out and "CREATE TABLE spotify_claims" in out
    assert "INSERT INTO spotify_meta (name, value) VALUES ('schema', 1);" in out
    with contextlib.closing(sqlite3.connect(":memory:")) as connection:
        connection.executescript(out)  # it runs as printed
        assert connection.execute("SELECT value FROM spotify_meta WHERE name = 'schema'").fetchone()


#: A user's app on the default store, in a Python where greenlet cannot be imported (the
#: default install has none: SQLAlchemy 2.1 then refuses to import its asyncio part).
WITHOUT_GREENLET = """
import asyncio, os, sys
sys.modules["greenlet"] = None  # an import of it now fails, as on a machine without it
httpx = __import__(os.environ.get("SPOTIFY_HTTP_LIBRARY") or "httpx")
from quart import Quart
from quart_spotify_auth import SpotifyAuth
from quart_spotify_auth.testing import log_in, make_fake

async def main():
    fake = make_fake()
    app = Quart("app", instance_path=sys.argv[1])
    app.config.update({**fake.app_config("https://fake.invalid"), "SECRET_KEY": "x" * 32})
    del app.config["SPOTIFY_TOKEN_STORE"]  # the default: SQLite in the instance folder
    spotify = SpotifyAuth(app, transport=httpx.ASGITransport(app=fake))

    @app.route("/token")
    async def token():
        return (await spotify.get_access_token()).access_token

    async with app.test_app():
        client = app.test_client()
        await log_in(client, fake, "alice")
        print((await client.get("/token")).status_code, type(spotify.core(app).store).__name__)

asyncio.run(main())
"""


def test_the_default_store_works_without_greenlet(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-c", WITHOUT_GREENLET, str(tmp_path / "instance")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.split() == ["200", "SQLTokenStore"]
    assert (tmp_path / "instance" / "quart_spotify_auth.sqlite3").exists()


async def test_the_stores_own_connections_to_its_file_are_closed_with_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The store runs its own statements straight on sqlite3 connections, one per store
    thread; concurrent work opens several, and close() closes every one of them."""
    opened: list[sqlite3.Connection] = []
    connect = sqlite3.dbapi2.connect

    def recorded(*args: Any, **kwargs: Any) -> sqlite3.Connection:
        opened.append(connect(*args, **kwargs))
        return opened[-1]

    monkeypatch.setattr(sqlite3.dbapi2, "connect", recorded)
    store = SQLTokenStore(f"sqlite:///{tmp_path}/tokens.sqlite3", cache_ttl=0)
    await store.open()
    now = time.time()
    record = TokenRecord("a", "r", now + 3600, now, frozenset(), now)
    await asyncio.gather(*(store.put(f"k{i}", record) for i in range(20)))
    found = await asyncio.gather(*(store.get(f"k{i}") for i in range(20)))
    assert all(record is not None for record in found)
    await asyncio.gather(*(store.due(now + 7200, 5) for _ in range(4)))  # on store threads
    assert len(opened) >= 2  # the loop's own (reused from the tables' creation), the threads'
    await store.close()
    for connection in opened:
        with pytest.raises(sqlite3.ProgrammingError, match="closed"):
            connection.execute("SELECT 1")
    reopened = SQLTokenStore(f"sqlite:///{tmp_path}/tokens.sqlite3")
    assert (await reopened.get("k19")) is not None  # committed, not left in a transaction
    await reopened.close()


# PostgreSQL's versions: from a sequence, so no write waits for another's commit.


def _live() -> TokenRecord:
    """A login made now (a row lives until its reauthorization is due)."""
    now = time.time()
    return TokenRecord("a", "r", now + 3600, now, frozenset(), now)


async def _as_owner(pg: PostgreSQLServer, *statements: str) -> Any:
    """Run ``statements`` as the cluster's owner; the last one's first value."""
    import asyncpg

    connection = await asyncpg.connect(pg.url)
    try:
        for statement in statements[:-1]:
            await connection.execute(statement)
        return await connection.fetchval(statements[-1])
    finally:
        await connection.close()


async def test_a_postgresql_write_does_not_wait_for_another_holding_the_version_counter(
    pg_server: PostgreSQLServer, sql_prefix: str
) -> None:
    import asyncpg

    store = SQLTokenStore(pg_server.url, prefix=sql_prefix)
    await store.open()
    first = await store.put("user:a", _live())
    # A writer holding the counter row (as every write of an earlier release did, from its
    # count until its commit): a write waiting on it would fail at the 5 s statement timeout.
    holder = await asyncpg.connect(pg_server.url)
    try:
        async with holder.transaction():
            await holder.execute(
                f"SELECT value FROM {sql_prefix}meta WHERE name = 'versions' FOR UPDATE"
            )
            second = await store.put("user:b", _live())
            renewed = await store.replace("user:a", first, first.renewed(_live()))
        assert renewed is not None and renewed.version > second.version > first.version
        assert await store.get("user:a") == renewed
    finally:
        await holder.close()
        await store.close()


async def test_tables_of_an_earlier_release_give_versions_above_its_counter(
    pg_server: PostgreSQLServer, sql_prefix: str
) -> None:
    store = SQLTokenStore(pg_server.url, prefix=sql_prefix)
    await store.open()
    old = await store.put("user:a", _live())
    await store.close()
    # As 0.2 left them: no sequence, and its counter at 41.
    counter = f"UPDATE {sql_prefix}meta SET value = 41 WHERE name = 'versions'"
    await _as_owner(pg_server, f"DROP SEQUENCE {sql_prefix}versions", counter, "SELECT 1")
    store = SQLTokenStore(pg_server.url, prefix=sql_prefix)
    await store.open()
    try:
        renewed = await store.replace("user:a", old, old.renewed(_live()))
        # An earlier release's process, still counting on the row in a rolling upgrade, would
        # need 2**32 writes to give a version this one gives.
        assert renewed is not None and renewed.version == 41 + 2**32
        assert (await store.get("user:a")) == renewed
    finally:
        await store.close()


async def test_a_role_without_rights_on_the_sequence_counts_on_the_row_and_says_what_to_run(
    pg_server: PostgreSQLServer, sql_prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    owner = SQLTokenStore(pg_server.url, prefix=sql_prefix)
    await owner.open()
    await owner.close()
    role, tables = (
        f"{sql_prefix}app",
        ", ".join(f"{sql_prefix}{name}" for name in ("tokens", "claims", "meta")),
    )
    await _as_owner(
        pg_server,
        f"DROP SEQUENCE {sql_prefix}versions",  # tables made by an earlier release
        f"CREATE ROLE {role} LOGIN",  # may not create anything in the schema (PostgreSQL 15)
        f"GRANT SELECT, INSERT, UPDATE, DELETE ON {tables} TO {role}",
        "SELECT 1",
    )
    url = pg_server.url.replace("postgres@", f"{role}@")
    counted = f"SELECT value FROM {sql_prefix}meta WHERE name = 'versions'"

    async def writes(advice: str) -> int:
        """Open the store as the role: two logins, stored; the log's advice; their versions'
        rise in the counter row."""
        caplog.clear()
        before = await _as_owner(pg_server, counted)
        store = SQLTokenStore(url, prefix=sql_prefix)
        with caplog.at_level(logging.WARNING, logger="quart_spotify_auth"):
            await store.open()
        try:
            logins = [await store.put(f"user:{n}", _live()) for n in range(2)]
            assert logins[1].version > logins[0].version
            assert [await store.get(f"user:{n}") for n in range(2)] == logins
        finally:
            await store.close()
        assert advice in caplog.text if advice else not caplog.text
        return int(await _as_owner(pg_server, counted)) - int(before)

    # (the counter at 0: the sequence starts 2**32 above it)
    run = f"CREATE SEQUENCE {sql_prefix}versions START WITH {2**32}"
    assert await writes(f"Run `{run}` as the tables' owner, and grant USAGE") == 2  # counted
    await _as_owner(pg_server, run, "SELECT 1")  # the advice taken, as the owner
    assert await writes("Grant USAGE on the sequence to this role") == 2  # not usable yet
    granted = f"GRANT USAGE ON SEQUENCE {sql_prefix}versions TO {role}"
    await _as_owner(pg_server, granted, "SELECT 1")
    assert await writes("") == 0  # from the sequence: the row is left alone


async def test_the_postgresql_schema_runs_as_printed_and_its_sequence_is_used(
    pg_server: PostgreSQLServer, sql_prefix: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["schema", "--prefix", sql_prefix]) == 0
    printed = capsys.readouterr().out
    assert f"CREATE SEQUENCE {sql_prefix}versions START WITH {2**32};" in printed
    await _as_owner(pg_server, printed, "SELECT 1")
    store = SQLTokenStore(pg_server.url, prefix=sql_prefix)
    await store.open()
    try:
        assert (await store.put("user:a", _live())).version == 2**32  # the sequence's first
    finally:
        await store.close()
    counted = f"SELECT value FROM {sql_prefix}meta WHERE name = 'versions'"
    assert await _as_owner(pg_server, counted) == 0


async def test_a_postgresql_store_sends_one_statement_writes_and_reads_with_nothing_around(
    pg_server: PostgreSQLServer, sql_prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A login's and a refresh's reads, claims and writes are one statement each: no BEGIN,
    COMMIT or ping around them (each was a round trip; three more per statement)."""
    import asyncpg

    sent: list[str] = []
    for name in ("execute", "fetchrow"):  # what BEGIN, COMMIT, ROLLBACK and pings go by
        plain = getattr(asyncpg.Connection, name)

        def counted(self: Any, query: str, *args: Any, _plain: Any = plain, **kw: Any) -> Any:
            sent.append(query)
            return _plain(self, query, *args, **kw)

        monkeypatch.setattr(asyncpg.Connection, name, counted)
    store = SQLTokenStore(pg_server.url, prefix=sql_prefix)
    await store.open()
    try:
        sent.clear()
        login = await store.put("user:a", _live(), due=time.time() + 60, used=time.time())
        holder = await store.claim("user:a", 30, "me")
        assert holder is not None and await store.get("user:a") == login
        renewed = await store.replace("user:a", login, login.renewed(_live()))
        assert renewed is not None and await store.get("user:a") == renewed
        assert await store.replace("user:a", login, login.renewed(_live())) is None  # stale
        await store.release("user:a", holder)
        await store.mark_used("user:a", time.time())
        await store.reschedule("user:a", time.time() + 30)
        assert not await store.delete("user:a", login)  # not at that version
        assert await store.delete("user:a", renewed) and await store.get("user:a") is None
        assert sent == []
        await store.due(time.time(), 10)  # several statements: a transaction
        assert any(query.startswith("BEGIN") for query in sent)
    finally:
        await store.close()


async def test_a_sequence_made_by_hand_below_the_counter_is_not_used_and_said(
    pg_server: PostgreSQLServer, sql_prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    store = SQLTokenStore(pg_server.url, prefix=sql_prefix)
    await store.open()
    await store.close()
    sequence, counted = f"{sql_prefix}versions", f"{sql_prefix}meta WHERE name = 'versions'"
    await _as_owner(
        pg_server,
        f"DROP SEQUENCE {sequence}",
        f"UPDATE {counted.replace(' WHERE', ' SET value = 41 WHERE')}",
        f"CREATE SEQUENCE {sequence}",  # at 1: it would give versions the counter gave
        "SELECT 1",
    )
    store = SQLTokenStore(pg_server.url, prefix=sql_prefix)
    with caplog.at_level(logging.WARNING, logger="quart_spotify_auth"):
        await store.open()
    try:
        assert f"the sequence {sequence} stands at 0, not above the 41 versions" in caplog.text
        assert f"SELECT setval('{sequence}', {41 + 2**32})" in caplog.text
        assert (await store.put("user:a", _live())).version == 42  # counted on the row
    finally:
        await store.close()


async def test_a_read_only_role_opens_the_store_and_reads(
    pg_server: PostgreSQLServer, sql_prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A replica, or a role whose transactions are read-only: the sequence cannot be created,
    but logins can still be read (listed, moved out)."""
    owner = SQLTokenStore(pg_server.url, prefix=sql_prefix)
    await owner.open()
    login = await owner.put("user:a", _live())
    await owner.close()
    role = f"{sql_prefix}reader"
    await _as_owner(
        pg_server,
        f"DROP SEQUENCE {sql_prefix}versions",  # tables of an earlier release
        f"CREATE ROLE {role} LOGIN",
        f"ALTER ROLE {role} SET default_transaction_read_only = on",
        f"GRANT SELECT ON {sql_prefix}tokens, {sql_prefix}claims, {sql_prefix}meta TO {role}",
        "SELECT 1",
    )
    store = SQLTokenStore(pg_server.url.replace("postgres@", f"{role}@"), prefix=sql_prefix)
    with caplog.at_level(logging.WARNING, logger="quart_spotify_auth"):
        await store.open()
    try:
        assert "cannot create the sequence" in caplog.text
        assert await store.get("user:a") == login
    finally:
        await store.close()


async def test_logins_moved_into_postgresql_keep_later_versions_above_theirs(
    pg_server: PostgreSQLServer, sql_prefix: str, tmp_path: Path
) -> None:
    from quart_spotify_auth.logins import move

    source = SQLTokenStore(f"sqlite:///{tmp_path}/tokens.sqlite3")
    target = SQLTokenStore(pg_server.url, prefix=sql_prefix)
    await source.open()
    await target.open()
    try:
        # A source whose versions run far above the target's sequence (new: at 2**32).
        high = 10**12
        await source.put("user:a", _live())
        direct = f"UPDATE quart_spotify_auth_tokens SET version = {high}"
        await source.transaction(lambda c: c.exec_driver_sql(direct))
        assert (await move(source, target)).copied == 1
        assert (await target.get("user:a")) is not None
        later = await target.put("user:b", _live())
        assert later.version > high
        # A role that may take versions but not move the sequence cannot move logins in.
        role = f"{sql_prefix}mover"
        tables = ", ".join(f"{sql_prefix}{n}" for n in ("tokens", "claims", "meta"))
        await _as_owner(
            pg_server,
            f"CREATE ROLE {role} LOGIN",
            f"GRANT SELECT, INSERT, UPDATE, DELETE ON {tables} TO {role}",
            f"GRANT USAGE ON SEQUENCE {sql_prefix}versions TO {role}",
            "SELECT 1",
        )
        limited = SQLTokenStore(pg_server.url.replace("postgres@", f"{role}@"), prefix=sql_prefix)
        try:
            with pytest.raises(ConfigurationError, match=f"GRANT UPDATE ON SEQUENCE {sql_prefix}"):
                await move(source, limited)
            assert (await limited.put("user:c", _live())).version > later.version  # it writes
        finally:
            await limited.close()
    finally:
        await source.close()
        await target.close()


async def test_a_postgresql_read_survives_a_connection_dropped_unheard(
    pg_server: PostgreSQLServer, sql_prefix: str
) -> None:
    """A connection the server (or a NAT between) dropped while its driver heard nothing: the
    read is sent again on a new connection, not a 503."""
    import sqlalchemy

    from quart_spotify_auth.stores.sqlengine import _closed_is_gone

    store = SQLTokenStore(pg_server.url, prefix=sql_prefix, cache_ttl=0)
    await store.open()
    try:
        login = await store.put("user:a", _live())
        assert await store.get("user:a") == login  # a pooled connection, used
        others = (  # the store's connections: every client's but this one's
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE pid <> pg_backend_pid() AND backend_type = 'client backend'"
        )
        # As if the driver had not heard yet: the pool hands the dead connection out.
        engine = store.engine
        assert isinstance(engine, AsyncEngine)
        sqlalchemy.event.remove(engine.sync_engine, "checkout", _closed_is_gone)
        assert await _as_owner(pg_server, others) >= 1
        assert await store.get("user:a") == login
        assert await _as_owner(pg_server, others) >= 1
        assert await store.claim("user:a", 30, "me") is not None
    finally:
        await store.close()
