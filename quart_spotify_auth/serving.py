"""Serving ASGI apps with hypercorn on loopback, for the demo, tests and benchmarks."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator
from typing import Any

from hypercorn.asyncio import serve as hypercorn_serve
from hypercorn.config import Config

__all__ = ["PortInUse", "free_port", "serve", "wait_for_port"]


class PortInUse(OSError):
    """The port to serve on is taken (another program listens there); ``option`` is the
    command-line option that chooses it."""

    def __init__(self, host: str, port: int, option: str = "--port") -> None:
        super().__init__(
            f"{host}:{port} is already in use: another program listens there. Stop it, or "
            f"choose another port ({option})."
        )
        self.host, self.port, self.option = host, port, option


def _bound(host: str, port: int) -> int:
    """A socket bound to ``host:port``, as the file descriptor hypercorn takes over (so the
    port is known to be ours before anything says it is served)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise PortInUse(host, port) from exc
    return sock.detach()


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free a moment ago on ``host``."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


async def wait_for_port(
    host: str, port: int, *, timeout: float = 15.0, task: asyncio.Task[Any] | None = None
) -> None:
    """Return once ``host:port`` accepts a TCP connection; raise if ``task`` (the server)
    ends first or ``timeout`` passes."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        if task is not None and task.done():
            task.result()
            raise RuntimeError(f"the server for {host}:{port} stopped before it listened")
        try:
            _, writer = await asyncio.open_connection(host, port)
        except OSError:
            if loop.time() > deadline:
                raise TimeoutError(f"nothing listens on {host}:{port}") from None
            await asyncio.sleep(0.01)
            continue
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
        return


@contextlib.asynccontextmanager
async def serve(
    app: Any, *, host: str = "127.0.0.1", port: int | None = None, **options: Any
) -> AsyncIterator[str]:
    """Serve ``app`` with hypercorn (lifespan included) on this event loop; yields its base
    URL and shuts the server down cleanly on exit. Raises :class:`PortInUse` when the port is
    taken.

    .. code-block:: python

        async with serve(FakeSpotify()) as url:
            ...
    """
    port = port or free_port(host)
    config = Config()
    config.bind = [f"fd://{_bound(host, port)}"]
    config.accesslog = None
    config.errorlog = None
    config.graceful_timeout = 1.0
    for name, value in options.items():
        setattr(config, name, value)
    shutdown = asyncio.Event()
    task = asyncio.get_running_loop().create_task(
        hypercorn_serve(app, config, shutdown_trigger=shutdown.wait)
    )
    try:
        await wait_for_port(host, port, task=task)
        yield f"http://{host}:{port}"
    finally:
        shutdown.set()
        await task
