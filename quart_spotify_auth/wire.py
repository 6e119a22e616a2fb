"""The transport under the token requests' httpx client: HTTP/1.1 keep-alive connections on
asyncio itself, parsed by h11 (the parser httpx's own transport uses).

Why: a token request's reply is handled on the event loop that serves the app's requests, and
httpx's default transport (httpcore's pool over anyio) spends several times the CPU of the
exchange itself there. Every renewal and every login pays it, and requests arriving meanwhile
wait for it: it is most of what a renewal adds to the latency tail (``docs/benchmarks.md``,
the rollover). The client above stays httpx's (``AsyncClient``: auth, timeouts, the
``Response``, its errors); only the connections are ours.

It is used only for ``https`` and ``http`` URLs with no proxy in the environment (else the
client gets httpx's own transport, as before), and never when the app passes ``transport=``.
It speaks HTTP/1.1 only, which is all Spotify's accounts service needs.
"""

from __future__ import annotations

import asyncio
import contextlib
import select
import ssl
import time
import urllib.request
from collections import deque
from types import ModuleType
from typing import Any, NamedTuple

import h11

from .tasks import PerLoop

__all__ = ["KEEPALIVE_EXPIRY", "TokenTransport", "lean_transport_for"]

#: An idle connection is closed after this many seconds unused: below the 5 s after which
#: many servers (hypercorn among them) close theirs, so a request never races that close.
KEEPALIVE_EXPIRY = 4.0

_Origin = tuple[str, str, int]  # scheme, host, port


def lean_transport_for(lib: ModuleType, url: str, *, max_connections: int, keepalive: int) -> Any:
    """A :class:`TokenTransport` of ``lib`` (httpx or httpx2) for requests to ``url``, or
    ``None`` where httpx's own transport must go (a proxy set in the environment, which a
    client given a transport would ignore; a scheme other than http and https)."""
    scheme = url.partition("://")[0].lower()
    proxies = urllib.request.getproxies()  # what httpx reads: *_PROXY, any case
    if scheme not in ("http", "https") or any(k in proxies for k in (scheme, "all")):
        return None
    return TokenTransport(
        lib, max_connections=max_connections, keepalive=keepalive, tls=scheme == "https"
    )


