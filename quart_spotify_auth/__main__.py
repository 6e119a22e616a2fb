"""Command line: ``python -m quart_spotify_auth demo`` (the demo), ``fake`` (a fake Spotify for
your app), ``check`` (the settings as the app reads them, and its token store), ``logins`` (the
app's stored logins; ``logins forget``), ``migrate`` (every login to another store), ``schema``
(the SQL store's tables). ``python -m quart_spotify_auth COMMAND --help`` says more."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import functools
import importlib
import json
import logging
import math
import os
import sys
import time
import warnings
from collections.abc import Awaitable, Callable, Coroutine, Mapping, Sequence
from typing import Any
from urllib.parse import urlsplit

from .config import DEFAULTS, FIELDS, Settings, load_settings, mask_password, unknown_keys
from .config import validate_redirect_uri as _valid_redirect_uri
from .errors import ConfigurationError
from .serving import PortInUse
from .states import signing_key

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
        return _on_store(args.app, functools.partial(_logins, args))
    if args.command == "migrate":
        return _on_store(args.app, functools.partial(_migrate, args))
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
    return _check(args.app, timeout=args.timeout, strict=args.strict)


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


# -- logins and migrate -------------------------------------------------------------------


def _on_store(spec: str, work: Callable[[Any, Any], Awaitable[int]]) -> int:
    """Run ``work(app, core)`` with the app's core, its store open; 1 (said why) on failure."""
    from .errors import SpotifyAuthError

    try:
        app = _load_app(spec)
        core = _registered_core(app)
    except (_CannotLoad, ConfigurationError) as error:
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
    except (SpotifyAuthError, OSError) as error:
        said = getattr(error, "description", None) or str(error)
        print(f"Error: {said}", *getattr(error, "__notes__", ()), sep="\n", file=sys.stderr)
        return 1
    finally:
        quiet.disabled = was


async def _logins(args: argparse.Namespace, _app: Any, core: Any) -> int:
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


async def _migrate(args: argparse.Namespace, app: Any, core: Any) -> int:
    from .logins import move
    from .stores import open_store

    settings = dataclasses.replace(core.settings, token_store=args.to)
    target = open_store(settings, core.clock, app.instance_path)
    if repr(target) == repr(core.store):
        print(f"--to names the store the app uses already: {target!r}.", file=sys.stderr)
        return 1
    await target.open()
    try:
        moved = await move(core.store, target, dry_run=args.dry_run)
    finally:
        await target.close()
    where = mask_password(args.to)
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


# -- check --------------------------------------------------------------------------------


def _check(spec: str | None, *, timeout: float, strict: bool) -> int:
    """Read the settings as the app does, list them, and try the store. 0: all good."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", UserWarning)
        try:
            app = _load_app(spec) if spec else None
            config: Mapping[str, Any] = app.config if app is not None else {}
            core = _registered_core(app)
            settings = core.settings if core is not None else load_settings(config)
            if app is not None:
                signing_key(app.secret_key)
        except ConfigurationError as error:
            print(f"Configuration error: {error}", file=sys.stderr)
            return 1
        except _CannotLoad as error:
            print(f"Cannot load the app {spec}: {error}", file=sys.stderr)
            return 1
    said = [str(w.message) for w in caught if issubclass(w.category, UserWarning)]
    notes = list(dict.fromkeys([*unknown_keys(config), *(s for s in said if "SPOTIFY" in s)]))
    instance = getattr(app, "instance_path", None)
    store_error = _try_store(core, settings, instance, timeout)
    listing = _listing(settings, config, instance)
    for note in notes:
        print(f"Warning: {note}", file=sys.stderr)
    if store_error is not None:
        print(listing)
        print(f"Store error: {store_error}", file=sys.stderr)
        return 1
    what = f"the app {spec}" if spec else "the settings in the environment"
    if core is None and instance is None and _in_instance_folder(settings.token_store):
        store = "the store (SQLite in the app's instance folder) is tried with --app"
    else:
        store = "the token store answered"
    warned = f"; {len(notes)} warning(s), on stderr" if notes else ""
    if strict and notes:
        print(
            f"Not OK under --strict: {what} can work, but has {len(notes)} warning(s), on stderr."
        )
    else:
        print(f"OK: {what} can work; {store}{warned}.")
    print(listing)
    return 1 if strict and notes else 0


class _CannotLoad(Exception):
    """--app names nothing that can be imported, or no app."""


def _load_app(spec: str) -> Any:
    """The app ``MODULE[:NAME]`` names, imported as ``flask --app`` and hypercorn do (from the
    current directory; ``NAME()`` calls a factory)."""
    module_name, _, name = spec.partition(":")
    name = name or "app"
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except ImportError as error:
        raise _CannotLoad(f"{type(error).__name__}: {error}") from error
    factory = name.endswith("()")
    found = getattr(module, name.removesuffix("()"), None)
    if factory and callable(found):
        found = found()
    if not hasattr(found, "config") or not hasattr(found, "extensions"):
        raise _CannotLoad(f"{module_name} has no Quart or Flask app named {name!r}.")
    return found


def _registered_core(app: Any) -> Any:
    """The core ``SpotifyAuth(app)`` built for ``app``, if it was: its settings and store are
    the app's own (keyword arguments and a ``store=`` included)."""
    from .core import EXTENSION_KEY, Core

    found = None if app is None else app.extensions.get(EXTENSION_KEY)
    core = getattr(found, "_core", found)  # the Flask shim keeps its core, not started, there
    return core if isinstance(core, Core) else None


