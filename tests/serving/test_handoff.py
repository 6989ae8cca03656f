"""The connection hand-off (``kfbox up --data-plane handoff``) with a real ``kfbox up`` (a token) and real kserve
replicas: a plain connection for a model is passed to its replica, which answers it with no hop; whatever the
replica must not answer on it (another model, a wrong token, the platform's API, a pipelined request among
them) goes back to kfbox on the same connection; errors read as through the gateway; every request is counted;
a replica that may run user code, a canary split and a killed replica keep requests on kfbox's side.

A request a replica answers on a handed connection never reaches kfbox's HTTP stack, so it is not in
``kfbox_http_requests_total`` (route ``/serving/...``); one kfbox answered is. The tests tell the two apart by
that counter, as a user reading ``/metrics`` would."""

from __future__ import annotations

import json
import os
import signal
import socket
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest

from kfbox.serving.handoff import Grant, digest, read_head
from tests.serving.helpers import (
    ROWS,
    answered_by_kfbox,
    apply,
    expected,
    gated_model,
    handed,
    manifest,
    read_replies,
    replica_pid,
    status,
    train_iris,
    wait_for,
    wait_ready,
)
from tests.support import ServerProcess, run_cli

TOKEN = "s3cret-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
PREDICT = "/serving/default/iris/v1/models/iris:predict"
DEADLINE = 2.0
"""The server's header and body read deadlines (seconds), which a replica keeps on a handed connection."""
QUEUE = 2
"""Requests a replica may hold read and unanswered on its handed connections (KFBOX_SERVING_QUEUE_PER_REPLICA)."""
"""The server's header and body read deadlines (seconds), which a replica keeps on a handed connection."""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """``kfbox up`` with a token and the hand-off data plane, serving ``iris`` and ``twin`` (kfbox's sklearn
    runtime) and ``held`` (a user's model class), one replica each."""
    home = tmp_path_factory.mktemp("home")
    proc = ServerProcess.start(home, token=TOKEN, extra_env={
        "KFBOX_DATA_PLANE": "handoff", "KFBOX_HTTP_HEADER_TIMEOUT": str(DEADLINE),
        "KFBOX_HTTP_BODY_TIMEOUT": str(DEADLINE), "KFBOX_SERVING_QUEUE_PER_REPLICA": str(QUEUE)})
    train_iris(home / "pvc" / "models" / "iris")
    with proc.client() as client:
        apply(client, manifest("iris", "pvc://models/iris"))
        apply(client, manifest("twin", "pvc://models/iris"))
        apply(client, manifest("held", None, fmt="custom", annotations=gated_model(home / "code")))
        for name in ("iris", "twin", "held"):
            wait_ready(client, name)
    yield proc
    proc.stop()


@pytest.fixture()
def client(server: ServerProcess) -> Iterator[httpx.Client]:
    with server.client() as c:
        yield c


@pytest.fixture()
def fresh(server: ServerProcess) -> Iterator[httpx.Client]:
    """A client of its own: its first request opens a new connection, which the hand-off may take."""
    with httpx.Client(base_url=server.url, headers=AUTH, timeout=60) as c:
        yield c


def metric(client: httpx.Client, prefix: str) -> float:
    """The sum of the samples whose line starts with ``prefix`` in kfbox's /metrics."""
    return sum(float(line.rsplit(" ", 1)[1]) for line in client.get("/metrics").text.splitlines()
               if line.startswith(prefix))






def served(client: httpx.Client, name: str, code: int = 200) -> float:
    return metric(client, f'kfbox_serving_requests_total{{code="{code}",name="{name}"')


