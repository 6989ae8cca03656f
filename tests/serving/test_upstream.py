"""The gateway's own HTTP/1.1 client (:mod:`kfbox.serving.upstream`) against a real asyncio server on
loopback, in the test process: keep-alive reuse, pieces of a chunked reply as they come, HEAD, and the
failures the gateway tells apart (refused: never sent; cut: sent, maybe processed)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest

from kfbox.serving import upstream
from kfbox.serving.upstream import UpstreamError, Upstreams

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


def request(path: str = "/", method: str = "GET") -> bytes:
    return f"{method} {path} HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-length: 0\r\n\r\n".encode()


async def serve(handler: Handler) -> tuple[asyncio.Server, int]:
    server = await asyncio.start_server(handler, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1]


async def read_head(reader: asyncio.StreamReader) -> bytes:
    return await reader.readuntil(b"\r\n\r\n")


def run(coro: Awaitable[None]) -> None:
    asyncio.run(asyncio.wait_for(coro, 20))


def test_keep_alive_connections_are_reused() -> None:
    connections = []

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections.append(writer)
        while True:
            try:
                await read_head(reader)
            except asyncio.IncompleteReadError:
                return
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nx-seen: 1\r\n\r\nok")

    async def main() -> None:
        server, port = await serve(handler)
        upstreams = Upstreams()
        for _ in range(3):
            connection = await upstreams.open(port)
            await connection.exchange(request(), b"", 5)
            assert (connection.status, connection.take_body()) == (200, b"ok")
            assert (b"x-seen", b"1") in connection.headers
            upstreams.release(port, connection)
        assert len(connections) == 1
        upstreams.close()
        server.close()

    run(main())


def test_a_chunked_reply_is_handed_over_piece_by_piece() -> None:
    async def main() -> None:
        go = asyncio.Event()

        async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await read_head(reader)
            writer.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n6\r\nfirst\n\r\n")
            await go.wait()  # the last piece is produced only after the client has the first
            writer.write(b"5\r\nlast\n\r\n0\r\n\r\n")

        server, port = await serve(handler)
        upstreams = Upstreams()
        connection = await upstreams.open(port)
        await connection.exchange(request(), b"", 5)
        assert connection.take_body() is None  # not all there yet
        assert await connection.next_chunk(5) == b"first\n"
        go.set()
        assert await connection.next_chunk(5) == b"last\n"
        assert await connection.next_chunk(5) is None
        assert connection.reusable
        server.close()

    run(main())


def test_head_reply_ends_at_its_headers() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_head(reader)
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 1000\r\n\r\n")  # HEAD: the length, no body

    async def main() -> None:
        server, port = await serve(handler)
        connection = await Upstreams().open(port)
        await connection.exchange(request(method="HEAD"), b"", 5, head_only=True)
        assert (connection.status, connection.take_body()) == (200, b"")
        assert not connection.reusable  # the parser expected a body: never reuse it
        connection.close()
        server.close()

    run(main())


def test_refused_means_never_sent_and_cut_means_sent() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await read_head(reader)
        if b"/small" in head:  # a length the gateway waits for whole: the cut shows in the exchange
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\npartial")
        else:  # a stream: its head is handed over, the cut shows while reading the body
            writer.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n7\r\npartial\r\n")
        await writer.drain()
        writer.close()

    async def main() -> None:
        server, port = await serve(handler)
        connection = await Upstreams().open(port)
        with pytest.raises(UpstreamError) as cut:
            await connection.exchange(request("/small"), b"", 5)
        assert cut.value.connected and cut.value.received
        connection = await Upstreams().open(port)
        await connection.exchange(request("/stream"), b"", 5)
        assert connection.status == 200
        with pytest.raises(UpstreamError) as cut:
            await connection.read_all(5)
        assert cut.value.connected and cut.value.received
        server.close()
        await server.wait_closed()
        with pytest.raises(UpstreamError) as refused:
            await Upstreams().open(port)
        assert not refused.value.connected

    run(main())


def test_a_small_reply_written_in_pieces_is_handed_over_whole() -> None:
    """uvicorn writes a reply's head and its body in two calls; the gateway waits for both (one
    wake-up, one relay of the whole reply), but hands a large reply's head over at once."""

    async def main() -> None:
        body_sent = asyncio.Event()

        async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            while True:
                try:
                    head = await read_head(reader)
                except asyncio.IncompleteReadError:
                    return
                size = upstream.WHOLE_LIMIT + 1 if b"/large" in head else 2
                writer.write(f"HTTP/1.1 200 OK\r\ncontent-length: {size}\r\n\r\n".encode())
                await writer.drain()
                await asyncio.sleep(0.2)  # the head alone reaches the client first
                body_sent.set()
                writer.write(b"x" * size)
                await writer.drain()

        server, port = await serve(handler)
        upstreams = Upstreams()
        connection = await upstreams.open(port)
        await connection.exchange(request("/small"), b"", 5)
        assert body_sent.is_set() and connection.take_body() == b"xx"
        upstreams.release(port, connection)
        body_sent.clear()
        connection = await upstreams.open(port)
        await connection.exchange(request("/large"), b"", 5)
        assert not body_sent.is_set() and connection.take_body() is None
        assert len(await connection.read_all(5)) == upstream.WHOLE_LIMIT + 1
        upstreams.close()
        server.close()

    run(main())


def test_a_connection_idle_too_long_is_not_reused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(upstream, "IDLE_SECONDS", 0.0)
    opened = []

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        opened.append(writer)
        while True:
            try:
                await read_head(reader)
            except asyncio.IncompleteReadError:
                return
            writer.write(b"HTTP/1.1 204 No Content\r\n\r\n")

    async def main() -> None:
        server, port = await serve(handler)
        upstreams = Upstreams()
        for _ in range(2):
            connection = await upstreams.open(port)
            await connection.exchange(request(), b"", 5)
            assert connection.status == 204
            upstreams.release(port, connection)
        assert len(opened) == 2  # the replica may be closing an idle one: a fresh connection instead
        upstreams.close()
        server.close()

    run(main())


def test_no_reply_in_time_is_a_timeout() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_head(reader)
        await asyncio.sleep(30)

    async def main() -> None:
        server, port = await serve(handler)
        connection = await Upstreams().open(port)
        with pytest.raises(TimeoutError):
            await connection.exchange(request(), b"", 0.2)
        assert connection.closed
        server.close()

    run(main())
