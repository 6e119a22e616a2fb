"""The Redis store: one truth about every user's tokens for many workers and hosts. Under the
key prefix ``P`` (default ``quart_spotify_auth:``):

- ``P t:<key>``: a hash ``{v: version, d: record}``, expiring with the refresh token (six
  months after consent) or after ``idle_ttl`` seconds without a write, whichever is first;
- ``P due`` and ``P used``: sorted sets of keys by due time and by last use;
- ``P versions``: one counter, so versions are never reused;
- ``P claim:<key>``: the claim of the process refreshing that key, with an expiry.

Versioned writes are Lua scripts, atomic in Redis; each publishes on ``P written`` the key of a
deletion, or a write's key, version and record, for every process's :attr:`cache`."""

from __future__ import annotations

import asyncio
import os
import secrets
import time
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import replace
from typing import Any

from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.connection import parse_url
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from ..config import DEFAULTS, mask_password
from ..errors import ConfigurationError, StoreUnavailable
from ..tasks import cancel, stop_if_cancelled
from ..tokens import TokenRecord
from .base import DUE_LEASE, Due, DueKey, Stored, TokenStore, url_or
from .cache import ReadCache
from .codec import Codec

__all__ = ["RedisTokenStore"]

from ..signals import logger
from .redisscripts import CLAIM, DELETE, DUE, MARK_USED, RELEASE, WRITE


