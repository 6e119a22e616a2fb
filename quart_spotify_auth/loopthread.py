"""Where the Flask shim runs coroutines: one event loop in a daemon thread per process (again
after a fork), never one per call: the HTTP pool, locks and renewer outlive each request."""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

__all__ = ["LoopThread", "block_on", "stop"]

T = TypeVar("T")


class LoopThread:
    """One event loop in a daemon thread, per process."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._pid = 0

    def block_on(self, work: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        """Run ``work`` on the loop (a new one in a new process); block until its result."""
        with self._lock:
            if self._loop is None or self._pid != os.getpid():
                # New process (first use, or a fork: threads do not survive it): a new loop.
                runner = asyncio.Runner(loop_factory=asyncio.new_event_loop)
                self._loop = runner.get_loop()
                self._pid = os.getpid()
                self._thread = threading.Thread(
                    target=_serve, args=(runner,), name="quart-spotify-auth", daemon=True
                )
                self._thread.start()
            loop = self._loop
        if threading.current_thread() is self._thread:  # it would wait for itself forever
            work.close()
            raise RuntimeError(
                "quart_spotify_auth.flask methods are synchronous and cannot be called from "
                "the shim's own event loop (for example from a reauthorization hook); use the "
                "async core there, or call them from a view."
            )
        return asyncio.run_coroutine_threadsafe(work, loop).result(timeout)

    def stop(self, timeout: float = 30.0) -> None:
        """Stop and close the loop (see :func:`_serve`), waiting up to ``timeout`` seconds
        unless called from the loop itself. The next use starts a new loop."""
        with self._lock:
            loop, thread = self._loop, self._thread
            ours = loop is not None and self._pid == os.getpid()
            self._loop = self._thread = None
        if not ours or loop is None or thread is None:
            return  # never started, or the parent's (a forked child has not its thread)
        try:
            loop.call_soon_threadsafe(loop.stop)
        except RuntimeError:  # closed already
            return
        if thread is not threading.current_thread():
            thread.join(timeout)


def _serve(runner: asyncio.Runner) -> None:
    """Run the loop until stopped, then close it as ``asyncio.run`` closes its own; at the
    interpreter's exit (``atexit`` stops it) without starting a thread, which Python 3.12
    refuses then and ``asyncio.run`` needs to wait for the default executor."""
    loop = runner.get_loop()
    try:
        loop.run_forever()
    finally:
        if threading.main_thread().is_alive():
            runner.close()
        else:
            _close_at_exit(loop)


def _close_at_exit(loop: asyncio.AbstractEventLoop) -> None:
    """What ``Runner.close`` does, but the default executor's threads are told to stop, not
    waited for (``loop.close``): the process is ending."""
    try:
        tasks = asyncio.all_tasks(loop)
        for task in tasks:
            task.cancel()
        if tasks:
            loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
        loop.run_until_complete(loop.shutdown_asyncgens())
    finally:
        loop.close()


_LOOP = LoopThread()
stop = _LOOP.stop


def block_on(work: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
    """Run a coroutine on this process's loop thread and block until its result (the Flask
    shim's core lives there: tests and sync code reach it this way)."""
    return _LOOP.block_on(work, timeout)
