"""Moving logins between stores: ``python -m quart_spotify_auth migrate`` run as a user runs
it, from a SQLite file to PostgreSQL.

A tiny Quart app module configured with the SQLite store is written to a temporary folder; the
file is seeded with ``logins`` logins (``user:<n>`` and ``browser:<random>`` keys, tokens the
length of Spotify's, renewals due over the next hour, last used over the past week; every fifth
renewed once, so versions differ); the command runs in that folder as a child process, twice
(the second run must copy nothing). Then every login is read back through a
:class:`SQLTokenStore` on PostgreSQL beside the SQLite one: the same version, record, due time
and use, else a mismatch. Done in clear and with ``SPOTIFY_TOKEN_ENCRYPTION_KEYS`` set.
PostgreSQL is a server of the benchmark's own, on a free port.
"""

from __future__ import annotations

import asyncio
import math
import os
import random
import re
import secrets
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from cryptography.fernet import Fernet

import quart_spotify_auth
from quart_spotify_auth import TokenRecord
from quart_spotify_auth.stores.base import Stored
from quart_spotify_auth.stores.sql import SQLTokenStore
from tests.servers import PostgreSQLServer

APP = """\
from quart import Quart

from quart_spotify_auth import SpotifyAuth

app = Quart(__name__)
app.config.update(
    SECRET_KEY="migrate-benchmark",
    SPOTIFY_CLIENT_ID="bench-client",
    SPOTIFY_CLIENT_SECRET="bench-secret",
    SPOTIFY_TOKEN_STORE={store!r},
    SPOTIFY_TOKEN_STORE_PREFIX={prefix!r},
)
spotify = SpotifyAuth(app)
"""

SCOPES = frozenset({"user-read-private", "user-read-email", "streaming"})
MARGIN = 300.0  # renewed five minutes before expiry, as the app does by default
SAID = re.compile(r"(\d+) login\(s\) copied .* in ([\d.]+) s; (\d+) already there")


async def run(logins: int = 10_000) -> dict[str, Any]:
    """The move of ``logins`` logins, in clear and encrypted, each to fresh tables."""
    pg = PostgreSQLServer()
    pg.start()
    try:
        results: dict[str, Any] = {"logins": logins}
        for variant, keys in (("plain", ()), ("encrypted", (Fernet.generate_key().decode(),))):
            with tempfile.TemporaryDirectory() as folder:
                results[variant] = await _move(Path(folder), pg.url, logins, variant, keys)
    finally:
        pg.remove()  # stops it first
    _table(results)
    return results


async def _move(
    folder: Path, pg_url: str, logins: int, variant: str, keys: tuple[str, ...]
) -> dict[str, Any]:
    prefix = f"bench_{variant}:"
    sqlite_url = f"sqlite:///{folder}/tokens.sqlite3"
    source = SQLTokenStore(sqlite_url, prefix=prefix, encryption_keys=keys)
    await source.open()
    seeding = time.perf_counter()
    await _seed(source, logins)
    seeded = time.perf_counter() - seeding
    await source.close()  # checkpointed: the file alone holds them, the app is stopped
    (folder / "bench_app.py").write_text(APP.format(store=sqlite_url, prefix=prefix))
    first = await _migrate(folder, pg_url, keys)
    second = await _migrate(folder, pg_url, keys)
    mismatches, found = await _compare(sqlite_url, pg_url, prefix, keys)
    return {
        "seed_s": round(seeded, 1),
        "move_s": first["wall_s"],
        "move_s_as_said": first["said_s"],
        "copied": first["copied"],
        "logins_per_s": round(first["copied"] / first["wall_s"]),
        "second_s": second["wall_s"],
        "second_copied": second["copied"],
        "second_already_there": second["current"],
        "found_on_postgresql": found,
        "mismatches": mismatches,
    }