def _try_store(core: Any, settings: Settings, instance: str | None, timeout: float) -> str | None:
    """Open the token store, read one key, close it: ``None``, or what went wrong."""
    from .stores import SQLITE_FILE, open_store

    if core is not None:
        store, url = core.store, settings.token_store
    elif instance is None and _in_instance_folder(settings.token_store):
        return None  # a SQLite file in the app's instance folder: --app names the folder
    else:
        url = settings.token_store
        try:
            store = open_store(settings, instance_path=instance or "instance")
        except (ConfigurationError, OSError) as error:
            return f"the token store {mask_password(str(url))} cannot be opened: {error}"
    if url is None and instance is not None:
        url = "sqlite:///" + os.path.join(instance, SQLITE_FILE)

    async def probe() -> None:
        await store.open()
        try:
            await store.get("check:quart-spotify-auth")
        finally:
            await store.close()

    quiet = logging.getLogger("quart_spotify_auth")
    was, quiet.disabled = quiet.disabled, True  # the error is said once, below
    try:
        asyncio.run(asyncio.wait_for(probe(), timeout))
    except TimeoutError:
        return f"the token store {mask_password(str(url))} did not answer within {timeout:g} s."
    except Exception as error:
        said = getattr(error, "description", None) or f"{type(error).__name__}: {error}"
        said = said.replace(" Try again shortly; your login is kept.", "")
        cause = error.__cause__
        if cause is not None and str(cause) and str(cause) not in said:
            said += f" {type(cause).__name__}: {str(cause).splitlines()[0][:200]}"
        return f"the token store {mask_password(str(url))} cannot be reached: {_scrub(said, url)}"
    finally:
        quiet.disabled = was
    return None


def _in_instance_folder(url: str | None) -> bool:
    """Whether the store is a SQLite file in the app's instance folder: the default, or a
    relative ``sqlite:///`` path."""
    scheme = "sqlite:///"
    return url is None or (url.startswith(scheme) and not os.path.isabs(url[len(scheme) :]))


def _listing(settings: Settings, config: Mapping[str, Any], instance: str | None) -> str:
    """Every setting, its value as the app uses it (secrets masked), and where it came from."""
    arguments = _arguments(settings, config)
    rows = []
    for key, field in FIELDS.items():
        value = getattr(settings, field.name)
        source = "SpotifyAuth(...) argument" if key in arguments else _source(key, config)
        rows.append((key, _shown(key, value, instance), source))
    width = max(len(key) for key, _, _ in rows)
    values = min(max(len(value) for _, value, _ in rows), 50)
    return "\n".join(f"  {k:<{width}}  {v:<{values}}  {s}" for k, v, s in rows)


def _shown(key: str, value: Any, instance: str | None) -> str:
    if key == "SPOTIFY_CLIENT_SECRET":
        return "None (a public client: PKCE only)" if value is None else "'***'"
    if key == "SPOTIFY_TOKEN_ENCRYPTION_KEYS":
        return "None (in clear)" if not value else f"{len(value)} key(s), '***'"
    if key == "SPOTIFY_TOKEN_STORE":
        if value is None:
            where = instance or "the app's instance folder"
            return f"None (SQLite in {where})"
        return repr(mask_password(value))
    if key == "SPOTIFY_SCOPES":
        return repr(" ".join(value))
    return repr(value)


def _arguments(settings: Settings, config: Mapping[str, Any]) -> set[str]:
    """The keys whose value the app's ``SpotifyAuth(...)`` keyword arguments gave: those
    where its settings differ from what ``config`` and the environment give alone."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            alone = load_settings({**config, "SPOTIFY_CLIENT_ID": settings.client_id})
        except ConfigurationError:
            return set()  # config alone cannot work: an argument fixed it, which one is unsaid
    given = {k for k, f in FIELDS.items() if getattr(alone, f.name) != getattr(settings, f.name)}
    if config.get("SPOTIFY_CLIENT_ID") is None and not os.environ.get("SPOTIFY_CLIENT_ID"):
        given.add("SPOTIFY_CLIENT_ID")
    return given


def _source(key: str, config: Mapping[str, Any]) -> str:
    if config.get(key) is not None:
        return "app.config"
    if os.environ.get(key):
        return "environment" if FIELDS[key].metadata["env"] else "default (environment ignored)"
    return "default"


def _scrub(text: str, url: str | None) -> str:
    """An error's text without the store URL's password, should a driver repeat it."""
    password = urlsplit(url).password if url else None
    return text.replace(password, "***") if password else text


if __name__ == "__main__":
    sys.exit(main())