def test_a_plain_connection_is_answered_by_the_replica_and_counted(server: ServerProcess, client: httpx.Client,
                                                                    fresh: httpx.Client) -> None:
    want = {"predictions": expected(train_iris(server.home / "check"))}
    before, connections, counted = answered_by_kfbox(client), handed(client), served(client, "iris")
    timed = metric(client, 'kfbox_serving_request_duration_seconds_count{name="iris"')
    replies = [fresh.post(PREDICT, json={"instances": ROWS}) for _ in range(5)]
    assert [r.status_code for r in replies] == [200] * 5, replies[0].text
    assert all(r.json() == want for r in replies)
    assert {r.headers["x-kfbox-revision"] for r in replies} == {"iris-predictor-00001"}
    assert answered_by_kfbox(client) == before  # none passed through kfbox's stack
    assert handed(client) == connections + 1  # one connection, handed once
    wait_for(lambda: served(client, "iris") == counted + 5, 10, "the replica's report of 5 requests")
    assert metric(client, 'kfbox_serving_request_duration_seconds_count{name="iris"') == timed + 5


def test_status_cli_and_page_say_where_a_service_s_connections_go(server: ServerProcess,
                                                                   client: httpx.Client) -> None:
    """``status.handoff``, ``kfbox serve get`` and the deployment page: iris's connections go to its replicas, and
    kfbox keeps ``held``'s, with the reason (its replicas run the user's code)."""
    assert "connection hand-off on: this port passes a model's plain connections" in server.log()
    assert status(client, "iris")["handoff"] == {"connections": "replicas"}
    held = status(client, "held")["handoff"]
    assert held["connections"] == "kfbox" and "your code" in held["reason"]
    shown = run_cli("serve", "get", "held", "--home", str(server.home), "--token", TOKEN)
    assert shown.returncode == 0, shown.stderr
    assert "kept by kfbox: its replicas run your code" in " ".join(shown.stdout.split())
    shown = run_cli("serve", "get", "iris", "--home", str(server.home), "--token", TOKEN)
    assert "handed to its replicas" in " ".join(shown.stdout.split())
    page = client.get("/deployments/default/iris")
    assert page.status_code == 200 and 'id="handoff"' in page.text and "straight to its replicas" in page.text


def test_a_model_host_connection_is_handed_off_too(server: ServerProcess, client: httpx.Client,
                                                   fresh: httpx.Client) -> None:
    want = {"predictions": expected(train_iris(server.home / "check"))}
    before = answered_by_kfbox(client)
    for _ in range(2):
        reply = fresh.post("/v1/models/iris:predict", json={"instances": ROWS},
                           headers={"Host": "iris-predictor.default.example.com"})
        assert reply.json() == want
    v2 = fresh.post("/v2/models/iris/infer", headers={"Host": "iris-predictor.default.example.com"},
                    json={"inputs": [{"name": "x", "shape": [3, 4], "datatype": "FP64",
                                      "data": [v for row in ROWS for v in row]}]})
    assert v2.json()["outputs"][0]["data"] == want["predictions"]
    assert answered_by_kfbox(client) == before


def test_what_the_replica_must_not_answer_goes_back_to_kfbox_on_the_same_connection(
        server: ServerProcess, client: httpx.Client, fresh: httpx.Client) -> None:
    connections = handed(client)
    assert fresh.post(PREDICT, json={"instances": ROWS}).status_code == 200  # handed to iris's replica
    before = answered_by_kfbox(client)
    other = fresh.post("/serving/default/twin/v1/models/twin:predict", json={"instances": ROWS})
    assert other.status_code == 200 and other.headers["x-kfbox-revision"] == "twin-predictor-00001"
    # iris's replica gave it back unread; kfbox offered it again and handed it to twin's replica
    assert answered_by_kfbox(client) == before and handed(client) == connections + 2
    refused = fresh.post(PREDICT, json={"instances": ROWS}, headers={"Authorization": "Bearer wrong"})
    assert refused.status_code == 401 and refused.headers["www-authenticate"] == "Bearer"
    # back with kfbox, which serves the connection from then on
    assert fresh.get("/apis/serving.kserve.io/v1beta1/namespaces/default/inferenceservices").status_code == 200
    assert fresh.post(PREDICT, json={"instances": ROWS}).status_code == 200
    assert answered_by_kfbox(client) == before + 1 and handed(client) == connections + 2


