"""The short lane (kfbox.server.shortcut) in a real uvicorn server with kfbox's protocol: a request a
shortcut claims is answered by its chain, byte for byte as the full app answers the same request
(status line, headers, chunked and HEAD replies, keep-alive, pipelining, a crash's 500), and a
stream's head reaches the client while the app still waits for its body."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import uvicorn
from starlette.types import ASGIApp, Receive, Scope, Send

from kfbox.config import Settings
from kfbox.server.protocol import guarded_protocol
from kfbox.server.shortcut import Shortcut, ShortLane

RELEASE = threading.Event()
HEAD_WAIT = 30.0  # liveness only: how long the test waits for bytes before calling the server stuck


async def answer(scope: Scope, receive: Receive, send: Send) -> None:
    """The same end for both ways in: echoes what it got, streams, or crashes, by path."""
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body", False):
            break
    path = scope["path"]
    if path == "/crash":
        raise RuntimeError("boom")
    if path == "/stream":  # a chunked reply whose body waits on the test
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
        while not RELEASE.is_set():
            await asyncio.sleep(0.01)
        await send({"type": "http.response.body", "body": b"first", "more_body": True})
        await send({"type": "http.response.body", "body": b"second", "more_body": False})
        return
    reply = json.dumps({"method": scope["method"], "path": path, "query": scope["query_string"].decode(),
                        "body": body.decode(), "lane": scope.get("lane", "whole")}).encode()
    await send({"type": "http.response.start", "status": 201,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(reply)).encode()),
                            (b"x-answer", b"yes")]})
    await send({"type": "http.response.body", "body": reply})


async def short_chain(scope: Scope, receive: Receive, send: Send) -> None:
    scope["lane"] = "short"
    await answer(scope, receive, send)


def claims(scope: Scope) -> bool:
    return any(k == b"x-short" for k, _ in scope["headers"])


@pytest.fixture(scope="module")
def port(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    settings = Settings.load(home=Path(tmp_path_factory.mktemp("home")))
    lane = ShortLane([Shortcut(claims=claims, app=short_chain)], outer=lambda app: app)
    yield from serve(answer, guarded_protocol(settings, lane))


def serve(app: ASGIApp, http: object) -> Iterator[int]:
    """A real uvicorn server in a thread with the given protocol; yields its port until the module ends."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    config = uvicorn.Config(app, log_level="critical", lifespan="off", http=http)  # type: ignore[arg-type]
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    with contextlib.suppress(OSError):
        while not server.started:
            thread.join(0.05)
    yield sock.getsockname()[1]
    server.should_exit = True
    thread.join(10)


def exchange(port: int, raw: bytes, replies: int = 1, head: bool = False) -> bytes:
    """Send raw bytes on one connection; read until ``replies`` complete replies (by length or chunked end),
    or, for a HEAD (a content-length but no body), until the end of the reply's head."""
    with socket.create_connection(("127.0.0.1", port), timeout=HEAD_WAIT) as sock:
        sock.sendall(raw)
        data = b""
        while (b"\r\n\r\n" not in data) if head else (count_replies(data) < replies):
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
        if head:  # a body sent after a HEAD reply's head would be a bug: collect what arrives in a moment
            sock.settimeout(0.3)
            with contextlib.suppress(TimeoutError):
                data += sock.recv(65536)
    return data


def count_replies(data: bytes) -> int:
    count = 0
    while b"\r\n\r\n" in data:
        head, _, rest = data.partition(b"\r\n\r\n")
        lines = head.lower().split(b"\r\n")
        length = next((int(line.split(b":")[1]) for line in lines if line.startswith(b"content-length:")), None)
        if length is not None:
            if len(rest) < length:
                return count
            data = rest[length:]
        elif b"transfer-encoding: chunked" in lines:
            if b"0\r\n\r\n" not in rest:
                return count
            data = rest.partition(b"0\r\n\r\n")[2]
        else:  # a reply to HEAD: no body
            data = rest
        count += 1
    return count


def without_date(data: bytes) -> bytes:
    return b"\r\n".join(line for line in data.split(b"\r\n") if not line.lower().startswith(b"date:"))


