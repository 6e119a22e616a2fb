"""One event loop in a daemon thread per process, for running the async core from sync code
(the Flask shim).

Started on first use and started again after a fork (threads do not survive one: gunicorn
``--preload``); never a loop per call, so the pooled HTTP client, the locks and the renewer
built on it stay usable across requests (``reference/style.md`` section 4).
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

__all__ = ["LoopThread", "run", "stop"]

T = TypeVar("T")


class LoopThread:
    """One event loop in a daemon thread, per process."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._pid = 0

    def loop(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._loop is None or self._pid != os.getpid():
                # New process (first use, or a fork: threads do not survive it): a new loop.
                self._loop = asyncio.new_event_loop()
                self._pid = os.getpid()
                thread = threading.Thread(
                    target=self._loop.run_forever, name="quart-spotify-auth", daemon=True
                )
                thread.start()
            return self._loop

    def run(self, work: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        loop = self.loop()
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            work.close()
            raise RuntimeError(
                "quart_spotify_auth.flask methods are synchronous and cannot be called from "
                "the shim's own event loop (for example from a reauthorization hook); use the "
                "async core there, or call them from a view."
            )
        return asyncio.run_coroutine_threadsafe(work, loop).result(timeout)

    def stop(self) -> None:
        with self._lock:
            if self._loop is not None and self._pid == os.getpid():
                self._loop.call_soon_threadsafe(self._loop.stop)
            self._loop = None


_LOOP = LoopThread()


def run(work: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
    """Run a coroutine on the shim's loop thread and wait for its result (for tests and
    advanced use: the core's coroutines must run there)."""
    return _LOOP.run(work, timeout)


def stop() -> None:
    """Stop this process's loop (at exit)."""
    _LOOP.stop()