@pytest.mark.parametrize(("second", "code", "says"), [
    ({"Authorization": "Bearer wrong"}, 401, "Missing or wrong bearer token"),  # kfbox's token auth
    ({"Authorization": f"Bearer {TOKEN}", "Origin": "http://evil.example"}, 403, "Cross-origin"),  # its guard
    ({"Authorization": f"Bearer {TOKEN}", "Cookie": "kfbox_session=abc"}, 200, None),  # its gateway
])
def test_a_request_with_credentials_or_origin_on_a_handed_connection_is_kfbox_s(
        client: httpx.Client, fresh: httpx.Client, second: dict[str, str], code: int, says: str | None) -> None:
    assert fresh.post(PREDICT, json={"instances": ROWS}).status_code == 200
    before = answered_by_kfbox(client)
    reply = fresh.post(PREDICT, json={"instances": ROWS}, headers=second)
    assert reply.status_code == code, reply.text
    if says is not None:
        assert says in reply.json()["error"]
    else:
        assert answered_by_kfbox(client) == before + 1


def test_pipelined_requests_are_each_checked(server: ServerProcess, client: httpx.Client) -> None:
    """Three requests in one write on a new connection: the first two (plain) are the replica's, the third
    (a wrong token) goes back to kfbox, which answers 401; the replies come in order."""
    body = json.dumps({"instances": ROWS}).encode()
    port = int(server.url.rsplit(":", 1)[1])

    def request(token: str) -> bytes:
        return (f"POST {PREDICT} HTTP/1.1\r\nhost: 127.0.0.1:{port}\r\nauthorization: Bearer {token}\r\n"
                f"content-type: application/json\r\ncontent-length: {len(body)}\r\n\r\n").encode() + body

    before, connections = answered_by_kfbox(client), handed(client)
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(request(TOKEN) + request(TOKEN) + request("wrong"))
        replies = read_replies(sock, 3)
    assert [r[0] for r in replies] == [200, 200, 401]
    assert [json.loads(r[1]) for r in replies[:2]] == [{"predictions": expected(train_iris(server.home / "c"))}] * 2
    assert "wrong bearer token" in json.loads(replies[2][1])["error"]  # kfbox's token auth answered it
    assert answered_by_kfbox(client) == before and handed(client) == connections + 1


@pytest.mark.parametrize("stalled", ["head", "body"])
def test_a_request_that_stalls_on_a_handed_connection_meets_the_server_s_deadline(
        server: ServerProcess, client: httpx.Client, stalled: str) -> None:
    """slowloris on a connection the replica holds: half a head gets the server's 408 and the close, a body that
    stops arriving the close, after the deadline."""
    body = json.dumps({"instances": ROWS}).encode()
    port = int(server.url.rsplit(":", 1)[1])
    request = (f"POST {PREDICT} HTTP/1.1\r\nhost: 127.0.0.1:{port}\r\nauthorization: Bearer {TOKEN}\r\n"
               f"content-type: application/json\r\ncontent-length: {len(body)}\r\n\r\n").encode()
    connections = handed(client)
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(request + body)
        assert read_replies(sock, 1)[0][0] == 200
        assert handed(client) == connections + 1  # the replica holds the connection now
        sock.sendall(request[:40] if stalled == "head" else request + body[:5])
        started = time.monotonic()
        rest = b""
        while chunk := sock.recv(65536):
            rest += chunk
        waited = time.monotonic() - started
    assert DEADLINE - 0.5 < waited < DEADLINE + 5
    assert rest.startswith(b"HTTP/1.1 408 ") if stalled == "head" else rest == b""






def test_replica_errors_on_a_handed_connection_have_kserve_bodies(client: httpx.Client,
                                                                  fresh: httpx.Client) -> None:
    assert fresh.post(PREDICT, json={"instances": ROWS}).status_code == 200
    before = answered_by_kfbox(client)
    bad = fresh.post(PREDICT, json={"instances": "x"})
    assert bad.status_code == 400 and set(bad.json()) == {"error"}
    not_allowed = fresh.delete(PREDICT)
    assert not_allowed.status_code == 405
    assert not_allowed.json() == {"error": "Method Not Allowed"} and not_allowed.headers["allow"] == "GET"
    invalid = fresh.post("/serving/default/iris/v2/models/iris/infer", json={"inputs": 1})
    assert invalid.status_code == 422
    assert set(invalid.json()) == {"error"} and invalid.json()["error"].startswith("Invalid request: ")
    missing = fresh.get("/serving/default/iris/v2/nothing")
    assert missing.status_code == 404 and missing.json() == {"error": "Not Found"}
    assert missing.headers["x-kfbox-revision"] == "iris-predictor-00001"
    assert answered_by_kfbox(client) == before  # all of them the replica's own answers


