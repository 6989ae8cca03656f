"""Slow and greedy clients against a real ``kfbox up`` (loopback): a stalled request is closed
within the configured deadline, one address cannot hold more than its share of connections, and
500 concurrent keep-alive connections from one client (the load test's shape) are all served."""

from __future__ import annotations

import asyncio
import contextlib
import select
import socket
import time
from collections.abc import Iterator

import pytest

from tests.support import ServerProcess

HEADER_TIMEOUT = 2.0
BODY_TIMEOUT = 2.0
PER_CLIENT = 600
SLACK = 4.0  # a shared 2-core machine: the close may come late, never early


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    proc = ServerProcess.start(tmp_path_factory.mktemp("home"), extra_env={
        "KFBOX_HTTP_HEADER_TIMEOUT": str(HEADER_TIMEOUT), "KFBOX_HTTP_BODY_TIMEOUT": str(BODY_TIMEOUT),
        "KFBOX_MAX_CONNECTIONS_PER_CLIENT": str(PER_CLIENT)})
    yield proc
    proc.stop()


STALLED = {  # what each slow client sent before going quiet
    "connected, sent nothing": b"",
    "half a request line": b"GET /hea",
    "half the headers": b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ",
    "headers, then a trickle of header lines": b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n",
    "headers, then a tenth of the body": (b"POST /api/model_registry/v1alpha3/registered_models HTTP/1.1\r\n"
                                          b"Host: 127.0.0.1\r\nContent-Type: application/json\r\n"
                                          b"Content-Length: 100\r\n\r\n{\"name\": "),
}
TRICKLE = "headers, then a trickle of header lines"  # the classic slowloris: a line now and then


def test_every_stalled_request_is_cut_off_at_its_deadline(server: ServerProcess) -> None:
    """All at once (one wait, not five): each is closed after its deadline, never before."""
    socks = {name: socket.create_connection(("127.0.0.1", server.port)) for name in STALLED}
    start = time.monotonic()
    closed: dict[str, tuple[float, bytes]] = {}
    try:
        for name, sent in STALLED.items():
            socks[name].sendall(sent)
        while len(closed) < len(socks) and time.monotonic() - start < HEADER_TIMEOUT + SLACK:
            waiting = [s for n, s in socks.items() if n not in closed]
            ready, _, _ = select.select(waiting, [], [], 0.3)
            for name, sock in socks.items():
                if sock in ready:
                    try:
                        data = sock.recv(4096)
                    except ConnectionResetError:
                        data = b""
                    if not data or b"\r\n\r\n" in data:  # a reply, then the close
                        closed[name] = (time.monotonic() - start, data)
            if TRICKLE not in closed:
                with contextlib.suppress(OSError):  # closed by the server, seen on the next select
                    socks[TRICKLE].sendall(b"X-a: b\r\n")
    finally:
        for sock in socks.values():
            sock.close()
    assert sorted(closed) == sorted(STALLED), f"open after {HEADER_TIMEOUT + SLACK}s: {set(STALLED) - set(closed)}"
    for name, (elapsed, reply) in closed.items():
        assert elapsed >= min(HEADER_TIMEOUT, BODY_TIMEOUT) - 0.5, (name, elapsed)
        if "body" not in name:
            assert reply.startswith(b"HTTP/1.1 408"), (name, reply)


async def _keep_alive_client(port: int, requests: int) -> list[int]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    statuses = []
    try:
        for _ in range(requests):
            writer.write(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            head = await reader.readuntil(b"\r\n\r\n")
            length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n")
                          if line.lower().startswith(b"content-length:"))
            await reader.readexactly(length)
            statuses.append(int(head.split()[1]))
    finally:
        writer.close()
    return statuses


def test_500_concurrent_keep_alive_connections_are_served(server: ServerProcess) -> None:
    async def main() -> list[list[int]]:
        return await asyncio.wait_for(asyncio.gather(*(_keep_alive_client(server.port, 2) for _ in range(500))), 60)

    results = asyncio.run(main())
    assert [s for statuses in results for s in statuses] == [200] * 1000


def test_one_address_cannot_take_every_connection(server: ServerProcess) -> None:
    socks = [socket.create_connection(("127.0.0.1", server.port)) for _ in range(PER_CLIENT + 5)]
    try:
        # before the header deadline only the cap answers: exactly the connections over it
        answered: dict[socket.socket, bytes] = {}
        deadline = time.monotonic() + HEADER_TIMEOUT - 0.5
        while len(answered) < 5 and time.monotonic() < deadline:
            ready, _, _ = select.select([s for s in socks if s not in answered], [], [], 0.1)
            answered.update((sock, sock.recv(4096)) for sock in ready)
        assert len(answered) == 5
        assert all(reply.startswith(b"HTTP/1.1 503") for reply in answered.values())
        assert b"limit 600" in next(iter(answered.values()))
    finally:
        for sock in socks:
            sock.close()
    # closed connections are counted out again
    deadline = time.monotonic() + 10
    while True:
        with socket.create_connection(("127.0.0.1", server.port)) as sock:
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
            if sock.recv(4096).startswith(b"HTTP/1.1 200") or time.monotonic() > deadline:
                break
        time.sleep(0.1)
    assert time.monotonic() <= deadline
