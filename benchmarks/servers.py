"""Starting hypercorn and the load generators as separate processes."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from quart_spotify_auth.serving import free_port, wait_for_port


@contextlib.asynccontextmanager
async def hypercorn(
    target: str, *, env: dict[str, str] | None = None, workers: int = 1, port: int | None = None
) -> AsyncIterator[str]:
    """Serve ``module:attr`` with hypercorn in a child process; yields its base URL."""
    async with served(target, env=env, workers=workers, port=port) as (url, _):
        yield url


@contextlib.asynccontextmanager
async def served(
    target: str,
    *,
    env: dict[str, str] | None = None,
    workers: int = 1,
    port: int | None = None,
    log: Path | None = None,
) -> AsyncIterator[tuple[str, int]]:
    """As :func:`hypercorn`, yielding the base URL and hypercorn's own process id (its
    workers are its children); ``log`` takes the server's output instead of this terminal."""
    async with Server(target, env=env, workers=workers, port=port, log=log) as server:
        yield server.url, server.pid


class Server:
    """hypercorn serving ``target`` in a child process, which :meth:`kill` can end as a crash
    would (SIGKILL to it and its workers) and :meth:`start` bring back on the same port."""

    def __init__(
        self,
        target: str,
        *,
        env: dict[str, str] | None = None,
        workers: int = 1,
        port: int | None = None,
        log: Path | None = None,
    ) -> None:
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._args = [
            "-m", "hypercorn", "--bind", f"127.0.0.1:{self.port}", "--workers", str(workers),
            "--log-level", "WARNING", "--keep-alive", "120", target,
        ]  # fmt: skip
        # --keep-alive: hypercorn's idle timer starts at accept, so on a starved machine its 5 s
        # default closes connections whose requests are already buffered; the same for every
        # contender.
        self._env = {**os.environ, **(env or {})}
        self._log = log
        self._process: asyncio.subprocess.Process | None = None

    @property
    def pid(self) -> int:
        """hypercorn's own process id (its workers are its children)."""
        assert self._process is not None
        return self._process.pid

    async def start(self) -> None:
        with contextlib.ExitStack() as files:
            output = files.enter_context(self._log.open("ab")) if self._log else None
            self._process = await asyncio.create_subprocess_exec(
                sys.executable, *self._args, env=self._env, stdout=output, stderr=output
            )
        await wait_for_port("127.0.0.1", self.port, timeout=60)

    async def kill(self) -> None:
        """SIGKILL to hypercorn and every worker at once: nothing is shut down cleanly. Returns
        once nothing listens on the port any more (the workers are gone too)."""
        if self._process is None or self._process.returncode is not None:
            return
        for pid in [*children(self.pid), self.pid]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        await self._process.wait()
        async with asyncio.timeout(30):
            while True:
                try:
                    _, writer = await asyncio.open_connection("127.0.0.1", self.port)
                except OSError:
                    return  # refused
                writer.close()
                await asyncio.sleep(0.05)

    async def stop(self) -> None:
        """A clean stop (SIGTERM: hypercorn stops its workers)."""
        if self._process is not None and self._process.returncode is None:
            self._process.terminate()
            await self._process.wait()

    async def __aenter__(self) -> Server:
        await self.start()
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.stop()


def children(pid: int) -> list[int]:
    """The process ids whose parent is ``pid`` (from /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue  # gone meanwhile
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry.name))
    return found


def rss_mb(pid: int) -> float | None:
    """Resident memory of ``pid`` in MB, None once it is gone."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    for line in status.splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return None


def cpu_times(pid: int) -> tuple[float, float] | None:
    """User and system CPU time ``pid`` has used, None once it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    tick = os.sysconf("SC_CLK_TCK")
    return int(fields[11]) / tick, int(fields[12]) / tick


def reaped_cpu_seconds(pid: int) -> float | None:
    """User plus system CPU time of ``pid``'s children that have ended (and been waited for),
    None once it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[13]) + int(fields[14])) / os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float | None:
    """User plus system CPU time ``pid`` has used, None once it is gone."""
    times = cpu_times(pid)
    return None if times is None else sum(times)


def total_cpu(pids: list[int]) -> float:
    """User plus system CPU time the processes have used (those gone count nothing)."""
    return sum(c for c in map(cpu_seconds, pids) if c is not None)


def system_cpu(pids: list[int]) -> float:
    """The kernel's share of :func:`total_cpu` (system calls, page faults)."""
    return sum(t[1] for t in map(cpu_times, pids) if t is not None)


async def run_json(*args: str) -> dict[str, Any]:
    """Run ``python -m ARGS`` and parse the JSON line it prints."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", *args, stdout=asyncio.subprocess.PIPE
    )
    out, _ = await process.communicate()
    if process.returncode:
        raise RuntimeError(f"{' '.join(args)} failed with {process.returncode}")
    result: dict[str, Any] = json.loads(out.decode().strip().splitlines()[-1])
    return result