async def _seed(store: SQLTokenStore, logins: int) -> None:
    """``logins`` logins written as the app writes them (a login, and for every fifth a
    renewal over it), one transaction each."""
    rng, now = random.Random(7), time.time()
    for n in range(logins):
        key = f"user:{n}" if n % 3 else f"browser:{secrets.token_urlsafe(24)}"
        consented = now - rng.uniform(0, 90 * 86400)
        record = _record(now - rng.uniform(0, 3600), consented)
        used = now - rng.uniform(0, 7 * 86400)
        stored = await store.put(key, record, due=record.refresh_at(MARGIN), used=used)
        if n % 5 == 0:
            renewed = stored.renewed(_record(record.issued_at + 1.0, consented))
            assert await store.replace(key, stored, renewed, due=renewed.refresh_at(MARGIN))


def _record(issued: float, consented: float) -> TokenRecord:
    """Tokens as long as Spotify's (about 240 and 131 characters), an hour's lifetime."""
    access, refresh = "BQ" + secrets.token_urlsafe(178), "AQ" + secrets.token_urlsafe(96)
    return TokenRecord(access, refresh, issued + 3600, issued, SCOPES, consented)


async def _migrate(folder: Path, pg_url: str, keys: tuple[str, ...]) -> dict[str, Any]:
    """The command, run in the app's folder as a user runs it; its wall time and what it
    said it did."""
    here = str(Path(quart_spotify_auth.__file__).parent.parent)  # this checkout's package
    path = os.pathsep.join(p for p in (here, os.environ.get("PYTHONPATH")) if p)
    env = {**os.environ, "PYTHONPATH": path, "SPOTIFY_TOKEN_ENCRYPTION_KEYS": ",".join(keys)}
    command = ["-m", "quart_spotify_auth", "migrate", "--app", "bench_app:app", "--to", pg_url]
    start = time.perf_counter()
    process = await asyncio.create_subprocess_exec(
        sys.executable, *command, cwd=folder, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await process.communicate()
    wall = time.perf_counter() - start
    said = SAID.search(out.decode())
    if process.returncode != 0 or said is None:
        raise RuntimeError(f"migrate failed ({process.returncode}): {out.decode()}{err.decode()}")
    copied, seconds, current = said.groups()
    return {"wall_s": round(wall, 2), "said_s": float(seconds), "copied": int(copied),
            "current": int(current)}  # fmt: skip


async def _compare(
    sqlite_url: str, pg_url: str, prefix: str, keys: tuple[str, ...]
) -> tuple[int, int]:
    """Mismatches between the SQLite file and PostgreSQL, login by login (missing, extra, or
    another version, record, due time or use; each read back with ``get`` too), and how many
    logins PostgreSQL holds."""
    source = SQLTokenStore(sqlite_url, prefix=prefix, encryption_keys=keys)
    target = SQLTokenStore(pg_url, prefix=prefix, encryption_keys=keys)
    await source.open()
    await target.open()
    try:
        originals, copies = await _all(source), await _all(target)
        mismatches = len(originals.keys() ^ copies.keys())
        for key, original in originals.items():
            copy = copies.get(key)
            if copy is None:
                continue
            read = await target.get(key)
            same = (
                copy.version == original.version
                and copy.record == original.record
                and read == original.record
                and _same_time(copy.due, original.due)
                and _same_time(copy.used, original.used)
            )
            mismatches += not same
    finally:
        await source.close()
        await target.close()
    return mismatches, len(copies)


async def _all(store: SQLTokenStore) -> dict[str, Stored]:
    return {row.key: row async for page in store.stored() for row in page}


def _same_time(a: float | None, b: float | None) -> bool:
    return a == b or (a is not None and b is not None and math.isclose(a, b, abs_tol=1e-3))


def _table(results: dict[str, Any]) -> None:
    rows = [("", "logins", "copied", "move", "of which move()", "logins/s", "second run",
             "copied again", "mismatches")]  # fmt: skip
    for variant in ("plain", "encrypted"):
        r = results[variant]
        rows.append((
            variant, f"{results['logins']:,}", f"{r['copied']:,}", f"{r['move_s']:.1f} s",
            f"{r['move_s_as_said']:.1f} s", f"{r['logins_per_s']:,}",
            f"{r['second_s']:.1f} s", str(r["second_copied"]), str(r["mismatches"]),
        ))  # fmt: skip
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  " + "  ".join(f"{v:>{w}}" for v, w in zip(row, widths, strict=True)), flush=True)


if __name__ == "__main__":
    print(asyncio.run(run(1_000)))
