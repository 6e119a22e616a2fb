"""Stopping leaves nothing behind.

- A start followed at once by a stop, as test suites and fast restarts do, on every store: the
  app's shutdown returns within 2 s at any moment after its startup, and ``asyncio.run``
  returns (every task ended, the loop closed). Each store's cycles run in a process of their
  own, under a timeout that catches a hang.
- ``tasks.cancel`` stops a task whose cancellation was lost (``asyncio.wait_for`` on Python
  3.11 loses one, and redis-py and the renewer wait through it).
- The loop thread (the Flask shim's, the pytest plugin's fake server's) closes its loop when
  stopped, and the shim's is stopped and closed at exit.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import threading
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from quart_spotify_auth.loopthread import LoopThread
from quart_spotify_auth.stores.redis import RedisTokenStore
from quart_spotify_auth.tasks import cancel

from .servers import PostgreSQLServer, RedisServer

# One app started and stopped per moment, each under its own asyncio.run. The moments: after
# 0..39 turns of the loop (the background tasks caught at each step of connecting), then after
# short sleeps. Exit 3 when a shutdown took 2 s or more; a hang is caught by the timeout.
CYCLES = r"""
import asyncio, sys, time
from quart import Quart
from quart_spotify_auth import SpotifyAuth

store, prefix, instance = sys.argv[1:4]
MOMENTS = [("turns", n) for n in range(40)] + [("seconds", s) for s in (0.001, 0.01, 0.05, 0.2)]

def make_app():
    app = Quart("shutdown", instance_path=instance)
    app.config.update(
        SECRET_KEY="a-test-secret-key-that-is-long-enough",
        SPOTIFY_CLIENT_ID="test-client",
        SPOTIFY_CLIENT_SECRET="test-secret",
        SPOTIFY_ACCOUNTS_URL="https://fake.invalid",
        SPOTIFY_API_URL="https://fake.invalid/v1",
        SPOTIFY_TOKEN_STORE_PREFIX=prefix,
    )
    if store != "default":
        app.config["SPOTIFY_TOKEN_STORE"] = store
    SpotifyAuth(app)

    @app.route("/callback/")
    async def callback():
        return ""

    return app

async def cycle(kind, amount):
    test_app = make_app().test_app()
    await test_app.startup()
    if kind == "turns":
        for _ in range(amount):
            await asyncio.sleep(0)
    else:
        await asyncio.sleep(amount)
    began = time.monotonic()
    await test_app.shutdown()
    return time.monotonic() - began

for kind, amount in MOMENTS:
    took = asyncio.run(cycle(kind, amount))
    print(f"after {amount} {kind}: shutdown took {took:.3f} s; asyncio.run returned", flush=True)
    if took >= 2:
        sys.exit(3)
print("every asyncio.run returned")
"""
MOMENTS = 40 + 4

# A Flask app on the shim, used once (its core starts on the loop thread), then the process
# exits. The check is registered before the shim is imported, so it runs after the shim's own
# exit handler (they run last registered first).
SHIM_AT_EXIT = r"""
import asyncio, atexit, threading
seen = {}

def check():
    loop, thread = seen["loop"], seen["thread"]
    print("loop closed" if loop.is_closed() else "loop left open", flush=True)
    print("thread running" if thread.is_alive() else "thread ended", flush=True)

atexit.register(check)

from flask import Flask
from quart_spotify_auth.flask import SpotifyAuth, block_on

app = Flask(__name__)
app.config.update(
    SECRET_KEY="a-test-secret-key-that-is-long-enough",
    SPOTIFY_CLIENT_ID="test-client",
    SPOTIFY_CLIENT_SECRET="test-secret",
    SPOTIFY_ACCOUNTS_URL="https://fake.invalid",
    SPOTIFY_API_URL="https://fake.invalid/v1",
    SPOTIFY_TOKEN_STORE="memory",
)
spotify = SpotifyAuth(app)

@app.route("/")
def home():
    return {"logged_in": spotify.is_logged_in()}

@app.route("/callback/")
def callback():
    return ""

assert app.test_client().get("/").get_json() == {"logged_in": False}

async def where():
    return asyncio.get_running_loop(), threading.current_thread()

