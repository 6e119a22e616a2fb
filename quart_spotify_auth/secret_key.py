"""One secret key per host, shared by the app's workers and kept across restarts (a key made
at import gives each worker its own, and logs everyone out at each restart)."""

from __future__ import annotations

import contextlib
import os
import secrets
import stat
from pathlib import Path
from typing import Any

from .errors import ConfigurationError

__all__ = ["SECRET_KEY_FILE", "instance_secret_key"]

#: The file in the app's instance folder that keeps the generated key.
SECRET_KEY_FILE = "secret_key"

#: The shortest key accepted from the file (64 hex digits are written).
_MIN_LENGTH = 32


def instance_secret_key(app: Any, *, variable: str = "SECRET_KEY") -> str:
    """The secret key for ``app`` (a Quart or Flask app): the environment variable
    ``variable`` when it is set, else the key kept in ``<app.instance_path>/secret_key``,
    generated (64 hex digits, mode 0600) the first time.

    .. code-block:: python

        app = Quart(__name__)
        app.secret_key = instance_secret_key(app)

    Every worker of one host gets the same key, also after a restart; apps on several hosts
    set ``SECRET_KEY`` everywhere. :class:`ConfigurationError` names the fix when the key can
    be neither read nor written.
    """
    if given := os.environ.get(variable, "").strip():
        return given
    path = Path(app.instance_path) / SECRET_KEY_FILE
    try:
        if not path.exists():  # made now, unless another worker makes it first (see _create)
            path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            _create(path)
        return _read(path)
    except OSError as exc:
        raise ConfigurationError(
            f"Cannot keep the app's secret key in {path} ({exc.strerror or type(exc).__name__}). "
            f"Make the instance folder {path.parent} writable by the app, or set the {variable} "
            "environment variable to a long random string, the same in every worker: "
            'python -c "import secrets; print(secrets.token_hex(32))"'
        ) from exc


def _create(path: Path) -> None:
    """Write a fresh key to ``path`` unless another process has (written whole, then linked)."""
    draft = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    descriptor = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(descriptor, "w") as file:
            file.write(secrets.token_hex(32) + "\n")
            file.flush()
            os.fsync(file.fileno())
        with contextlib.suppress(FileExistsError):  # another worker was first: its key is it
            os.link(draft, path)
    finally:
        os.unlink(draft)


def _read(path: Path) -> str:
    with path.open(encoding="utf-8") as file:
        mode = os.fstat(file.fileno()).st_mode
        key = file.read().strip()
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        os.chmod(path, 0o600)  # readable by others: the key signs every session cookie
    if len(key) < _MIN_LENGTH:
        raise ConfigurationError(
            f"The secret key file {path} holds {len(key)} characters, too few to sign sessions "
            f"with. Delete it (a new key is made; everyone logs in again) or put a long random "
            f"string in it."
        )
    return key
