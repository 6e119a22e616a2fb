"""The Redis store: one truth about every user's tokens for many workers and hosts.

Layout under the key prefix ``P`` (default ``quart_spotify_auth:``):

- ``P t:<key>``: a hash ``{v: version, d: record}``, expiring with the refresh token (six
  months after consent) or after ``idle_ttl`` seconds without a write, whichever is first;
- ``P due``: the renewal schedule, a sorted set of keys by due time;
- ``P used``: when each key was last used (for the idle policy);
- ``P lock:<key>``: the claim of the process refreshing that key, with an expiry;
- ``P p:<state>``: pending logins, expiring after the login ttl.

Writes that must not go backwards (a refresh racing a login, two workers refreshing) are Lua
scripts comparing the version, so they are atomic in Redis, and each publishes the key it
wrote on ``P written``. Reading a token is one round trip at most: each process keeps what it
read for up to ``cache_ttl`` seconds and drops it as soon as any process writes that key.
Records (and PKCE verifiers) can be encrypted at rest with Fernet keys (``cryptography``).
"""

from __future__ import annotations

import asyncio
import json
import secrets
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import replace
from typing import Any

from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from ..errors import ConfigurationError, StoreUnavailable
from ..tokens import PendingLogin, TokenRecord
from .base import TokenStore

__all__ = ["RedisTokenStore"]

_PUT = """
local v = redis.call('INCR', KEYS[3])
redis.call('HSET', KEYS[1], 'v', v, 'd', ARGV[1])
redis.call('PEXPIRE', KEYS[1], ARGV[2])
if ARGV[3] ~= '' then redis.call('ZADD', KEYS[2], ARGV[3], ARGV[4])
else redis.call('ZREM', KEYS[2], ARGV[4]) end
if ARGV[5] ~= '' then redis.call('ZADD', KEYS[4], ARGV[5], ARGV[4]) end
redis.call('PUBLISH', KEYS[5], ARGV[4])
return v
"""

_REPLACE = """
local v = redis.call('HGET', KEYS[1], 'v')
if not v or tonumber(v) ~= tonumber(ARGV[1]) then return 0 end
local n = redis.call('INCR', KEYS[3])
redis.call('HSET', KEYS[1], 'v', n, 'd', ARGV[2])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
if ARGV[4] ~= '' then redis.call('ZADD', KEYS[2], ARGV[4], ARGV[5])
else redis.call('ZREM', KEYS[2], ARGV[5]) end
redis.call('PUBLISH', KEYS[4], ARGV[5])
return n
"""

_DELETE = """
local v = redis.call('HGET', KEYS[1], 'v')
if ARGV[1] ~= '' and (not v or tonumber(v) ~= tonumber(ARGV[1])) then return 0 end
redis.call('ZREM', KEYS[2], ARGV[2])
redis.call('ZREM', KEYS[3], ARGV[2])
redis.call('PUBLISH', KEYS[4], ARGV[2])
return redis.call('DEL', KEYS[1])
"""

_GET_TOUCH = """
local r = redis.call('HMGET', KEYS[1], 'v', 'd')
if r[1] then
  redis.call('ZADD', KEYS[3], ARGV[1], ARGV[2])
  redis.call('ZADD', KEYS[2], 'LT', ARGV[1], ARGV[2])
end
return r
"""

# Take the lock if free, or if held by the same owner (ARGV[3], a prefix of its claims).
_CLAIM = """
local held = redis.call('GET', KEYS[1])
if held and (ARGV[3] == '' or string.sub(held, 1, string.len(ARGV[3])) ~= ARGV[3]) then
  return 0
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 1
"""

_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


