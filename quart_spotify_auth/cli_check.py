"""``python -m quart_spotify_auth check``: the settings as the app reads them, and a try of its
token store; and finding the app an ``--app MODULE:APP`` names (the admin commands too)."""

from __future__ import annotations

import asyncio
import importlib
import logging
import os
import sys
import warnings
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from .config import FIELDS, Settings, load_settings, mask_password, unknown_keys
from .errors import ConfigurationError
from .states import signing_key

__all__ = ["CannotLoad", "check", "load_app", "registered_core"]


def check(spec: str | None, *, timeout: float, strict: bool) -> int:
    """Read the settings as the app does, list them, and try the store. 0: all good."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", UserWarning)
        try:
            app = load_app(spec) if spec else None
            config: Mapping[str, Any] = app.config if app is not None else {}
            core = registered_core(app)
            settings = core.settings if core is not None else load_settings(config)
            if app is not None:
                signing_key(app.secret_key)
        except ConfigurationError as error:
            print(f"Configuration error: {error}", file=sys.stderr)
            return 1
        except CannotLoad as error:
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


class CannotLoad(Exception):
    """--app names nothing that can be imported, or no app."""


def load_app(spec: str) -> Any:
    """The app ``MODULE[:NAME]`` names, imported as ``flask --app`` and hypercorn do (from the
    current directory; ``NAME()`` calls a factory)."""
    module_name, _, name = spec.partition(":")
    name = name or "app"
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except ImportError as error:
        raise CannotLoad(f"{type(error).__name__}: {error}") from error
    factory = name.endswith("()")
    found = getattr(module, name.removesuffix("()"), None)
    if factory and callable(found):
        found = found()
    if not hasattr(found, "config") or not hasattr(found, "extensions"):
        raise CannotLoad(f"{module_name} has no Quart or Flask app named {name!r}.")
    return found


def registered_core(app: Any) -> Any:
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

    async def probe() -> str | None:
        await store.open()
        try:
            await store.get("check:quart-spotify-auth")
            unwritable = getattr(store, "unwritable", None)  # a SQLite file read-only
            return None if unwritable is None else "; ".join(unwritable.__notes__)
        finally:
            await store.close()

    quiet = logging.getLogger("quart_spotify_auth")
    was, quiet.disabled = quiet.disabled, True  # the error is said once, below
    try:
        unwritable = asyncio.run(asyncio.wait_for(probe(), timeout))
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
    if unwritable is not None:
        return (
            f"the token store {mask_password(str(url))} can be read but not written: {unwritable}"
        )
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
