"""A hostile client against the connection hand-off (``kfbox up --data-plane handoff``, a token): what a replica
answers on a connection handed to it is only what kfbox would have sent it, each request checked, whatever the
client does with its bytes (pipelining, split segments, odd methods, big give-backs), and connections handed and
dropped leave no descriptor behind.

Whether kfbox's stack or the replica answered a request is told by ``/healthz``'s count of handed connections and
by ``kfbox_http_requests_total`` (a request a replica answers never reaches kfbox's HTTP stack), as in
tests/serving/test_handoff.py."""

from __future__ import annotations

import json
import os
import socket
import time
from collections.abc import Iterator

import httpx
import pytest

from tests.serving.helpers import (
    ROWS,
    answered_by_kfbox,
    apply,
    gated_model,
    handed,
    manifest,
    more,
    read_replies,
    replica_pid,
    train_iris,
    wait_for,
    wait_ready,
)
from tests.support import ServerProcess

TOKEN = "s3cret-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
PREDICT = "/serving/default/iris/v1/models/iris:predict"
BODY = json.dumps({"instances": ROWS}).encode()
CAP = 16
"""KFBOX_MAX_CONNECTIONS_PER_CLIENT."""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """``kfbox up`` with a token and the hand-off data plane, serving ``iris`` and ``iris2`` (kfbox's sklearn
    runtime; one name the start of the other) and ``held`` (a user's model class, which echoes the headers it got)."""
    home = tmp_path_factory.mktemp("home")
    proc = ServerProcess.start(home, token=TOKEN, extra_env={"KFBOX_DATA_PLANE": "handoff",
                                                             "KFBOX_MAX_CONNECTIONS_PER_CLIENT": str(CAP)})
    train_iris(home / "pvc" / "models" / "iris")
    with proc.client() as client:
        apply(client, manifest("iris", "pvc://models/iris"))
        apply(client, manifest("iris2", "pvc://models/iris"))
        apply(client, manifest("held", None, fmt="custom", annotations=gated_model(home / "code")))
        for name in ("iris", "iris2", "held"):
            wait_ready(client, name)
    yield proc
    proc.stop()


@pytest.fixture()
def client(server: ServerProcess) -> Iterator[httpx.Client]:
    with server.client() as c:
        yield c






def request(port: int, target: str = PREDICT, *, method: str = "POST", token: str | None = TOKEN,
            body: bytes = BODY, extra: str = "") -> bytes:
    auth = f"authorization: Bearer {token}\r\n" if token is not None else ""
    return (f"{method} {target} HTTP/1.1\r\nhost: 127.0.0.1:{port}\r\n{auth}{extra}"
            f"content-type: application/json\r\ncontent-length: {len(body)}\r\n\r\n").encode() + body






def open_handed(server: ServerProcess, client: httpx.Client) -> socket.socket:
    """A raw connection whose first (plain) request a replica of iris answered: the replica holds it now."""
    before = handed(client)
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=30)
    sock.sendall(request(server.port))
    assert read_replies(sock, 1)[0][0] == 200
    assert handed(client) == before + 1
    return sock


@pytest.mark.parametrize("target", ["/serving/default/iris2/v1/models/iris2:predict",
                                    "/serving/default/iris2/v1/models/iris:predict"])
def test_a_service_whose_name_starts_with_another_s_is_its_own(server: ServerProcess, client: httpx.Client,
                                                              target: str) -> None:
    """On a connection iris's replica holds, a request for ``iris2`` is not iris's (its prefix is
    ``/serving/default/iris`` followed by ``2``): iris2's replica answers it, or kfbox, never iris's."""
    with open_handed(server, client) as sock:
        sock.sendall(request(server.port, target))
        reply = b""
        while b"\r\n\r\n" not in reply:
            reply += more(sock)
    lines = reply.partition(b"\r\n\r\n")[0].lower().split(b"\r\n")
    assert b"x-kfbox-revision: iris2-predictor-00001" in lines, reply


@pytest.mark.parametrize("authorization", [
    None, "Bearer wrong", f"bearer {TOKEN}", f"Bearer  {TOKEN}", f"Bearer {TOKEN}x", f"Basic {TOKEN}",
])
def test_no_exact_token_no_replica(server: ServerProcess, client: httpx.Client, authorization: str | None) -> None:
    """A first request without the exact ``Bearer <token>`` is kfbox's (401), its connection never handed."""
    before = handed(client)
    extra = f"authorization: {authorization}\r\n" if authorization else ""
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(request(server.port, token=None, extra=extra))
        assert read_replies(sock, 1)[0][0] == 401
    assert handed(client) == before


