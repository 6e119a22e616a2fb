"""The token requests' transport (``quart_spotify_auth.wire``) over real sockets on 127.0.0.1:
a small HTTP server per test that answers as told (chunked, gzip, ``Connection: close``,
garbage, nothing), a TLS server with a certificate of its own, and a proxy in the
environment."""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import json
import socket
import ssl
import subprocess
import threading
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import cast

import pytest

from quart_spotify_auth import SpotifyUnavailable
from quart_spotify_auth.accounts import AccountsClient
from quart_spotify_auth.config import load_settings
from quart_spotify_auth.tokens import TokenRecord
from quart_spotify_auth.wire import TokenTransport, lean_transport_for

from ._httplib import httpx
from .apps import CLIENT_ID, CLIENT_SECRET, make_app

TOKEN = {"access_token": "A1", "token_type": "Bearer", "expires_in": 3600, "scope": ""}
BODY = json.dumps(TOKEN).encode()

Handler = Callable[["Server", asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


class Server:
    """An HTTP server on 127.0.0.1 whose every connection ``handler`` serves; it counts the
    connections it accepted and those whose client closed them."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.accepted = 0
        self.closed_by_client = 0
        self.requests: list[bytes] = []
        self.url = ""
        self.writers: list[asyncio.StreamWriter] = []

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        self.writers.append(writer)
        try:
            await self.handler(self, reader, writer)
            if not writer.is_closing() and await reader.read() == b"":
                self.closed_by_client += 1
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    async def request(self, reader: asyncio.StreamReader) -> bytes | None:
        """The next request's head and body, or ``None`` at the end of the connection."""
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except asyncio.IncompleteReadError:
            return None
        length = 0
        for line in head.split(b"\r\n"):
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        whole = head + await reader.readexactly(length)
        self.requests.append(whole)
        return whole


@contextlib.asynccontextmanager
async def served(
    handler: Handler | None = None, *, ssl_context: ssl.SSLContext | None = None
) -> AsyncIterator[Server]:
    server = Server(handler or reply_each())
    listener = await asyncio.start_server(server._serve, "127.0.0.1", 0, ssl=ssl_context)
    port = listener.sockets[0].getsockname()[1]
    server.url = f"{'https' if ssl_context else 'http'}://localhost:{port}"
    try:
        yield server
    finally:
        for writer in server.writers:
            writer.close()
        listener.close()
        await listener.wait_closed()


def reply(body: bytes = BODY, *headers: str, status: str = "200 OK") -> bytes:
    head = [f"HTTP/1.1 {status}", "Content-Type: application/json", *headers]
    if not any(h.lower().startswith("transfer-encoding") for h in headers):
        head.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


def reply_each(answer: bytes | None = None) -> Handler:
    """A handler answering every request on its connection with ``answer``."""

    async def handler(
        server: Server, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        while await server.request(reader) is not None:
            writer.write(answer or reply())
            await writer.drain()

    return handler


def first_differently(first: Callable[[asyncio.StreamWriter], Awaitable[bool]]) -> Handler:
    """A handler answering the server's first request with ``first`` (``False``: the
    connection ends there) and every later one with a token reply."""

    async def handler(
        server: Server, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        while await server.request(reader) is not None:
            if len(server.requests) == 1 and not await first(writer):
                return
            writer.write(reply())
            await writer.drain()

    return handler


def client(**limits: int) -> httpx.AsyncClient:
    transport = TokenTransport(
        httpx, max_connections=limits.get("max_connections", 10), keepalive=limits.get("keep", 5)
    )
    return httpx.AsyncClient(
        transport=cast("httpx.AsyncBaseTransport", transport), timeout=httpx.Timeout(2.0)
    )


async def post(http: httpx.AsyncClient, url: str) -> httpx.Response:
    return await http.post(url + "/api/token", data={"grant_type": "refresh_token"})


async def test_token_requests_share_one_kept_alive_connection() -> None:
    async with served() as server, client() as http:
        for _ in range(5):
            response = await post(http, server.url)
            assert response.status_code == 200
            assert response.json() == TOKEN
    assert server.accepted == 1
    assert len(server.requests) == 5
    first = server.requests[0]
    assert first.startswith(b"POST /api/token HTTP/1.1\r\n")
    assert first.endswith(b"\r\n\r\ngrant_type=refresh_token")
    assert b"\r\nhost: localhost:" in first.lower()


async def test_chunked_and_gzip_replies_are_read_whole() -> None:
    chunked = (
        b"".join(b"%x\r\n%s\r\n" % (len(piece), piece) for piece in (BODY[:7], BODY[7:]))
        + b"0\r\n\r\n"
    )
    zipped = gzip.compress(BODY)
    answers = iter(
        [reply(chunked, "Transfer-Encoding: chunked"), reply(zipped, "Content-Encoding: gzip")]
    )

    async def handler(
        server: Server, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        while await server.request(reader) is not None:
            answer = next(answers)
            for byte in range(0, len(answer), 5):  # in small pieces, each its own read
                writer.write(answer[byte : byte + 5])
                await writer.drain()

    async with served(handler) as server, client() as http:
        assert (await post(http, server.url)).json() == TOKEN
        assert (await post(http, server.url)).json() == TOKEN
    assert server.accepted == 1


async def test_a_connection_the_server_closes_is_not_used_again() -> None:
    async with served(reply_each(reply(BODY, "Connection: close"))) as server, client() as http:
        for _ in range(3):
            assert (await post(http, server.url)).json() == TOKEN
    assert server.accepted == 3


async def test_an_idle_connection_closed_by_the_server_is_replaced() -> None:
    async def once(
        server: Server, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        await server.request(reader)
        writer.write(reply())  # keep-alive promised, then closed while idle
        await writer.drain()
        writer.close()

    async with served(once) as server, client() as http:
        transport = http._transport
        assert isinstance(transport, TokenTransport)
        assert (await post(http, server.url)).json() == TOKEN
        async with asyncio.timeout(5):  # until the client has seen the close
            while not _idle_ended(transport):
                await asyncio.sleep(0.005)
        assert (await post(http, server.url)).json() == TOKEN
    assert server.accepted == 2


def _idle_ended(transport: TokenTransport) -> bool:
    return all(
        conn.wire.ended
        for pool in transport._pools.made()
        for conns in pool.idle.values()
        for conn in conns
    )


async def test_a_reply_that_never_comes_is_a_read_timeout_and_the_connection_is_dropped() -> None:
    hold = asyncio.Event()

    async def held(writer: asyncio.StreamWriter) -> bool:
        await hold.wait()  # not answered in time
        return True

    async with served(first_differently(held)) as server, client() as http:
        with pytest.raises(httpx.ReadTimeout):
            await http.post(server.url + "/api/token", timeout=0.2)
        assert (await post(http, server.url)).json() == TOKEN
        hold.set()
    assert server.accepted == 2


@pytest.mark.parametrize(
    ("answer", "message"),
    [
        (b"", "closed the connection without sending a reply"),
        (b"HELLO THERE\r\n\r\n", "not valid HTTP/1.1"),
        (reply()[:-5], "not valid HTTP/1.1"),  # the body cut short
    ],
)
async def test_a_broken_reply_is_a_protocol_error_and_the_next_request_works(
    answer: bytes, message: str
) -> None:
    async def broken(writer: asyncio.StreamWriter) -> bool:
        writer.write(answer)
        writer.close()
        return False

    async with served(first_differently(broken)) as server, client() as http:
        with pytest.raises(httpx.RemoteProtocolError, match=message):
            await post(http, server.url)
        assert (await post(http, server.url)).json() == TOKEN


async def test_a_refused_connection_is_a_connect_error() -> None:
    async with served() as server:
        url = server.url
    async with client() as http:
        with pytest.raises(httpx.ConnectError, match="Could not connect to localhost"):
            await post(http, url)


async def test_the_accounts_client_reads_a_refused_connection_as_unreachable() -> None:
    async with served() as server:
        url = server.url
    settings = load_settings(
        {"SPOTIFY_CLIENT_ID": CLIENT_ID, "SPOTIFY_CLIENT_SECRET": CLIENT_SECRET,
         "SPOTIFY_REDIRECT_URI": "http://127.0.0.1/callback/", "SPOTIFY_ACCOUNTS_URL": url,
         "SPOTIFY_RETRIES": 0}
    )  # fmt: skip
    async with client() as http:
        accounts = AccountsClient(settings, http)
        record = TokenRecord("old", "refresh", 0.0, 0.0, frozenset(), 0.0)
        with pytest.raises(SpotifyUnavailable, match="could not be reached"):
            await accounts.refresh(record)


async def test_connections_beyond_the_limit_wait_for_one_then_time_out() -> None:
    release = asyncio.Event()

    async def handler(
        server: Server, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        while await server.request(reader) is not None:
            await release.wait()
            writer.write(reply())
            await writer.drain()

    async with served(handler) as server, client(max_connections=1) as http:
        first = asyncio.ensure_future(post(http, server.url))
        async with asyncio.timeout(5):
            while not server.requests:  # the one connection is busy
                await asyncio.sleep(0.005)
        with pytest.raises(httpx.PoolTimeout):
            await http.post(server.url + "/api/token", timeout=httpx.Timeout(2.0, pool=0.1))
        waiting = asyncio.ensure_future(post(http, server.url))
        release.set()
        assert (await first).json() == TOKEN
        assert (await waiting).json() == TOKEN
    assert server.accepted == 1


async def test_a_cancelled_request_drops_its_connection() -> None:
    async def never(writer: asyncio.StreamWriter) -> bool:
        await asyncio.Event().wait()  # the first is never answered
        return False

    async with served(first_differently(never)) as server, client() as http:
        task = asyncio.ensure_future(post(http, server.url))
        async with asyncio.timeout(5):
            while not server.requests:
                await asyncio.sleep(0.005)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert (await post(http, server.url)).json() == TOKEN
    assert server.accepted == 2  # the cancelled request's reply could never be read


async def test_closing_the_client_closes_its_idle_connections() -> None:
    async with served() as server:
        http = client()
        assert (await post(http, server.url)).json() == TOKEN
        await http.aclose()
        async with asyncio.timeout(5):
            while server.closed_by_client < 1:
                await asyncio.sleep(0.005)
    assert server.accepted == 1


@pytest.fixture(name="certificate")
def _certificate(tmp_path: Path) -> Path:
    """A self-signed certificate for ``localhost`` (its key beside it)."""
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )  # fmt: skip
    return cert


def _server_context(certificate: Path) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(certificate, certificate.with_name("key.pem"))
    return context


async def test_tls_is_verified_as_httpx_verifies_it(
    certificate: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    monkeypatch.delenv("SSL_CERT_DIR", raising=False)
    async with served(ssl_context=_server_context(certificate)) as server:
        async with client() as http:  # a certificate no root vouches for
            with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
                await post(http, server.url)
        monkeypatch.setenv("SSL_CERT_FILE", str(certificate))  # trusted as httpx trusts it
        async with client() as http:
            for _ in range(2):
                assert (await post(http, server.url)).json() == TOKEN
    assert server.accepted == 1  # the refused handshake never reached it; then one, kept alive


@pytest.mark.parametrize("variable", ["HTTPS_PROXY", "https_proxy", "ALL_PROXY"])
def test_a_proxy_in_the_environment_keeps_httpx_s_own_transport(
    variable: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    made = lean_transport_for(httpx, "https://accounts.spotify.com", max_connections=1, keepalive=1)
    assert isinstance(made, TokenTransport)
    monkeypatch.setenv(variable, "http://127.0.0.1:9")
    assert lean_transport_for(httpx, "https://accounts.spotify.com", max_connections=1,
                              keepalive=1) is None  # fmt: skip
    assert isinstance(
        lean_transport_for(httpx, "http://127.0.0.1:5001", max_connections=1, keepalive=1),
        TokenTransport,
    ) is (variable != "ALL_PROXY")  # https's proxy is not http's; ALL_PROXY is every scheme's


async def test_an_app_behind_a_proxy_sends_its_token_requests_through_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async def proxy(
        server: Server, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        await server.request(reader)
        writer.write(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n")
        await writer.drain()

    async with served(proxy) as server:
        monkeypatch.setenv("HTTPS_PROXY", server.url)
        app, spotify = make_app(accounts_url="https://accounts.invalid", SPOTIFY_RETRIES=0)
        async with app.test_app():
            with pytest.raises(SpotifyUnavailable):
                await spotify.core(app).app_token()
    assert server.requests[0].startswith(b"CONNECT accounts.invalid:443 HTTP/1.1")


async def test_an_app_s_token_requests_go_through_the_lean_transport(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)
    async with served() as server:
        app, spotify = make_app(accounts_url=server.url)
        async with app.test_app():
            core = spotify.core(app)
            assert isinstance(core.accounts.http._transport, TokenTransport)
            assert not isinstance(core.http._transport, TokenTransport)  # the Web API's
            for _ in range(2):
                assert (await core.accounts.client_credentials()).access_token == "A1"
    assert server.accepted == 1
    assert server.requests[0].startswith(b"POST /api/token HTTP/1.1")


async def test_an_idle_connection_past_its_expiry_is_closed_not_reused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("quart_spotify_auth.wire.KEEPALIVE_EXPIRY", 0.0)
    async with served() as server, client() as http:
        for _ in range(3):
            assert (await post(http, server.url)).json() == TOKEN
        async with asyncio.timeout(5):
            while server.closed_by_client < 2:  # the two expired ones, closed by the client
                await asyncio.sleep(0.005)
    assert server.accepted == 3


async def test_an_idle_connection_closed_while_the_loop_was_busy_is_not_used() -> None:
    """The server's close arrives while the event loop is busy (it has not read it yet): the
    socket is looked at before reuse, so the next request goes on a new connection."""
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    closed = threading.Event()
    accepted: list[socket.socket] = []

    def serve() -> None:  # blocking, on a thread: it runs while the client's loop cannot
        for number in (1, 2):
            conn, _ = listener.accept()
            accepted.append(conn)
            conn.recv(65536)
            conn.sendall(reply())
            if number == 1:
                conn.close()  # keep-alive promised, then closed while idle
                closed.set()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    try:
        async with client() as http:
            assert (await post(http, url)).json() == TOKEN
            assert closed.wait(5)  # blocks the loop: the close is not read by it
            assert (await post(http, url)).json() == TOKEN
        thread.join(5)
        assert len(accepted) == 2
    finally:
        for conn in accepted:
            conn.close()
        listener.close()


async def test_informational_replies_are_skipped_and_the_version_is_the_server_s() -> None:
    informational = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n"
    answer = b"HTTP/1.0 200 OK\r\nContent-Type: application/json\r\n\r\n" + BODY

    async def handler(
        server: Server, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        await server.request(reader)
        writer.write(informational + answer)
        writer.close()  # HTTP/1.0 with no length: the body ends with the connection

    async with served(handler) as server, client() as http:
        response = await post(http, server.url)
        assert response.json() == TOKEN
        assert response.http_version == "HTTP/1.0"
        assert (await post(http, server.url)).json() == TOKEN  # not kept: a new connection
    assert server.accepted == 2


async def test_bytes_after_a_reply_are_never_taken_for_the_next_reply() -> None:
    unasked = reply(b'{"access_token": "FORGED"}')

    async def handler(
        server: Server, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        while await server.request(reader) is not None:
            writer.write(reply() + (unasked if server.accepted == 1 else b""))
            await writer.drain()

    async with served(handler) as server, client() as http:
        for _ in range(3):
            assert (await post(http, server.url)).json() == TOKEN
    assert server.accepted == 2  # the first connection, with bytes beyond its reply, dropped