def request(method: str, target: str, body: bytes = b"", short: bool = True, extra: bytes = b"") -> bytes:
    marker = b"x-short: 1\r\n" if short else b""
    return (f"{method} {target} HTTP/1.1\r\nhost: 127.0.0.1\r\n".encode() + marker + extra
            + f"content-length: {len(body)}\r\n\r\n".encode() + body)


@pytest.mark.parametrize(("method", "target", "body"), [
    ("POST", "/v1/models/m:predict?x=1", b'{"instances": [[1, 2]]}'),
    ("GET", "/v2/health/ready", b""),
    ("HEAD", "/v2/health/ready", b""),
])
def test_a_claimed_request_is_answered_as_the_full_app_answers_it(port: int, method: str, target: str,
                                                                     body: bytes) -> None:
    head = method == "HEAD"
    short = without_date(exchange(port, request(method, target, body), head=head))
    full = without_date(exchange(port, request(method, target, body, short=False), head=head))
    if method != "HEAD":
        assert json.loads(short.partition(b"\r\n\r\n")[2])["lane"] == "short"
        assert json.loads(full.partition(b"\r\n\r\n")[2])["lane"] == "whole"
        short = short.replace(b'"lane": "short"', b'"lane": "whole"')  # the same length
    assert short == full
    assert short.startswith(b"HTTP/1.1 201 Created\r\n")


def test_keep_alive_and_pipelined_requests_are_answered_in_order(port: int) -> None:
    raw = (request("POST", "/one", b"1") + request("POST", "/two", b"2", short=False)
           + request("POST", "/three", b"3"))
    data = exchange(port, raw, replies=3)
    assert count_replies(data) == 3
    bodies = [json.loads(part.partition(b"\r\n\r\n")[2].split(b"HTTP/1.1")[0])
              for part in data.split(b"HTTP/1.1 201")[1:]]
    assert [(b["path"], b["body"], b["lane"]) for b in bodies] == [("/one", "1", "short"), ("/two", "2", "whole"),
                                                                    ("/three", "3", "short")]


def test_a_chunked_request_body_reaches_the_chain(port: int) -> None:
    raw = (b"POST /chunked HTTP/1.1\r\nhost: 127.0.0.1\r\nx-short: 1\r\ntransfer-encoding: chunked\r\n\r\n"
           b"3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n")
    data = exchange(port, raw)
    assert json.loads(data.partition(b"\r\n\r\n")[2]) == {"method": "POST", "path": "/chunked", "query": "",
                                                          "body": "abcde", "lane": "short"}


def test_a_streams_head_arrives_before_its_body(port: int) -> None:
    head, body = stream_head_then_body(port, request("GET", "/stream"))
    assert b"transfer-encoding: chunked" in head
    assert body == b"5\r\nfirst\r\n6\r\nsecond\r\n0\r\n\r\n"


def stream_head_then_body(port: int, raw: bytes) -> tuple[bytes, bytes]:
    """Send ``raw`` for the app's ``/stream``, which holds its body until :data:`RELEASE` is set: the reply's
    head must arrive while the body is held (a 200); then the whole chunked body. Returns (head, body)."""
    RELEASE.clear()
    with socket.create_connection(("127.0.0.1", port), timeout=HEAD_WAIT) as sock:
        sock.sendall(raw)
        head = b""
        while b"\r\n\r\n" not in head:  # the app holds its body until the head is here
            chunk = sock.recv(65536)
            assert chunk, "the server closed the connection before the head"
            head += chunk
        assert head.startswith(b"HTTP/1.1 200 OK\r\n")
        RELEASE.set()
        data = head
        while not data.endswith(b"0\r\n\r\n"):
            chunk = sock.recv(65536)
            assert chunk
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return head, body


def test_a_crash_in_the_chain_is_uvicorns_500_and_the_server_goes_on(port: int) -> None:
    short = without_date(exchange(port, request("POST", "/crash")))
    full = without_date(exchange(port, request("POST", "/crash", short=False)))
    assert short == full
    assert short.startswith(b"HTTP/1.1 500 Internal Server Error\r\n")
    assert exchange(port, request("GET", "/after")).startswith(b"HTTP/1.1 201")