seen["loop"], seen["thread"] = block_on(where())
"""


def _python(*args: str) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=60)
    except subprocess.TimeoutExpired as exc:  # pragma: no cover - the failure being tested
        out, err = (b.decode() if isinstance(b, bytes) else b for b in (exc.stdout, exc.stderr))
        raise AssertionError(f"it hung:\n{out}\n{err}") from None


def _cycles(store: str, prefix: str, instance: Path) -> None:
    result = _python("-c", CYCLES, store, prefix, str(instance))
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert result.stdout.count("asyncio.run returned") == MOMENTS + 1, output
    for trouble in ("would not stop", "Task was destroyed", "Exception ignored", "Traceback"):
        assert trouble not in result.stderr, output


def test_start_then_stop_with_the_memory_store(tmp_path: Path) -> None:
    _cycles("memory", "shutdown:", tmp_path)


def test_start_then_stop_with_the_default_sqlite_store(tmp_path: Path) -> None:
    _cycles("default", "shutdown:", tmp_path)


def test_start_then_stop_with_the_redis_store(
    tmp_path: Path, redis_server: RedisServer, redis_prefix: str
) -> None:
    _cycles(redis_server.url, redis_prefix, tmp_path)


def test_start_then_stop_with_the_postgresql_store(
    tmp_path: Path, pg_server: PostgreSQLServer, sql_prefix: str
) -> None:
    _cycles(pg_server.url, sql_prefix, tmp_path)


# -- cancel: a lost cancellation --------------------------------------------------------------


async def _ended(task: asyncio.Task[None]) -> bool:
    """Whether ``task`` has ended; if not (the failure being tested), end it now."""
    if task.done():
        return True
    task.cancel()
    await asyncio.wait({task})
    return False


async def test_cancel_stops_a_task_that_lost_its_cancellation(
    caplog: pytest.LogCaptureFixture,
) -> None:
    forever = asyncio.Event()  # never set: a read with nothing to read
    swallowed = asyncio.Event()
    waiting = asyncio.Event()

    async def stubborn() -> None:
        try:
            waiting.set()
            await forever.wait()
        except asyncio.CancelledError:
            swallowed.set()  # lost, as in a driver: the task carries on as if never cancelled
        await forever.wait()  # its next read, for ever

    task = asyncio.get_running_loop().create_task(stubborn())
    await waiting.wait()
    await cancel(task, timeout=1.0)
    assert await _ended(task) and task.cancelled() and swallowed.is_set()
    assert "would not stop" not in caplog.text


async def test_cancel_stops_a_task_whose_wait_for_lost_its_cancellation(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # CPython gh-86296 (3.11): a task cancelled while what its asyncio.wait_for waits on
    # completes gets the result instead of the CancelledError. redis-py connects through it.
    loop = asyncio.get_running_loop()
    inner: asyncio.Future[None] = loop.create_future()
    waiting, forever = asyncio.Event(), asyncio.Event()

    async def victim() -> None:
        waiting.set()
        await asyncio.wait_for(inner, 10)
        await forever.wait()

    task = loop.create_task(victim())
    await waiting.wait()
    await asyncio.sleep(0)  # one turn: the task is inside wait_for now
    inner.set_result(None)  # completes in the same turn as the cancellation below
    await cancel(task, timeout=1.0)
    assert await _ended(task) and task.cancelled()
    assert "would not stop" not in caplog.text


async def test_cancel_lets_a_task_clean_up(caplog: pytest.LogCaptureFixture) -> None:
    cleaned = asyncio.Event()
    waiting = asyncio.Event()

    async def tidy() -> None:
        try:
            waiting.set()
            await asyncio.Event().wait()
        finally:
            await asyncio.sleep(0)  # an await while cleaning up: not cut short
            cleaned.set()

    task = asyncio.get_running_loop().create_task(tidy())
    await waiting.wait()
    await cancel(task)
    assert task.cancelled() and cleaned.is_set()
    assert "would not stop" not in caplog.text


async def test_the_redis_listener_ends_on_one_cancellation_at_any_moment(
    redis_server: RedisServer, redis_prefix: str
) -> None:
    # redis-py connects through asyncio.wait_for: a cancellation arriving as it connects is
    # lost in pubsub.subscribe (Python 3.11); the listener must still end, not wait on its
    # first read for ever. One cancel, as a plain task.cancel(), at each step of connecting.
    for turns in range(40):
        store = RedisTokenStore(redis_server.url, prefix=redis_prefix)
        await store.open()
        listener = store._listener
        assert listener is not None
        for _ in range(turns):
            await asyncio.sleep(0)
        listener.cancel()
        done, _ = await asyncio.wait({listener}, timeout=5)
        ended = await _ended(listener)
        await store.close()
        assert done and ended and listener.cancelled(), f"still running after {turns} turns"


# -- the loop thread ---------------------------------------------------------------------------


def test_a_stopped_loop_thread_closes_its_loop_as_asyncio_run_does() -> None:
    thread = LoopThread()
    finalized = threading.Event()
    kept: list[AsyncIterator[int]] = []

    async def generator() -> AsyncIterator[int]:
        try:
            yield 1
            yield 2
        finally:
            finalized.set()

    async def work() -> tuple[asyncio.AbstractEventLoop, threading.Thread, asyncio.Task[None]]:
        loop = asyncio.get_running_loop()
        kept.append(generator())
        await kept[-1].__anext__()  # left suspended half-way: shutdown_asyncgens closes it
        await loop.run_in_executor(None, int)  # the default executor started
        running = asyncio.Event()

        async def pending() -> None:
            running.set()
            await asyncio.Event().wait()

        task = loop.create_task(pending())  # still running when the loop stops
        await running.wait()
        return loop, threading.current_thread(), task

    loop, runner, task = thread.block_on(work(), timeout=30)
    thread.stop()
    assert not runner.is_alive()
    assert loop.is_closed()
    assert task.cancelled()
    assert finalized.is_set()
    # Used again: a new loop, stopped and closed in its turn.
    again, runner, _ = thread.block_on(work(), timeout=30)
    assert again is not loop and not again.is_closed()
    thread.stop()
    assert again.is_closed() and not runner.is_alive()


def test_the_flask_shim_closes_its_loop_at_exit() -> None:
    result = _python("-X", "dev", "-c", SHIM_AT_EXIT)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "loop closed" in result.stdout and "thread ended" in result.stdout, output
    assert "ResourceWarning" not in output and "unclosed" not in output, output
