"""Token records as bytes, encrypted at rest with Fernet keys (the first encrypts, all of them
decrypt). An encrypted record is bound to its store key, checked on reading: someone who can write
to the store without a key can neither move a victim's record under their own key nor plant one
in clear (:class:`Unbound`). Records in clear or unbound (0.1) are read only while ``migrating``."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from ..errors import ConfigurationError, StoreUnavailable
from ..signals import logger
from ..tokens import TokenRecord

__all__ = ["Codec", "Unbound"]


class Unbound(Exception):
    """A record that is not an encrypted record of the key it is stored under."""


class Codec:
    """Turns records into bytes and back."""

    def __init__(self, keys: Sequence[str | bytes] = (), *, migrating: bool = False) -> None:
        self._fernet: Any = None
        self._migrating = migrating
        if keys:
            try:
                from cryptography.fernet import Fernet, MultiFernet
            except ImportError:  # pragma: no cover - depends on the environment
                raise ConfigurationError(
                    "SPOTIFY_TOKEN_ENCRYPTION_KEYS needs the cryptography package: "
                    "pip install 'quart-spotify-auth[redis]'."
                ) from None
            try:
                self._fernet = MultiFernet([Fernet(key) for key in keys])
            except ValueError:
                raise ConfigurationError(
                    "SPOTIFY_TOKEN_ENCRYPTION_KEYS must be Fernet keys (32 url-safe base64 "
                    "bytes each); make one with cryptography.fernet.Fernet.generate_key()."
                ) from None

    def record(self, key: str, record: TokenRecord) -> bytes:
        data = {
            "k": key,
            "a": record.access_token,
            "r": record.refresh_token,
            "e": record.expires_at,
            "i": record.issued_at,
            "s": " ".join(sorted(record.scopes)),
            "c": record.authorized_at,
        }
        raw = json.dumps(data, separators=(",", ":")).encode()
        return b"f" + self._fernet.encrypt(raw) if self._fernet else b"j" + raw

    def read(self, key: str, blob: bytes, version: int) -> TokenRecord | None:
        """:meth:`load_record`, or ``None`` (logged) for a record refused as :class:`Unbound`."""
        try:
            return self.load_record(key, blob, version)
        except Unbound:
            logger.warning("A stored record is not bound to its key; it was refused")
            return None

    def readable(self, key: str, blob: bytes, version: int) -> TokenRecord | None:
        """:meth:`load_record`, or ``None`` for one it refuses (for listings: nothing logged)."""
        try:
            return self.load_record(key, blob, version)
        except (Unbound, StoreUnavailable):
            return None

    def load_record(self, key: str, blob: bytes, version: int) -> TokenRecord:
        try:
            raw = blob[1:]
            if blob[:1] == b"f":
                if self._fernet is None:
                    raise ValueError("encrypted, and no key is configured")
                raw = self._fernet.decrypt(raw)
            data: dict[str, Any] = json.loads(raw)
        except Exception as exc:  # a wrong key (InvalidToken), a removed key, corrupt data
            raise StoreUnavailable(
                "Stored logins cannot be read with the configured keys: keep every key that "
                "encrypted them in SPOTIFY_TOKEN_ENCRYPTION_KEYS (the new one first) until "
                "they have all been rewritten."
            ) from exc
        if "k" in data and data["k"] != key:
            raise Unbound(key)  # a record moved from another key: never, migrating or not
        encrypted_and_bound = blob[:1] == b"f" and "k" in data
        if self._fernet is not None and not encrypted_and_bound and not self._migrating:
            raise Unbound(key)
        return TokenRecord(
            access_token=data["a"],
            refresh_token=data["r"],
            expires_at=data["e"],
            issued_at=data["i"],
            scopes=frozenset(data["s"].split()),
            authorized_at=data["c"],
            version=version,
        )