@pytest.mark.parametrize("second", ["authorization: Bearer wrong", "AUTHORIZATION: Bearer wrong"])
def test_a_head_split_across_segments_is_checked_whole(server: ServerProcess, client: httpx.Client,
                                                       second: str) -> None:
    """A head whose first segment carries the exact token and whose next adds a second ``Authorization`` (any case):
    the replica checks the head once it is whole, and kfbox answers it, not the model."""
    with open_handed(server, client) as sock:
        whole = request(server.port, extra=second + "\r\n")
        cut = whole.index(second.encode())
        sock.sendall(whole[:cut])
        time.sleep(0.2)  # the replica reads the first part alone
        sock.sendall(whole[cut:])
        status, body = read_replies(sock, 1)[0]
    assert status in (400, 401) and b"predictions" not in body, body  # kfbox's refusal


def test_a_connect_request_s_body_is_not_run_as_an_unchecked_request(server: ServerProcess,
                                                                     client: httpx.Client) -> None:
    """``CONNECT`` with an origin-form target and a body: llhttp takes the head as a tunnel's and reads no body, so
    the body's bytes, arriving in a later segment, would be parsed as a request of their own that no check saw
    (here one without a token). Such a connection is kfbox's, whose stack checks every request."""
    before = answered_by_kfbox(client)
    with open_handed(server, client) as sock:
        smuggled = request(server.port, token=None)
        sock.sendall(request(server.port, method="CONNECT", body=smuggled)[:-len(smuggled)])
        time.sleep(0.3)  # the head alone in a segment: the replica feeds it before the body arrives
        sock.sendall(smuggled)
        replies = read_replies(sock, 2)
    assert [status for status, _ in replies] == [405, 401], replies  # the smuggled request met kfbox's token check
    assert answered_by_kfbox(client) == before + 1  # the CONNECT went back to kfbox, its gateway relayed it


def test_a_big_request_given_back_reaches_kfbox_whole(server: ServerProcess, client: httpx.Client) -> None:
    """A request the replica must not answer (a ``Cookie``) with a body of a few hundred KiB, pipelined on a handed
    connection behind a heavy plain one: the replica gives the connection back with every byte it read, and kfbox
    answers it: no byte lost (a message on the hand-off socket is read whole only up to 128 KiB), no stall."""
    big = json.dumps({"instances": ROWS * 4000}).encode()
    heavy = json.dumps({"instances": ROWS * 20000}).encode()  # the replica computes it while the next arrives
    assert len(big) > 200_000
    before = answered_by_kfbox(client)
    with open_handed(server, client) as sock:
        last = request(server.port, body=big, extra="cookie: a=b\r\n")
        sock.sendall(request(server.port, body=heavy) + last)
        replies = read_replies(sock, 2)
    assert [status for status, _ in replies] == [200, 200], replies[-1][1][:300]
    assert len(json.loads(replies[-1][1])["predictions"]) == 3 * 4000
    assert answered_by_kfbox(client) == before + 1


def test_connections_handed_given_back_and_dropped_leave_no_descriptor_behind(server: ServerProcess,
                                                                              client: httpx.Client) -> None:
    """Hostile endings on handed connections: closed after the reply, reset in the middle of a body, half-closed
    after a request, dropped right after a request the replica gives back. Neither kfbox nor the replica keeps a
    descriptor (or a connection) for any of them once the client is gone."""
    replica = replica_pid("iris")
    assert replica is not None
    open_handed(server, client).close()  # the replica's first connection: its loop's own descriptors open
    fds = open_fds(server.process.pid, replica)
    before = handed(client)
    for _ in range(10):
        open_handed(server, client).close()
        with open_handed(server, client) as sock:  # reset in the middle of a body
            sock.sendall(request(server.port)[:-10])
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        with open_handed(server, client) as sock:  # half-closed after a request
            sock.sendall(request(server.port))
            sock.shutdown(socket.SHUT_WR)
            assert read_replies(sock, 1)[0][0] == 200
        with open_handed(server, client) as sock:  # given back, then gone
            sock.sendall(request(server.port, extra="cookie: a=b\r\n"))
    assert handed(client) == before + 40
    wait_for(lambda: all(now <= then + 2 for now, then in zip(open_fds(server.process.pid, replica), fds,
                                                               strict=True)),
             15, f"descriptors of kfbox and the replica back to {fds}")


def open_fds(*pids: int) -> tuple[int, ...]:
    return tuple(len(os.listdir(f"/proc/{pid}/fd")) for pid in pids)




def test_handed_connections_count_toward_the_cap_per_client_address(server: ServerProcess,
                                                                    client: httpx.Client) -> None:
    """One address may hold KFBOX_MAX_CONNECTIONS_PER_CLIENT connections (slow clients, floods): a connection handed
    to a replica leaves kfbox's count, so the replica keeps the cap on the connections it holds; the one past it
    gets the same 503 and the close."""
    socks = [socket.create_connection(("127.0.0.1", server.port), timeout=30) for _ in range(CAP + 4)]
    try:
        statuses = []
        for sock in socks:
            sock.sendall(request(server.port))
            statuses.append(read_replies(sock, 1)[0][0])
    finally:
        for sock in socks:
            sock.close()
    # the replica may still count a connection an earlier test closed a moment ago
    assert statuses == sorted(statuses) and statuses.count(503) in (4, 5), statuses
