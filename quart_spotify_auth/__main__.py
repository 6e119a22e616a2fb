"""Command line: ``python -m quart_spotify_auth demo`` (the demo), ``fake`` (a fake Spotify for
your app), ``check`` (the settings as the app reads them, and its token store), ``logins`` (the
app's stored logins; ``logins forget``), ``migrate`` (every login to another store), ``schema``
(the SQL store's tables). ``python -m quart_spotify_auth COMMAND --help`` says more."""

from __future__ import annotations

import argparse
import asyncio
import functools
import math
import sys
from collections.abc import Coroutine, Sequence
from typing import Any

from .cli_admin import logins_command, migrate_command, on_store
from .cli_check import check
from .config import DEFAULTS
from .config import validate_redirect_uri as _valid_redirect_uri
from .errors import ConfigurationError
from .serving import PortInUse

PROG = "python -m quart_spotify_auth"


class _Formatter(argparse.ArgumentDefaultsHelpFormatter):
    """Defaults shown after each option's help, but for options with none (``None``, or a
    flag's ``False``)."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.default is None or action.default is False:
            return action.help
        return super()._get_help_string(action)


DESCRIPTION = (
    "Spotify login for Quart and Flask: the demo, a fake Spotify for your own app, a check of "
    "your app's settings and token store, its stored logins (listed, forgotten, moved to "
    "another store), and the SQL store's tables. "
    f"`{PROG} COMMAND --help` says more about each."
)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=PROG, description=DESCRIPTION, formatter_class=_Formatter)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, summary: str, description: str) -> argparse.ArgumentParser:
        return commands.add_parser(
            name, help=summary, description=description, formatter_class=_Formatter
        )

    demo = command(
        "demo",
        "serve the demo on http://127.0.0.1:PORT",
        "Serve the demo app with hypercorn on http://127.0.0.1:PORT. Without SPOTIFY_CLIENT_ID "
        "in the environment it logs in against the built-in fake Spotify (served on "
        "--fake-port, with one-minute tokens so renewal can be watched); with it, against "
        "real Spotify (register http://127.0.0.1:PORT/callback/ in the Spotify dashboard).",
    )
    demo.add_argument("--port", type=_port, default=5000, help="the demo app's port")
    demo.add_argument(
        "--fake-port", type=_port, default=None, help="the fake Spotify's port (default: PORT + 1)"
    )
    fake = command(
        "fake",
        "serve only the fake Spotify, for your own app",
        "Serve only the fake Spotify (accounts and the Web API calls this package makes) on "
        "http://127.0.0.1:PORT, for trying your own app without Spotify: point the app's "
        "SPOTIFY_ACCOUNTS_URL and SPOTIFY_API_URL at it. Users alice and bob; its consent "
        "page has Agree and Cancel.",
    )
    fake.add_argument("--port", type=_port, default=5001, help="the fake's port")
    fake.add_argument("--client-id", default="demo-client", help="the client id it accepts")
    fake.add_argument(
        "--client-secret", default=None, help="its client secret; omit for a public (PKCE) client"
    )
    fake.add_argument(
        "--redirect-uri",
        type=_redirect_uri,
        default="http://127.0.0.1/callback/",
        help="the callback it sends users back to, under Spotify's rules (127.0.0.1, not "
        "localhost); on loopback without a port it matches any port",
    )
    fake.add_argument(
        "--token-lifetime",
        type=_seconds,
        default=3600,
        help="seconds its access tokens live (more than 0)",
    )
    check = command(
        "check",
        "check the settings as the app reads them, and its token store",
        "Read the SPOTIFY_* settings with the app's own loader (app.config when --app is "
        "given, and the environment variables the app reads), print every one with where it "
        "came from (secrets masked), warn about misspelt keys and environment variables the "
        "app ignores, then open the token store and close it again. Exits 1 when the "
        "configuration cannot work or the store cannot be reached.",
    )
    check.add_argument("--app", metavar="MODULE:APP", default=None, help="check " + APP_HELP)
    check.add_argument(
        "--timeout", type=_seconds, default=10.0, help="seconds to wait for the token store"
    )
    check.add_argument("--strict", action="store_true", help="exit 1 on warnings too")
    logins = command(
        "logins",
        "list the app's stored logins, or forget some",
        "List every login in the store the app is configured with: its key, the user's id (for "
        "an app whose identity hook keys logins by its users) or 'browser', the scopes, when "
        "the user consented, when the access token expires and when it was last used. No "
        "token is ever printed. `logins forget KEY` forgets one login (the user logs in again); "
        "`logins forget --idle DAYS` forgets every login unused for that long.",
    )
    logins.add_argument(
        "action", nargs="?", choices=["forget"], help="forget KEY, or every login idle --idle DAYS"
    )
    logins.add_argument("key", nargs="?", metavar="KEY", help="the key of the login to forget")
    logins.add_argument(
        "--app", metavar="MODULE:APP", required=True, help="the logins of " + APP_HELP
    )
    logins.add_argument("--json", action="store_true", help="print the list as JSON")
    logins.add_argument(
        "--idle", type=_days, metavar="DAYS", default=None, help="with forget: days unused"
    )
    migrate = command(
        "migrate",
        "copy every login to another store",
        "Copy every login from the store the app is configured with to the store URL names "
        "(as SPOTIFY_TOKEN_STORE would), as it is stored: encrypted records stay encrypted "
        "and bound to their keys, versions and renewal times are kept. A login the target "
        "holds at the same or a newer version is left alone, so a second run copies nothing. "
        "Stop the app first; then set SPOTIFY_TOKEN_STORE to URL and start it again.",
    )
    migrate.add_argument(
        "--app", metavar="MODULE:APP", required=True, help="the logins of " + APP_HELP
    )
    migrate.add_argument("--to", metavar="URL", required=True, help="the store to copy them to")
    migrate.add_argument("--dry-run", action="store_true", help="only count what would be copied")
    schema = command(
        "schema",
        "print the SQL store's tables, for migrations",
        "Print the SQL that creates the SQL token store's tables (the store creates them itself "
        "when they are missing; this is for your own migrations).",
    )
    schema.add_argument(
        "--dialect", choices=["postgresql", "sqlite"], default="postgresql", help="the database"
    )
    schema.add_argument(
        "--prefix",
        default=DEFAULTS["SPOTIFY_TOKEN_STORE_PREFIX"],
        help="the tables' name prefix: SPOTIFY_TOKEN_STORE_PREFIX, made fit for table names "
        "as the store does (non-word characters become _, and a final _ is added)",
    )
    return parser


APP_HELP = (
    "the app, as `flask --app` and hypercorn name it (MODULE alone: its `app`; "
    "MODULE:create_app() calls a factory)"
)


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command == "logins":
        if args.action is None and (args.key or args.idle is not None):
            parser.error("a KEY or --idle goes with `logins forget`")
        if args.action == "forget" and (args.key is None) == (args.idle is None):
            parser.error("`logins forget` takes a KEY or --idle DAYS (one of them)")
        return on_store(args.app, functools.partial(logins_command, args))
    if args.command == "migrate":
        return on_store(args.app, functools.partial(migrate_command, args))
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

        if args.fake_port is not None and args.fake_port == args.port:
            print("--fake-port must differ from --port.", file=sys.stderr)
            return 2
        return _serve(run(args.port, args.fake_port))
    if args.command == "schema":
        from .stores.sqlschema import create_statements

        print(create_statements(args.dialect, args.prefix), end="")
        return 0
    return check(args.app, timeout=args.timeout, strict=args.strict)


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


# -- argument types -----------------------------------------------------------------------


def _port(text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        port = -1
    if not 0 < port < 65536:
        raise argparse.ArgumentTypeError(f"{text!r} is not a TCP port (1 to 65535)")
    return port


def _seconds(text: str) -> float:
    try:
        seconds = float(text)
    except ValueError:
        seconds = math.nan
    if not math.isfinite(seconds) or seconds <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds above 0")
    return seconds


def _days(text: str) -> float:
    try:
        return _seconds(text)
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of days above 0") from None


def _redirect_uri(text: str) -> str:
    try:
        return _valid_redirect_uri(text, name="--redirect-uri")
    except ConfigurationError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


if __name__ == "__main__":
    sys.exit(main())
