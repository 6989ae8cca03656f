"""kfbox.server.coalesce in a real uvicorn server: every reply reads byte for byte as uvicorn's own protocol
writes it (POST, GET, HEAD, pipelined, chunked, a crash's 500), a stream's head still arrives before its
body, and a reply's head waits for its body: the two reach the client together, however long the app
takes between them, instead of as two pieces."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator

import pytest
from starlette.types import Receive, Scope, Send

from kfbox.server.coalesce import coalescing_protocol
from tests.server.test_shortcut import (
    HEAD_WAIT,
    answer,
    count_replies,
    exchange,
    request,
    serve,
    stream_head_then_body,
    without_date,
)

SLOW = 0.5
"""Seconds the app works between a reply's head and its body."""


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] == "http" and scope["path"] == "/slow":
        await receive()
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"4")]})
        time.sleep(SLOW)  # the model's work, on the loop: nothing else runs until the body is sent
        await send({"type": "http.response.body", "body": b"done"})
        return
    await answer(scope, receive, send)


@pytest.fixture(scope="module")
def coalescing() -> Iterator[int]:
    yield from serve(app, coalescing_protocol())


@pytest.fixture(scope="module")
def plain() -> Iterator[int]:
    yield from serve(app, "httptools")


@pytest.mark.parametrize("raw", [
    request("POST", "/v1/models/m:predict?x=1", b'{"instances": [[1, 2]]}', short=False),
    request("GET", "/v2/health/ready", short=False),
    b"POST /chunked HTTP/1.1\r\nhost: 127.0.0.1\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n",
    request("POST", "/crash", short=False),
], ids=["post", "get", "chunked-request", "crash"])
def test_replies_are_uvicorns_bytes(coalescing: int, plain: int, raw: bytes) -> None:
    assert without_date(exchange(coalescing, raw)) == without_date(exchange(plain, raw))


def test_head_and_pipelined_requests_are_uvicorns_bytes(coalescing: int, plain: int) -> None:
    head = request("HEAD", "/v2/health/ready", short=False)
    assert without_date(exchange(coalescing, head, head=True)) == without_date(exchange(plain, head, head=True))
    raw = request("POST", "/one", b"1", short=False) + request("POST", "/two", b"2", short=False)
    ours = exchange(coalescing, raw, replies=2)
    assert count_replies(ours) == 2
    assert without_date(ours) == without_date(exchange(plain, raw, replies=2))


def test_a_replys_head_and_body_arrive_together(coalescing: int, plain: int) -> None:
    def first_read(port: int) -> bytes:
        with socket.create_connection(("127.0.0.1", port), timeout=HEAD_WAIT) as sock:
            sock.sendall(request("POST", "/slow", short=False))
            return sock.recv(65536)

    assert first_read(coalescing).endswith(b"\r\n\r\ndone")
    assert first_read(plain).endswith(b"\r\n\r\n")  # uvicorn's own: the head alone, the body SLOW later


def test_a_streams_head_arrives_before_its_body(coalescing: int) -> None:
    _, body = stream_head_then_body(coalescing, request("GET", "/stream", short=False))
    assert body == b"5\r\nfirst\r\n6\r\nsecond\r\n0\r\n\r\n"