def test_a_replica_that_may_run_user_code_never_gets_a_connection(client: httpx.Client,
                                                                  fresh: httpx.Client) -> None:
    """The platform's token travels in every request of a connection: a user's model class never reads one."""
    before, connections = answered_by_kfbox(client), handed(client)
    echoed = fresh.post("/serving/default/held/v1/models/held:predict", json={"echo": True},
                        headers={"x-request-id": "req-9"})
    assert echoed.status_code == 200
    seen = echoed.json()["headers"]
    assert seen.get("x-request-id") == "req-9" and "authorization" not in seen
    assert answered_by_kfbox(client) == before + 1 and handed(client) == connections


def test_overload_on_handed_connections_is_a_fast_503_with_kserve_body(server: ServerProcess,
                                                                       client: httpx.Client) -> None:
    """Eight handed connections send a heavy request each at once: the replica reads them while it computes one,
    answers at most QUEUE of them and the rest with the gateway's 503 at once (``retry-after: 1``, KServe's body
    naming the overload), never a timeout."""
    heavy = {"instances": ROWS * 20000}
    want = expected(train_iris(server.home / "check")) * 20000
    clients = [httpx.Client(base_url=server.url, headers=AUTH, timeout=60) for _ in range(8)]
    try:
        connections = handed(client)
        for own in clients:  # each connection handed to iris's replica by a small first request
            assert own.post(PREDICT, json={"instances": ROWS}).status_code == 200
        assert handed(client) == connections + len(clients)
        refused: list[httpx.Response] = []
        for _ in range(5):  # the replica reads the others while it computes the first: almost always at once
            start = threading.Barrier(len(clients))
            with ThreadPoolExecutor(len(clients)) as pool:
                replies = list(pool.map(lambda own, start=start: _heavy(own, start, heavy), clients))
            assert {r.status_code for r in replies} <= {200, 503}
            assert all(r.json() == {"predictions": want} for r in replies if r.status_code == 200)
            refused = [r for r in replies if r.status_code == 503]
            if refused:
                break
        assert refused, "no request was refused in 5 bursts of 8"
        for reply in refused:
            assert reply.headers["retry-after"] == "1"
            assert reply.json() == {"error": reply.json()["error"]} and "is overloaded" in reply.json()["error"]
            assert reply.headers["x-kfbox-revision"] == "iris-predictor-00001"
    finally:
        for own in clients:
            own.close()


def _heavy(own: httpx.Client, start: threading.Barrier, body: Any) -> httpx.Response:
    start.wait()
    return own.post(PREDICT, json=body)


def test_requests_on_handed_connections_count_toward_rps(server: ServerProcess, client: httpx.Client) -> None:
    """``scaleMetric: rps`` counts the requests replicas answer on handed connections (from their reports; none
    passes through kfbox): one sequential client against a target of 20 a second scales the service to two."""
    apply(client, manifest("rated", "pvc://models/iris", min_replicas=1, max_replicas=2, scale_target=20,
                           scale_metric="rps", annotations={"autoscaling.knative.dev/window": "2s"}))
    wait_ready(client, "rated")
    before, connections = answered_by_kfbox(client), handed(client)
    codes: set[int] = set()
    deadline = time.monotonic() + 60
    with httpx.Client(base_url=server.url, headers=AUTH, timeout=60) as own:
        while status(client, "rated")["replicas"] < 2 and time.monotonic() < deadline:
            codes |= {own.post("/serving/default/rated/v1/models/rated:predict",
                               json={"instances": ROWS}).status_code for _ in range(50)}
    assert status(client, "rated")["replicas"] == 2 and codes == {200}
    assert answered_by_kfbox(client) == before and handed(client) == connections + 1
    client.delete("/apis/serving.kserve.io/v1beta1/namespaces/default/inferenceservices/rated")


