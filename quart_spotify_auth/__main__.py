"""Command line: ``python -m quart_spotify_auth demo`` (the demo), ``fake`` (a fake Spotify for
your app), ``check`` (the settings in the environment), ``schema`` (the SQL store's tables)."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Coroutine, Sequence
from typing import Any

from .config import DEFAULTS, load_settings
from .errors import ConfigurationError
from .serving import PortInUse


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m quart_spotify_auth")
    commands = parser.add_subparsers(dest="command", required=True)
    demo = commands.add_parser("demo", help="serve the demo on http://127.0.0.1:PORT")
    demo.add_argument("--port", type=int, default=5000)
    demo.add_argument("--fake-port", type=int, default=None, help="default: PORT + 1")
    fake = commands.add_parser("fake", help="serve only the fake Spotify, for your own app")
    fake.add_argument("--port", type=int, default=5001)
    fake.add_argument("--client-id", default="demo-client")
    fake.add_argument("--client-secret", default=None, help="omit for a public (PKCE) client")
    fake.add_argument("--redirect-uri", default="http://127.0.0.1/callback/")
    fake.add_argument("--token-lifetime", type=float, default=3600)
    commands.add_parser("check", help="check the SPOTIFY_* settings in the environment")
    schema = commands.add_parser("schema", help="print the SQL store's tables, for migrations")
    schema.add_argument("--dialect", choices=["postgresql", "sqlite"], default="postgresql")
    schema.add_argument("--prefix", default="quart_spotify_auth_", help="the tables' prefix")
    args = parser.parse_args(argv)
    if args.command == "fake":
        from .demo import run_fake

        return _serve(
            run_fake(
                args.port,
                client_id=args.client_id,
                client_secret=args.client_secret,
                redirect_uri=args.redirect_uri,
                access_ttl=args.token_lifetime,
            )
        )
    if args.command == "demo":
        from .demo import run

        return _serve(run(args.port, args.fake_port))
    if args.command == "schema":
        from .stores.sqlschema import create_statements

        print(create_statements(args.dialect, args.prefix), end="")
        return 0
    config = {key: os.environ[key] for key in DEFAULTS if key in os.environ}
    try:
        settings = load_settings(config, {})
    except ConfigurationError as error:
        print(f"Configuration error: {error}", file=sys.stderr)
        return 1
    print(f"OK: {settings!r}")
    return 0


def _serve(work: Coroutine[Any, Any, None]) -> int:
    """Serve until interrupted; a port another program holds is an error that says so."""
    try:
        asyncio.run(work)
    except KeyboardInterrupt:
        pass
    except PortInUse as error:
        print(f"Cannot serve: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