class RedisTokenStore(TokenStore):
    """Tokens, their schedule and claims in Redis, shared by every worker.

    Arguments:
        url: ``redis://host:port/db`` (or ``rediss://``); or pass ``client``.
        client: a ``redis.asyncio.Redis`` the app owns (not closed by the store).
        prefix: the key prefix (``SPOTIFY_TOKEN_STORE_PREFIX``).
        idle_ttl: a user's keys expire after this many seconds without a write.
        encryption_keys: Fernet keys: records are encrypted at rest, each bound to its key.
        migrating: with keys, still read records written in clear or unbound (by 0.1).
        max_connections: the bound of the connection pool.
        timeout: seconds for connecting and for each command.
        cache_ttl: seconds a read may be served from this process's memory (0: never).
        cache_size: the most records cached per process.
    """

    shared = True
    cache: ReadCache

    def __init__(
        self,
        url: str | None = None,
        *,
        client: Redis | None = None,
        prefix: str = DEFAULTS["SPOTIFY_TOKEN_STORE_PREFIX"],
        idle_ttl: float = DEFAULTS["SPOTIFY_TOKEN_IDLE_TTL"],
        encryption_keys: Sequence[str | bytes] = (),
        migrating: bool = DEFAULTS["SPOTIFY_TOKEN_ENCRYPTION_MIGRATING"],
        max_connections: int = DEFAULTS["SPOTIFY_REDIS_MAX_CONNECTIONS"],
        timeout: float = 2.0,
        clock: Callable[[], float] = time.time,
        cache_ttl: float = 1.0,
        cache_size: int = 10_000,
    ) -> None:
        url_or(url, client, "RedisTokenStore", "a client")
        self._url = url
        #: The server as logs may name it: the URL without its password, or ``"client"``.
        self.where = "client" if url is None else mask_password(url)
        if url is not None:
            try:
                parse_url(url)
            except ValueError:  # its text may show the password: "Port ... as 'hunter2'"
                raise ConfigurationError(
                    f"Unreadable {self.where}: URL-encode its password"
                ) from None
        self._client = client
        self._owned = client is None
        self._prefix = prefix
        self._idle = idle_ttl
        self._codec = Codec(encryption_keys, migrating=migrating)
        self._max_connections = max_connections
        self._timeout = timeout
        self._clock = clock
        self._due = f"{prefix}due"
        self._used = f"{prefix}used"
        self._versions = f"{prefix}versions"
        self._channel = f"{prefix}written"
        self.cache = ReadCache(cache_ttl, cache_size)
        self.unreadable = 0  #: Writes heard that this process could not read (each logged).
        self._listener: asyncio.Task[None] | None = None
        self._probe: asyncio.Task[None] | None = None
        self._pid = os.getpid()

    def __repr__(self) -> str:
        return f"RedisTokenStore({self.where!r}, prefix={self._prefix!r})"

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
                # A connection that died with a Redis restart is retried on a fresh one.
                retry=Retry(ExponentialBackoff(cap=0.2, base=0.01), 4),
                retry_on_error=[RedisConnectionError, RedisTimeoutError],
            )
            self._client = Redis(connection_pool=pool)
        return self._client

    async def open(self) -> None:
        if self._pid != os.getpid():  # a forked child: the parent's sockets and tasks are not ours
            self._pid = os.getpid()
            self._listener = self._probe = None
            self.cache.listen(False)
            if self._owned:
                self._client = None
        if self.cache.ttl > 0 and self._listener is None:
            self._listener = asyncio.get_running_loop().create_task(self.cache.follow(self._listen))
        if self._probe is None:
            self._probe = asyncio.get_running_loop().create_task(self._reachable())

    async def _reachable(self) -> None:
        """One PING as the app starts, beside it: a Redis out of reach is logged once."""
        try:
            await self.redis.ping()
        except RedisError as exc:
            logger.error(
                "The token store, Redis at %s, cannot be reached (%s: %s). Requests that need "
                "it get 503 until it is back; nothing has to be restarted.",
                self.where,
                type(exc).__name__,
                mask_password(str(exc))[:200],
            )

    async def close(self) -> None:
        tasks, self._probe, self._listener = (self._probe, self._listener), None, None
        for task in tasks:
            if task is not None:
                await cancel(task)
        self.cache.listen(False)
        if self._owned and self._client is not None:
            client, self._client = self._client, None
            await client.aclose()
            await client.connection_pool.disconnect()

    async def _listen(self) -> None:
        """Report every write heard on the channel to the cache, until the connection ends or
        a PING after a quiet heartbeat goes unanswered for another."""
        pubsub = self.redis.pubsub()
        try:
            await pubsub.subscribe(self._channel)
            stop_if_cancelled()  # redis-py may have lost one connecting (tasks.cancel)
            pinged = False
            while True:
                message = await pubsub.get_message(timeout=self.cache.heartbeat)
                stop_if_cancelled()
                if message is None and pinged:
                    raise RedisTimeoutError("The change feed fell silent")
                if message is None:
                    await pubsub.ping()  # anything heard, its PONG too, shows the feed is up
                pinged = message is None
                kind = message and message.get("type")
                if kind == "message":
                    self._heard(_bytes(message["data"]))
                elif kind == "subscribe":  # also after redis-py reconnected by itself
                    self.cache.listen(True)  # heard from now on: start afresh
        finally:
            with suppress(Exception):
                await pubsub.aclose()  # type: ignore[no-untyped-call,unused-ignore]

    def _heard(self, data: bytes) -> None:
        """A deletion names its key; a write is ``\\0version:length:key`` and the stored blob."""
        key = None
        try:
            if not data.startswith(b"\0"):
                self.cache.changed(data.decode())
                return
            version, length, rest = data[1:].split(b":", 2)
            key, blob = rest[: int(length)].decode(), rest[int(length) :]
            self.cache.changed(key)
            self.cache.heard(key, self._codec.load_record(key, blob, int(version)))
        except Exception as exc:  # malformed, a key this process lacks: never its content
            self.cache.changed(key)  # None: anything may have changed
            self.unreadable += 1
            logger.warning(
                "Unreadable write %d on %s (%s)", self.unreadable, self._channel, type(exc).__name__
            )

    def _tkey(self, key: str) -> str:
        return f"{self._prefix}t:{key}"

    def _ttl_ms(self, record: TokenRecord) -> int:
        left = record.reauthorize_by - self._clock()
        return max(1000, int(min(self._idle, left) * 1000))

    async def get(self, key: str) -> TokenRecord | None:
        with _unavailable():
            version, blob = await self.redis.hmget(self._tkey(key), ["v", "d"])
        if version is None or blob is None:
            return None
        return self._codec.read(key, _bytes(blob), int(version))

    async def put(
        self, key: str, record: TokenRecord, *, due: float | None = None, used: float | None = None
    ) -> TokenRecord:
        return replace(record, version=await self._write(key, record, due, used, ""))

    async def replace(
        self, key: str, old: TokenRecord, new: TokenRecord, *, due: float | None = None
    ) -> TokenRecord | None:
        version = await self._write(key, new, due, None, old.version)
        return replace(new, version=version) if version else None

    async def _write(
        self, key: str, record: TokenRecord, due: float | None, used: float | None, over: int | str
    ) -> int:
        with _unavailable():
            return int(await self.redis.eval(*self._writing(key, record, due, used, over)))

    def _writing(
        self,
        key: str,
        record: TokenRecord,
        due: float | None,
        used: float | None,
        over: int | str,
        moved: Stored | None = None,
    ) -> list[Any]:
        """The arguments of :data:`WRITE`; a ``moved`` login keeps its blob and version."""
        blob = moved.blob if moved else self._codec.record(key, record)
        keys = [self._tkey(key), self._due, self._versions, self._used, self._channel]
        due_at, used_at = ("" if at is None else at for at in (due, used))  # "": none
        adopted = [moved.version] if moved else []
        return [WRITE, 5, *keys, blob, self._ttl_ms(record), due_at, key, used_at, over, *adopted]

    def stored(self, page: int = 500) -> AsyncIterator[list[Stored]]:
        return self._stored(page)

    async def _stored(self, page: int) -> AsyncIterator[list[Stored]]:
        start, cursor = len(self._tkey("")), 0
        match = "".join("\\" + c if c in "*?[]\\" else c for c in self._tkey("")) + "*"
        while True:
            with _unavailable():
                cursor, names = await self.redis.scan(cursor, match=match, count=page)
                batch = self.redis.pipeline(transaction=False)
                keys = [_bytes(name).decode()[start:] for name in names]
                for key in keys:
                    batch.hmget(self._tkey(key), ["v", "d"])
                    batch.zscore(self._due, key)
                    batch.zscore(self._used, key)
                found = await batch.execute()
            rows = []
            for key, (version, blob), due, used in zip(keys, *[iter(found)] * 3, strict=True):
                if version is not None and blob is not None:
                    blob, version = _bytes(blob), int(version)
                    record = self._codec.readable(key, blob, version)
                    rows.append(Stored(key, version, blob, record, due, used))
            if rows:
                yield rows
            if cursor == 0:
                return

    async def adopt(self, rows: Sequence[Stored]) -> int:
        batch = self.redis.pipeline(transaction=False)
        for row in rows:
            if row.record is not None and row.record.reauthorize_by > self._clock():
                batch.eval(*self._writing(row.key, row.record, row.due, row.used, "", row))
        with _unavailable():
            return sum(map(bool, await batch.execute()))

    async def delete(self, key: str, old: TokenRecord | None = None) -> bool:
        expected = "" if old is None else old.version
        keys = [self._tkey(key), self._due, self._used, self._channel]
        with _unavailable():
            return bool(await self.redis.eval(DELETE, 4, *keys, expected, key))

    async def reschedule(self, key: str, due: float | None) -> None:
        with _unavailable():
            if due is None:
                await self.redis.zrem(self._due, key)
            else:
                await self.redis.zadd(self._due, {key: due})

    async def mark_used(self, key: str, at: float) -> None:
        with _unavailable():
            await self.redis.eval(MARK_USED, 3, self._tkey(key), self._due, self._used, at, key)

    async def due(self, now: float, limit: int) -> Due:
        with _unavailable():
            found, first = await self.redis.eval(
                DUE, 2, self._due, self._used, now, limit, now - self._idle, now + DUE_LEASE
            )
        pairs = zip(found[::2], found[1::2], strict=True)
        keys = [DueKey(_bytes(k).decode(), float(used) if used else None) for k, used in pairs]
        return Due(keys, float(first[1]) if first else None)

    async def claim(self, key: str, ttl: float, owner: str) -> str | None:
        prefix = f"{owner}/"
        claim = prefix + secrets.token_hex(8)
        with _unavailable():
            taken = await self.redis.eval(
                CLAIM, 1, f"{self._prefix}claim:{key}", claim, max(1, int(ttl * 1000)), prefix
            )
        return claim if taken else None

    async def release(self, key: str, claim: str) -> None:
        with _unavailable():
            await self.redis.eval(RELEASE, 1, f"{self._prefix}claim:{key}", claim)


def _bytes(value: Any) -> bytes:
    return value.encode() if isinstance(value, str) else bytes(value)


@contextmanager
def _unavailable() -> Iterator[None]:
    """Redis errors become a clean 503 that says what is wrong."""
    try:
        yield
    except RedisError as exc:
        raise StoreUnavailable.of("Redis", exc, "Redis", mask_password(str(exc))[:200]) from exc