def test_a_canary_split_is_weighed_per_request_by_kfbox(server: ServerProcess, client: httpx.Client) -> None:
    """One connection, both revisions: a split weighs each request, so its connections stay with kfbox."""
    train_iris(server.home / "pvc" / "models" / "split-v2", kind="tree")
    apply(client, manifest("split", "pvc://models/iris"))
    wait_for(lambda: status(client, "split")["components"]["predictor"].get("latestRolledoutRevision")
             == "split-predictor-00001", 90, "rollout of revision 1")
    patched = client.patch("/apis/serving.kserve.io/v1beta1/namespaces/default/inferenceservices/split",
                           json={"spec": {"predictor": {"canaryTrafficPercent": 50,
                                                        "model": {"storageUri": "pvc://models/split-v2"}}}},
                           headers={"content-type": "application/merge-patch+json"})
    assert patched.status_code == 200, patched.text
    wait_for(lambda: status(client, "split")["revisions"]["split-predictor-00002"]["ready"], 90, "canary ready")
    before, connections = answered_by_kfbox(client), handed(client)
    with httpx.Client(base_url=server.url, headers=AUTH, timeout=60) as own:
        revisions = [own.post("/serving/default/split/v1/models/split:predict",
                              json={"instances": ROWS}).headers["x-kfbox-revision"] for _ in range(6)]
    assert set(revisions) == {"split-predictor-00001", "split-predictor-00002"}, revisions
    assert "canary split" in status(client, "split")["handoff"]["reason"]
    assert handed(client) == connections and answered_by_kfbox(client) == before + 6
    client.delete("/apis/serving.kserve.io/v1beta1/namespaces/default/inferenceservices/split")


def test_a_deleted_replica_gives_its_keep_alive_connections_back_to_kfbox(server: ServerProcess,
                                                                              client: httpx.Client) -> None:
    """``kubectl delete pod`` (as a scale-down) stops a replica that holds keep-alive connections: they go back
    to kfbox instead of being closed under their clients, so the next request on each is answered."""
    apply(client, manifest("moved", "pvc://models/iris"))
    wait_ready(client, "moved")
    port = int(server.url.rsplit(":", 1)[1])
    body = json.dumps({"instances": ROWS}).encode()
    request = (f"POST /serving/default/moved/v1/models/moved:predict HTTP/1.1\r\nhost: 127.0.0.1:{port}\r\n"
               f"authorization: Bearer {TOKEN}\r\ncontent-type: application/json\r\n"
               f"content-length: {len(body)}\r\n\r\n").encode() + body
    connections = handed(client)
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(request)
        assert read_replies(sock, 1)[0][0] == 200
        assert handed(client) == connections + 1
        pid = replica_pid("moved")
        assert pid is not None
        pods = client.get("/api/v1/namespaces/default/pods",
                          params={"labelSelector": "serving.kserve.io/inferenceservice=moved"}).json()["items"]
        assert client.delete(f"/api/v1/namespaces/default/pods/{pods[0]['metadata']['name']}").status_code == 200
        wait_for(lambda: not os.path.exists(f"/proc/{pid}/cmdline") or _zombie(pid), 30, "the deleted replica to exit")
        sock.sendall(request)  # on the same connection, which the deleted replica held
        assert read_replies(sock, 1)[0][0] == 200  # kfbox took it back (and may have handed it to the new one)
    client.delete("/apis/serving.kserve.io/v1beta1/namespaces/default/inferenceservices/moved")