class _Codec:
    """Serialises records; encrypts them when Fernet keys are given (the first encrypts, all
    decrypt, so keys can be rotated by putting a new one first)."""

    def __init__(self, keys: Sequence[str | bytes]) -> None:
        self._fernet: Any = None
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

    def dump(self, data: dict[str, Any]) -> bytes:
        raw = json.dumps(data, separators=(",", ":")).encode()
        return b"f" + self._fernet.encrypt(raw) if self._fernet else b"j" + raw

    def load(self, blob: bytes) -> dict[str, Any]:
        try:
            if blob[:1] == b"f":
                if self._fernet is None:
                    raise ValueError("encrypted, and no key is configured")
                blob = b"j" + self._fernet.decrypt(blob[1:])
            loaded: dict[str, Any] = json.loads(blob[1:])
        except Exception as exc:  # a wrong key (InvalidToken), a removed key, corrupt data
            raise StoreUnavailable(
                "Stored logins cannot be read with the configured keys: keep every key that "
                "encrypted them in SPOTIFY_TOKEN_ENCRYPTION_KEYS (the new one first) until "
                "they have all been rewritten."
            ) from exc
        return loaded


class RedisTokenStore(TokenStore):
    """Tokens, schedule and pending logins in Redis, shared by every worker.

    Arguments:
        url: ``redis://host:port/db`` (or ``rediss://``); or pass ``client``.
        client: a ``redis.asyncio.Redis`` the app owns (not closed by the store).
        prefix: the key prefix.
        idle_ttl: a user's keys expire after this many seconds without a write.
        encryption_keys: Fernet keys; when given, records are encrypted at rest.
        max_connections: the bound of the connection pool.
        timeout: seconds for connecting and for each command.
        cache_ttl: seconds a read may be served from this process's memory (0: never). Every
            write publishes the key and every process subscribed drops it at once, so the
            cache is only a backstop; nothing is cached while the subscription is down.
        cache_size: the most records cached per process.
    """

    shared = True

    def __init__(
        self,
        url: str | None = None,
        *,
        client: Redis | None = None,
        prefix: str = "quart_spotify_auth:",
        idle_ttl: float = 30 * 86400,
        encryption_keys: Sequence[str | bytes] = (),
        max_connections: int = 20,
        timeout: float = 2.0,
        clock: Callable[[], float] = time.time,
        cache_ttl: float = 1.0,
        cache_size: int = 10_000,
    ) -> None:
        if (url is None) == (client is None):
            raise ConfigurationError("RedisTokenStore needs a url or a client (one of them).")
        self._url = url
        self._client = client
        self._owned = client is None
        self._prefix = prefix
        self._idle_ms = int(idle_ttl * 1000)
        self._codec = _Codec(encryption_keys)
        self._max_connections = max_connections
        self._timeout = timeout
        self._clock = clock
        self._due = f"{prefix}due"
        self._used = f"{prefix}used"
        self._versions = f"{prefix}versions"  # one counter: versions are never reused
        self._channel = f"{prefix}written"  # every write script publishes the key here
        self._cache_ttl = cache_ttl
        self._cache_size = cache_size
        self._cache: dict[str, tuple[float, TokenRecord]] = {}
        self._listening = False
        self._generation = 0  # bumped by every invalidation message
        self._listener: asyncio.Task[None] | None = None

    def __repr__(self) -> str:
        where = "client" if self._url is None else self._url.split("@")[-1]
        return f"RedisTokenStore({where!r}, prefix={self._prefix!r})"

    @property
    def redis(self) -> Redis:
        """The client (created from the URL on first use; connecting is lazy)."""
        if self._client is None:
            assert self._url is not None
            pool = BlockingConnectionPool.from_url(
                self._url,
                max_connections=self._max_connections,
                timeout=self._timeout,
                socket_timeout=self._timeout,
                socket_connect_timeout=self._timeout,
                # A pooled connection that died with a Redis restart is retried once on a
                # fresh one, so the first requests after Redis comes back succeed.
                retry=Retry(ExponentialBackoff(cap=0.2, base=0.01), 1),
                retry_on_error=[RedisConnectionError, RedisTimeoutError],
            )
            self._client = Redis(connection_pool=pool)
        return self._client

    async def open(self) -> None:
        _ = self.redis
        if self._cache_ttl > 0 and self._listener is None:
            self._listener = asyncio.get_running_loop().create_task(self._listen())

    async def close(self) -> None:
        listener, self._listener = self._listener, None
        if listener is not None:
            listener.cancel()
            with suppress(asyncio.CancelledError):
                await listener
        self._listening = False
        self._cache.clear()
        if self._owned and self._client is not None:
            client, self._client = self._client, None
            await client.aclose()
            await client.connection_pool.disconnect()

    def forked(self) -> None:
        self._listener = None  # the parent's task, on the parent's loop
        self._listening = False
        self._cache.clear()
        if self._owned:
            self._client = None  # the parent's sockets and loop: start afresh, lazily

    def _tkey(self, key: str) -> str:
        return f"{self._prefix}t:{key}"

    def _ttl_ms(self, record: TokenRecord) -> int:
        left = int((record.reauthorize_by - self._clock()) * 1000)
        return max(1000, min(self._idle_ms, left))

    def _dump(self, record: TokenRecord) -> bytes:
        return self._codec.dump(
            {
                "a": record.access_token,
                "r": record.refresh_token,
                "e": record.expires_at,
                "i": record.issued_at,
                "s": " ".join(sorted(record.scopes)),
                "c": record.authorized_at,
            }
        )

    def _load(self, version: Any, blob: Any) -> TokenRecord | None:
        if version is None or blob is None:
            return None
        data = self._codec.load(_bytes(blob))
        return TokenRecord(
            access_token=data["a"],
            refresh_token=data["r"],
            expires_at=data["e"],
            issued_at=data["i"],
            scopes=frozenset(data["s"].split()),
            authorized_at=data["c"],
            version=int(version),
        )

    async def get(
        self, key: str, *, touch: float | None = None, fresh: bool = False
    ) -> TokenRecord | None:
        if touch is None and not fresh and self._listening:
            cached = self._cache.get(key)
            if cached is not None and cached[0] > time.monotonic():
                return cached[1]
        generation = self._generation
        with _unavailable():
            if touch is None:
                version, blob = await self.redis.hmget(self._tkey(key), ["v", "d"])
            else:
                keys = [self._tkey(key), self._due, self._used]
                version, blob = await self.redis.eval(_GET_TOUCH, 3, *keys, touch, key)
        record = self._load(version, blob)
        if record is None:
            self._cache.pop(key, None)
        else:
            self._remember(key, record, generation)
        return record

    # -- the local read cache, kept honest by invalidations from every writer ----------------

    def _remember(self, key: str, record: TokenRecord, generation: int) -> None:
        """Cache ``record`` unless an invalidation arrived since the read or write began
        (``generation`` taken before it): then the value may already be stale."""
        if not self._listening or self._cache_ttl <= 0 or generation != self._generation:
            return
        if len(self._cache) >= self._cache_size and key not in self._cache:
            del self._cache[next(iter(self._cache))]  # the oldest entry makes room
        self._cache[key] = (time.monotonic() + self._cache_ttl, record)

    async def _listen(self) -> None:
        """Drop cached records as any process writes them (a Redis channel every write
        script publishes to). While not subscribed, nothing is cached."""
        delay = 0.1
        while True:
            pubsub = self.redis.pubsub()
            try:
                await pubsub.subscribe(self._channel)
                self._cache.clear()  # anything may have changed while we were away
                self._listening = True
                delay = 0.1
                async for message in pubsub.listen():
                    self._generation += 1  # reads in flight now may be stale: not cached
                    if message.get("type") == "message":
                        self._cache.pop(_bytes(message["data"]).decode(), None)
                    else:  # (re)subscribed, also after redis-py reconnected by itself
                        self._cache.clear()
            except (RedisError, OSError):
                pass
            finally:
                self._listening = False
                self._cache.clear()
                with suppress(Exception):
                    await pubsub.aclose()  # type: ignore[no-untyped-call]  # untyped in redis-py
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)

    async def put(
        self, key: str, record: TokenRecord, *, due: float | None = None, used: float | None = None
    ) -> TokenRecord:
        args: list[bytes | str | float] = [
            self._dump(record),
            self._ttl_ms(record),
            "" if due is None else due,
            key,
            "" if used is None else used,
        ]
        with _unavailable():
            keys = [self._tkey(key), self._due, self._versions, self._used, self._channel]
            version = await self.redis.eval(_PUT, 5, *keys, *args)
        self._cache.pop(key, None)  # its own message would drop a cached copy anyway
        return replace(record, version=int(version))

    async def replace(
        self, key: str, old: TokenRecord, new: TokenRecord, *, due: float | None = None
    ) -> TokenRecord | None:
        args: list[bytes | str | float] = [
            old.version,
            self._dump(new),
            self._ttl_ms(new),
            "" if due is None else due,
            key,
        ]
        with _unavailable():
            keys = [self._tkey(key), self._due, self._versions, self._channel]
            version = await self.redis.eval(_REPLACE, 4, *keys, *args)
        self._cache.pop(key, None)
        return replace(new, version=int(version)) if version else None

    async def delete(self, key: str, old: TokenRecord | None = None) -> bool:
        expected = "" if old is None else old.version
        keys = [self._tkey(key), self._due, self._used, self._channel]
        self._cache.pop(key, None)
        with _unavailable():
            return bool(await self.redis.eval(_DELETE, 4, *keys, expected, key))

    async def last_used(self, key: str) -> float | None:
        with _unavailable():
            score = await self.redis.zscore(self._used, key)
        return None if score is None else float(score)

    async def reschedule(self, key: str, due: float | None) -> None:
        with _unavailable():
            if due is None:
                await self.redis.zrem(self._due, key)
            else:
                await self.redis.zadd(self._due, {key: due})

    async def due_keys(self, now: float, limit: int) -> list[str]:
        with _unavailable():
            async with self.redis.pipeline(transaction=False) as pipe:
                pipe.zrangebyscore(self._due, "-inf", now, start=0, num=limit)
                # Usage stamps of keys that expired unused go with them.
                pipe.zremrangebyscore(self._used, "-inf", now - self._idle_ms / 1000)
                keys, _ = await pipe.execute()
        return [k.decode() for k in keys]

    async def next_due(self) -> float | None:
        with _unavailable():
            first = await self.redis.zrange(self._due, 0, 0, withscores=True)
        return float(first[0][1]) if first else None

    async def claim(self, key: str, ttl: float, owner: str | None = None) -> str | None:
        prefix = f"{owner}/" if owner else ""
        claim = prefix + secrets.token_hex(8)
        ttl_ms = max(1, int(ttl * 1000))
        with _unavailable():
            taken = await self.redis.eval(
                _CLAIM, 1, f"{self._prefix}lock:{key}", claim, ttl_ms, prefix
            )
        return claim if taken else None

    async def release(self, key: str, claim: str) -> None:
        with _unavailable():
            await self.redis.eval(_RELEASE, 1, f"{self._prefix}lock:{key}", claim)

    async def add_pending(self, state: str, pending: PendingLogin, ttl: float) -> None:
        blob = self._codec.dump(
            {
                "v": pending.code_verifier,
                "u": pending.redirect_uri,
                "t": pending.created_at,
                "n": pending.next_url,
            }
        )
        with _unavailable():
            await self.redis.set(f"{self._prefix}p:{state}", blob, px=max(1, int(ttl * 1000)))

    async def pop_pending(self, state: str) -> PendingLogin | None:
        with _unavailable():
            blob = await self.redis.getdel(f"{self._prefix}p:{state}")
        if blob is None:
            return None
        data = self._codec.load(_bytes(blob))
        return PendingLogin(data["v"], data["u"], data["t"], data.get("n"))


def _bytes(value: bytes | str) -> bytes:
    return value.encode() if isinstance(value, str) else value


@contextmanager
def _unavailable() -> Iterator[None]:
    """Redis errors become a clean 503 that says what is wrong."""
    try:
        yield
    except RedisError as exc:
        raise StoreUnavailable(
            f"The login store is unavailable right now (Redis: {type(exc).__name__}). Try "
            "again shortly; your login is kept."
        ) from exc
