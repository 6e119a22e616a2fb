"""Logins in flight, kept nowhere: the ``state`` is ``{nonce, expiry, next}`` signed with the
app's secret key (read at each use) for its client id and redirect URI (another app refuses it),
and the PKCE verifier an HMAC of the nonce under that key (single use: :mod:`.core`)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from itsdangerous import BadSignature, Serializer, URLSafeSerializer
from itsdangerous.encoding import base64_encode

from .config import Settings
from .errors import ConfigurationError, InvalidCallback
from .tokens import Clock

__all__ = ["MAX_NEXT", "LoginStates", "PendingLogin", "signing_key"]

#: The longest ``next`` URL a login carries (longer ones are dropped: not a path of this app).
MAX_NEXT = 1024

#: A state's JSON at most this long is not compressed: its 256 random bits do not compress,
#: and zlib's set-up alone (40 µs) cost more than the rest of issuing it.
COMPRESS_ABOVE = 256


class _StateSerializer(URLSafeSerializer):
    """itsdangerous' URL-safe serializer, trying zlib only on a payload long enough to gain
    from it (a long ``next``). What it dumps, any URL-safe serializer loads, and back."""

    def dump_payload(self, obj: Any) -> bytes:
        if len(data := Serializer.dump_payload(self, obj)) > COMPRESS_ABOVE:
            return super().dump_payload(obj)
        return base64_encode(data)


@dataclass(frozen=True, slots=True)
class PendingLogin:
    """What a login state stands for, at its callback."""

    #: The PKCE verifier, or ``None`` when PKCE is off.
    code_verifier: str | None = field(repr=False)
    #: The redirect URI sent to ``/authorize`` (the exchange must repeat it).
    redirect_uri: str
    #: Where to send the browser after the login (a same-site path), if the app asked.
    next_url: str | None = None
    #: The state's random part, and when it expires (:mod:`.core` records its use under it).
    nonce: str = ""
    expires: float = 0.0


class LoginStates:
    """Issues and opens signed login states for one app."""

    def __init__(
        self, secret_key: str | bytes | Callable[[], object], settings: Settings, clock: Clock
    ) -> None:
        self._key = secret_key if callable(secret_key) else lambda: secret_key
        self._salt = f"login state for {settings.client_id} at {settings.redirect_uri}"
        self._redirect_uri = settings.redirect_uri
        self._ttl = settings.login_ttl
        self._pkce = settings.use_pkce
        self._clock = clock
        self._derived_from: object = None  # the secret key _signer and _pkce_key were made from

    def __repr__(self) -> str:
        return f"LoginStates(ttl={self._ttl}, pkce={self._pkce})"

    def issue(self, next_url: str | None = None) -> tuple[str, PendingLogin]:
        """A fresh state (256 random bits, an expiry, ``next_url``) and what it stands for."""
        nonce = secrets.token_urlsafe(32)
        data: dict[str, Any] = {"n": nonce, "e": round(self._clock() + self._ttl, 3)}
        if next_url is not None and len(next_url) <= MAX_NEXT:
            data["x"] = next_url
        return self._signer().dumps(data), self._pending(nonce, data.get("x"), data["e"])

    def open(self, state: str) -> PendingLogin:
        """What ``state`` stands for; :class:`InvalidCallback` if not signed here, or expired."""
        try:
            data = self._signer().loads(state)
        except BadSignature:
            data = None
        expires = data.get("e") if isinstance(data, dict) else None
        if not isinstance(data, dict) or not isinstance(data.get("n"), str):
            raise InvalidCallback(
                "This login callback's state was not issued by this app. Start the login again."
            )
        if not isinstance(expires, int | float) or self._clock() >= expires:
            raise InvalidCallback(
                "This login callback has expired (a login must finish within "
                f"{int(self._ttl)} seconds). Start the login again."
            )
        next_url = data.get("x")
        return self._pending(data["n"], next_url if isinstance(next_url, str) else None, expires)

    def _signer(self) -> URLSafeSerializer:
        """The signer for the app's secret key as it is now (remade only when it changed)."""
        raw = self._key()
        if raw is not self._derived_from or not raw:
            key = signing_key(raw)
            self._signing = _StateSerializer(key, salt=self._salt)
            self._pkce_key = hmac.new(key, b"quart-spotify-auth pkce", hashlib.sha256).digest()
            self._derived_from = raw
        return self._signing

    def _pending(self, nonce: str, next_url: str | None, expires: float = 0.0) -> PendingLogin:
        verifier = None
        if self._pkce:  # 43 characters of the unreserved alphabet, known only with the key
            self._signer()  # the PKCE key follows the secret key too
            digest = hmac.new(self._pkce_key, nonce.encode(), hashlib.sha256).digest()
            verifier = base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
        return PendingLogin(verifier, self._redirect_uri, next_url, nonce, expires)


def signing_key(value: object) -> bytes:
    """``app.secret_key`` as bytes; :class:`ConfigurationError` with the fix when it is unset."""
    if not value or not isinstance(value, str | bytes):
        raise ConfigurationError(
            "app.secret_key is not set: it signs each login's state and the session cookie. Set "
            "app.secret_key = instance_secret_key(app) (SECRET_KEY from the environment, else a "
            "key kept in the instance folder), or a long random string, the same in every worker."
        )
    return value.encode() if isinstance(value, str) else bytes(value)
