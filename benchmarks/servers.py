"""Starting hypercorn and the load generators as separate processes."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
from collections.abc import AsyncIterator
from typing import Any

from quart_spotify_auth.serving import free_port, wait_for_port


@contextlib.asynccontextmanager
async def hypercorn(
    target: str, *, env: dict[str, str] | None = None, workers: int = 1, port: int | None = None
) -> AsyncIterator[str]:
    """Serve ``module:attr`` with hypercorn in a child process; yields its base URL."""
    port = port or free_port()
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "hypercorn", "--bind", f"127.0.0.1:{port}",
        "--workers", str(workers), "--log-level", "WARNING", target,
        env={**os.environ, **(env or {})},
    )  # fmt: skip
    try:
        await wait_for_port("127.0.0.1", port, timeout=60)
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        await process.wait()


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