def test_a_killed_replica_closes_its_connections_and_the_next_ones_reach_its_replacement(
        server: ServerProcess, client: httpx.Client) -> None:
    apply(client, manifest("doomed", "pvc://models/iris"))
    wait_ready(client, "doomed")
    url = "/serving/default/doomed/v1/models/doomed:predict"
    connections = handed(client)
    with httpx.Client(base_url=server.url, headers=AUTH, timeout=60) as own:
        assert own.post(url, json={"instances": ROWS}).status_code == 200
        assert handed(client) == connections + 1
        pid = replica_pid("doomed")
        assert pid is not None
        os.kill(pid, signal.SIGKILL)
        with pytest.raises(httpx.TransportError):  # the connection died with the replica that held it
            own.post(url, json={"instances": ROWS})
    wait_for(lambda: replica_pid("doomed") not in (None, pid), 60, "a replacement replica")
    wait_ready(client, "doomed")
    before = handed(client)
    with httpx.Client(base_url=server.url, headers=AUTH, timeout=60) as again:
        assert again.post(url, json={"instances": ROWS}).status_code == 200
    assert handed(client) == before + 1  # to the replacement
    client.delete("/apis/serving.kserve.io/v1beta1/namespaces/default/inferenceservices/doomed")


def _zombie(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True




# --- the rules, without a server ----------------------------------------------------------------------------------
def head(text: str) -> bytes:
    """``text``'s lines ended in CRLF; ``{LF}`` and ``{CR}`` are a bare LF and CR."""
    return text.replace("\n", "\r\n").replace("{LF}", "\n").replace("{CR}", "\r").encode() + b"\r\n\r\n"


PLAIN = "POST /serving/default/iris/v1/models/iris:predict HTTP/1.1\nhost: 127.0.0.1:8080\nauthorization: Bearer t"


def test_a_plain_head_is_read() -> None:
    parsed = read_head(head(PLAIN + "\ncontent-length: 12") + b'{"x": [1, 2]}')
    assert parsed is not None
    assert (parsed.method, parsed.host, parsed.authorization, parsed.content_length) == (
        b"POST", b"127.0.0.1:8080", b"Bearer t", 12)
    assert parsed.target == b"/serving/default/iris/v1/models/iris:predict"


@pytest.mark.parametrize("unusual", [
    PLAIN.replace("HTTP/1.1", "HTTP/1.0"),
    PLAIN.replace("/v1/", "/./v1/"), PLAIN.replace("/v1/", "/%2e/v1/"), PLAIN.replace("/v1/", "//v1/"),
    PLAIN + "\ntransfer-encoding: chunked", PLAIN + "\norigin: http://x", PLAIN + "\ncookie: a=b",
    PLAIN + "\nupgrade: websocket", PLAIN + "\nexpect: 100-continue",
    PLAIN + "\nhost: other", PLAIN + "\nauthorization: Bearer u",
    PLAIN + "\ncontent-length: 1\ncontent-length: 2", PLAIN + "\ncontent-length: -1",
    PLAIN + "\nbad header line", PLAIN + "\n folded: value",
    PLAIN + "\nx-a: 1{LF}content-length: 5", PLAIN + "\nx-a: 1{CR}content-length: 5",  # a bare LF or CR
])
def test_an_unusual_head_is_not_read(unusual: str) -> None:
    assert read_head(head(unusual)) is None


def test_an_incomplete_head_is_not_read() -> None:
    assert read_head(head(PLAIN)[:-2]) is None


def test_a_grant_allows_only_its_own_service_host_token_and_size() -> None:
    grant = Grant(b"127.0.0.1:8080", b"/serving/default/iris", digest(b"Bearer t"), 100, "iris-predictor-00001")

    def allows(text: str) -> bool:
        parsed = read_head(head(text))
        assert parsed is not None
        return grant.allows(parsed)

    assert allows(PLAIN)
    assert not allows(PLAIN.replace("/iris/v1", "/iris2/v1"))  # a service whose name starts with iris
    assert not allows(PLAIN.replace("/serving/default/iris/", "/v1/"))
    assert not allows(PLAIN.replace("Bearer t", "Bearer x"))
    assert not allows(PLAIN.replace("127.0.0.1:8080", "localhost:8080"))
    assert not allows(PLAIN + "\ncontent-length: 101")
    assert allows(PLAIN + "\ncontent-length: 100")
    assert Grant.from_json(json.loads(json.dumps(grant.to_json()))) == grant


def test_without_a_token_any_authorization_passes() -> None:
    grant = Grant(None, b"", None, 100, "r")
    parsed = read_head(head("GET /v1/models/iris HTTP/1.1"))
    assert parsed is not None and grant.allows(parsed)