class _Wire(asyncio.Protocol):
    """One connection's bytes: what arrived and not yet parsed, and whether it has ended."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.received = bytearray()
        self.ended = False
        self.error: Exception | None = None  # how the connection was lost, if not cleanly
        self._waiter: asyncio.Future[None] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.received += data
        self._wake()

    def eof_received(self) -> bool:
        self.ended = True
        self._wake()
        return False  # close our side too

    def connection_lost(self, exc: Exception | None) -> None:
        self.ended = True
        self.error = exc
        self._wake()

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    async def receive(self) -> bytes:
        """What has arrived (waiting for some), or ``b""`` once the peer has closed."""
        while not self.received and not self.ended:
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        data = bytes(self.received)
        self.received.clear()
        return data

    def close(self) -> None:
        self.ended = True
        if self.transport is not None:
            self.transport.close()


class _Reply(NamedTuple):
    """A whole reply as read, and whether its connection may serve another request."""

    status: int
    headers: list[tuple[bytes, bytes]]
    version: bytes
    reason: bytes
    content: bytes
    reusable: bool


class _Connection:
    """A connection and its h11 state machine, reused for request after request."""

    __slots__ = ("h11", "idle_since", "wire")

    def __init__(self, wire: _Wire) -> None:
        self.wire = wire
        self.h11 = h11.Connection(h11.CLIENT)
        self.idle_since = 0.0

    def reusable(self, now: float) -> bool:
        """Idle, open, not expired, with nothing unasked-for arrived (a late 408, a close):
        neither heard by the loop nor waiting unread on the socket (a busy loop has not read
        the server's close yet, and a request sent on it would be lost)."""
        wire = self.wire
        if wire.ended or wire.received or now - self.idle_since >= KEEPALIVE_EXPIRY:
            return False
        sock = wire.transport.get_extra_info("socket") if wire.transport else None
        if sock is None:
            return False
        return not _readable(sock.fileno())


class _Pool:
    """One event loop's connections (a connection serves the loop that opened it)."""

    __slots__ = ("idle", "loop", "slots")

    def __init__(self, max_connections: int) -> None:
        self.loop = asyncio.get_running_loop()
        self.slots = asyncio.Semaphore(max_connections)
        self.idle: dict[_Origin, deque[_Connection]] = {}

    def close(self) -> None:
        """Close the idle connections, on their own loop's thread if it is another's."""
        wires = [conn.wire for conns in self.idle.values() for conn in conns]
        self.idle.clear()
        try:
            here = asyncio.get_running_loop() is self.loop
        except RuntimeError:
            here = False
        for wire in wires:
            with contextlib.suppress(RuntimeError):  # that loop is closed, its sockets with it
                if here:
                    wire.close()
                else:
                    self.loop.call_soon_threadsafe(wire.close)


class TokenTransport:
    """An async httpx (or httpx2) transport: at most ``max_connections`` at once, up to
    ``keepalive`` kept open while idle, per origin and event loop; TLS verified as httpx
    verifies it (``create_ssl_context``: certifi's roots, or ``SSL_CERT_FILE``)."""

    def __init__(
        self, lib: ModuleType, *, max_connections: int, keepalive: int, tls: bool = False
    ) -> None:
        self._lib = lib
        self._keepalive = keepalive
        #: Made here for an https service (reading the roots takes tens of ms: not on the
        #: serving loop's first token request), else on the first https request.
        self._ssl: ssl.SSLContext | None = lib.create_ssl_context() if tls else None
        self._pools = PerLoop(lambda: _Pool(max_connections))
        self._closed = False

    def __repr__(self) -> str:
        idle = sum(len(conns) for pool in self._pools.made() for conns in pool.idle.values())
        return f"TokenTransport({idle} idle)"

    async def __aenter__(self) -> TokenTransport:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the idle connections; those in use close when their reply is read."""
        self._closed = True
        for pool in self._pools.made():
            pool.close()

    async def handle_async_request(self, request: Any) -> Any:
        lib = self._lib
        timeouts: dict[str, float | None] = request.extensions.get("timeout", {})
        url = request.url
        origin = (url.scheme, url.host, url.port or (443 if url.scheme == "https" else 80))
        body = await request.aread()
        pool = self._pools.get()
        try:
            async with asyncio.timeout(timeouts.get("pool")):
                await pool.slots.acquire()
        except TimeoutError as exc:
            raise lib.PoolTimeout("No connection free in the pool in time") from exc
        try:
            conn = _reused(pool, origin) or await self._connect(origin, timeouts.get("connect"))
            reply = await self._exchange(conn, request, body, timeouts)
            if reply.reusable:
                self._keep(pool, origin, conn)
        finally:
            pool.slots.release()
        return lib.Response(
            reply.status,
            headers=reply.headers,
            stream=lib.ByteStream(reply.content),
            extensions={"http_version": reply.version, "reason_phrase": reply.reason},
        )

    async def _connect(self, origin: _Origin, timeout: float | None) -> _Connection:
        scheme, host, port = origin
        context = None
        if scheme == "https":
            if self._ssl is None:
                self._ssl = self._lib.create_ssl_context()
            context = self._ssl
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(timeout):
                _, wire = await loop.create_connection(
                    _Wire, host, port, ssl=context, server_hostname=host if context else None
                )
        except TimeoutError as exc:
            raise self._lib.ConnectTimeout(f"Connecting to {host}:{port} timed out") from exc
        except OSError as exc:  # ssl.SSLError (a certificate refused) is one
            raise self._lib.ConnectError(f"Could not connect to {host}:{port}: {exc}") from exc
        return _Connection(wire)

    async def _exchange(
        self, conn: _Connection, request: Any, body: bytes, timeouts: dict[str, float | None]
    ) -> _Reply:
        """Send ``request`` on ``conn`` and read the whole reply, and whether ``conn`` may
        serve another request (else it is closed here, as it is on any failure)."""
        lib, wire, machine = self._lib, conn.wire, conn.h11
        kept = False
        try:
            try:
                head = h11.Request(
                    method=request.method,
                    target=request.url.raw_path,
                    headers=list(request.headers.raw),
                )
                data = machine.send(head) + (machine.send(h11.Data(data=body)) if body else b"")
                data += machine.send(h11.EndOfMessage())
            except h11.LocalProtocolError as exc:
                raise lib.LocalProtocolError(str(exc)) from exc
            if wire.ended or wire.transport is None or wire.transport.is_closing():
                raise lib.WriteError("The connection was closed before the request was sent")
            wire.transport.write(data)  # a token request fits the transport's buffer
            status, version, reason = 0, b"HTTP/1.1", b""
            headers: list[tuple[bytes, bytes]] = []
            chunks: list[bytes] = []
            heard = False  # whether any of the reply arrived
            read_timeout = timeouts.get("read")  # for each read, as httpx's own transport
            while True:
                try:
                    event = machine.next_event()
                    if event is h11.NEED_DATA:
                        async with asyncio.timeout(read_timeout):
                            received = await wire.receive()
                        heard = heard or bool(received)
                        machine.receive_data(received)
                        continue
                except h11.RemoteProtocolError as exc:
                    if wire.error is not None:  # reset: the same error httpx's transport gives
                        raise lib.ReadError(f"The connection was lost: {wire.error}") from exc
                    raise lib.RemoteProtocolError(_protocol_error(exc, heard)) from exc
                if isinstance(event, h11.Response):
                    status, reason = event.status_code, event.reason
                    version = b"HTTP/" + event.http_version
                    headers = list(event.headers.raw_items())
                elif isinstance(event, h11.InformationalResponse):
                    continue  # 100 Continue, 103 Early Hints: the reply follows
                elif isinstance(event, h11.Data):
                    chunks.append(bytes(event.data))
                elif isinstance(event, h11.EndOfMessage):
                    break
                else:  # h11.ConnectionClosed before the end of the reply
                    raise lib.RemoteProtocolError(f"Unexpected from the server: {event!r}")
            if machine.our_state is h11.DONE and machine.their_state is h11.DONE:
                machine.start_next_cycle()
                # Bytes after the reply were never asked for: not a connection to trust again.
                kept = not self._closed and not machine.trailing_data[0]
            return _Reply(status, headers, version, reason, b"".join(chunks), kept)
        except TimeoutError as exc:
            raise lib.ReadTimeout("Spotify's reply did not arrive in time") from exc
        finally:
            if not kept:
                wire.close()

    def _keep(self, pool: _Pool, origin: _Origin, conn: _Connection) -> None:
        conns = pool.idle.setdefault(origin, deque())
        if len(conns) >= self._keepalive:
            conn.wire.close()
        else:
            conn.idle_since = time.monotonic()
            conns.append(conn)


def _readable(fd: int) -> bool:
    """Whether the socket has something to read (or its end): poll where there is one (no
    limit on descriptor numbers, unlike select's 1024), select elsewhere (Windows)."""
    try:
        if hasattr(select, "poll"):
            poller = select.poll()
            poller.register(fd, select.POLLIN)
            return bool(poller.poll(0))
        return bool(select.select([fd], [], [], 0)[0])
    except (OSError, ValueError):
        return True  # not a socket to trust


def _reused(pool: _Pool, origin: _Origin) -> _Connection | None:
    conns = pool.idle.get(origin)
    now = time.monotonic()
    while conns:
        conn = conns.pop()  # the most recently used: the likeliest still open
        if conn.reusable(now):
            return conn
        conn.wire.close()
    return None


def _protocol_error(exc: h11.RemoteProtocolError, heard: bool) -> str:
    if not heard:
        return "The server closed the connection without sending a reply"
    return f"The server's reply was not valid HTTP/1.1 ({exc})"
