"""``python -m quart_spotify_auth logins`` (and ``logins forget``) and ``migrate``: an app's
stored logins, listed, forgotten or copied to another store, never a token shown."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import logging
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

from .cli_check import CannotLoad, load_app, registered_core
from .config import mask_password, store_url
from .errors import ConfigurationError

__all__ = ["logins_command", "migrate_command", "on_store"]


def on_store(spec: str, work: Callable[[Any, Any], Awaitable[int]]) -> int:
    """Run ``work(app, core)`` with the app's core, its store open; 1 (said why) on failure."""
    from .errors import SpotifyAuthError

    try:
        app = load_app(spec)
        core = registered_core(app)
    except (CannotLoad, ConfigurationError) as error:
        print(f"Cannot load the app {spec}: {error}", file=sys.stderr)
        return 1
    if core is None:
        print(f"{spec} has no SpotifyAuth(app) or init_app(app).", file=sys.stderr)
        return 1
    if not core.store.shared:  # the memory store: its logins live in the app's process
        print(f"{spec} keeps its logins in {core.store!r}, out of reach here.", file=sys.stderr)
        return 1

    async def run() -> int:
        await core.store.open()
        try:
            return await work(app, core)
        finally:
            await core.store.close()

    quiet = logging.getLogger("quart_spotify_auth")
    was, quiet.disabled = quiet.disabled, True  # an error is said once, below, with its notes
    try:
        return asyncio.run(run())
    except (SpotifyAuthError, ConfigurationError, OSError) as error:
        said = getattr(error, "description", None) or str(error)
        print(f"Error: {said}", *getattr(error, "__notes__", ()), sep="\n", file=sys.stderr)
        return 1
    finally:
        quiet.disabled = was


async def logins_command(args: argparse.Namespace, _app: Any, core: Any) -> int:
    from .logins import logins

    if args.action == "forget" and args.key is not None:
        if await core.forget(args.key):
            print(f"Forgot the login {args.key}.")
            return 0
        print(f"No login is stored under {args.key!r} (`logins` lists them).", file=sys.stderr)
        return 1
    if args.action == "forget":
        before, forgotten = time.time() - args.idle * 86400, 0
        async for login in logins(core.store):
            last = login.last_used if login.last_used is not None else login.authorized_at
            if last is not None and last < before:
                forgotten += await core.forget(login.key)
        print(f"Forgot {forgotten} login(s) unused for {args.idle:g} days.")
        return 0
    found = [login async for login in logins(core.store)]
    if args.json:
        print(json.dumps([login.as_dict() for login in found], indent=1))
        return 0
    rows: list[tuple[str, ...]] = [("KEY", "USER", "CONSENTED", "EXPIRES", "LAST USED", "SCOPES")]
    for login in found:
        when = [_when(t) for t in (login.authorized_at, login.expires_at, login.last_used)]
        scopes = " ".join(sorted(login.scopes)) if login.readable else "(unreadable with the keys)"
        rows.append((login.key, login.user_id or "browser", *when, scopes))
    widths = [max(len(row[i]) for row in rows) for i in range(5)]
    for row in rows:
        print("  ".join(f"{v:<{w}}" for v, w in zip(row, widths, strict=False)) + "  " + row[5])
    print(f"{len(found)} login(s) in {core.store!r}.")
    return 0


def _when(at: float | None) -> str:
    return "-" if at is None else time.strftime("%Y-%m-%d %H:%MZ", time.gmtime(at))


async def migrate_command(args: argparse.Namespace, app: Any, core: Any) -> int:
    from .logins import move
    from .stores import open_store

    to = store_url("--to", args.to)  # as SPOTIFY_TOKEN_STORE is read: postgres:// too
    if to in (None, "memory"):  # memory: gone when this command ends, with every login
        said = "names no store" if to is None else "memory keeps nothing once this command ends"
        raise ConfigurationError(
            f"--to {said}. Name the store the app will use next: "
            "sqlite:////absolute/path/tokens.sqlite3, postgresql://user:password@host/db or "
            "redis://host:port/db."
        )
    settings = dataclasses.replace(core.settings, token_store=to)
    target = open_store(settings, core.clock, app.instance_path)
    if repr(target) == repr(core.store):
        print(f"--to names the store the app uses already: {target!r}.", file=sys.stderr)
        return 1
    await target.open()
    try:
        moved = await move(core.store, target, dry_run=args.dry_run)
    finally:
        await target.close()
    where = mask_password(to)
    done = "would be copied" if args.dry_run else "copied"
    print(
        f"{moved.copied} login(s) {done} from {core.store!r} to {where} in {moved.seconds:.1f} s; "
        f"{moved.current} already there (the same or newer)."
    )
    if moved.unreadable:
        print(
            f"{moved.unreadable} login(s) could not be read with SPOTIFY_TOKEN_ENCRYPTION_KEYS "
            "and were left behind.",
            file=sys.stderr,
        )
    if not args.dry_run:
        print(f"Next: set SPOTIFY_TOKEN_STORE={where} and start the app again.")
    return 0
