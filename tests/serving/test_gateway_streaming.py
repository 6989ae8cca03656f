"""The gateway hop with a replica that answers slowly: a streamed reply reaches the client as it is
produced (issue 13's token streaming), a full revision answers 503 at once, and headers pass
through without the platform's credentials — a custom ``kserve.Model`` on a real ``kfbox up``.

The model holds each reply until the test creates a *gate* file, so no assertion depends on timing:
a gateway that buffered the stream would deliver the first token only after the model gave up
waiting (it then says "timed out" instead of "released")."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.serving.helpers import apply, assert_overloaded_then_released, gated_model, manifest, wait_for, wait_ready
from tests.support import ServerProcess

QUEUE = 2
PATH = "/serving/default/tokens/v1/models/tokens:predict"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """``kfbox up`` holding at most QUEUE requests per replica, serving GATED_MODEL as ``tokens`` (one replica)."""
    home = tmp_path_factory.mktemp("home")
    annotations = gated_model(tmp_path_factory.mktemp("code"))
    proc = ServerProcess.start(home, extra_env={"KFBOX_SERVING_QUEUE_PER_REPLICA": str(QUEUE)})
    with proc.client() as client:
        apply(client, manifest("tokens", None, fmt="custom", annotations=annotations))
        wait_ready(client, "tokens")
    yield proc
    proc.stop()


def test_a_streamed_reply_reaches_the_client_as_it_is_produced(server: ServerProcess, tmp_path: Path) -> None:
    gate = tmp_path / "gate"
    with httpx.Client(base_url=server.url, timeout=60) as client, \
            client.stream("POST", PATH, json={"stream": True, "gate": str(gate)}) as reply:
        assert reply.status_code == 200
        assert reply.headers["x-kfbox-revision"] == "tokens-predictor-00001"
        lines = reply.iter_lines()
        assert json.loads(next(lines)) == {"token": "first"}  # while the model waits to produce the last
        gate.touch()
        assert json.loads(next(lines)) == {"token": "released"}
        assert list(lines) == []


def test_a_client_that_hangs_up_stops_the_replicas_stream(server: ServerProcess, tmp_path: Path) -> None:
    gate = tmp_path / "gate"
    with httpx.Client(base_url=server.url, timeout=60) as client, \
            client.stream("POST", PATH, json={"stream": True, "gate": str(gate)}) as reply:
        assert json.loads(next(reply.iter_lines())) == {"token": "first"}
    # the client left mid-stream: the gateway closes its connection to the replica, whose generator
    # is cancelled while it waits for the gate (it would otherwise wait two minutes, then finish)
    ended = gate.with_suffix(".ended")
    wait_for(ended.exists, 60, "the replica's stream to end")
    assert ended.read_text() == "stopped"


def test_the_same_stream_by_host(server: ServerProcess, tmp_path: Path) -> None:
    gate = tmp_path / "gate"
    host = {"Host": "tokens.default.example.com"}
    with httpx.Client(base_url=server.url, timeout=60) as client, \
            client.stream("POST", "/v1/models/tokens:predict", json={"stream": True, "gate": str(gate)},
                          headers=host) as reply:
        lines = reply.iter_lines()
        assert json.loads(next(lines)) == {"token": "first"}
        gate.touch()
        assert json.loads(next(lines)) == {"token": "released"}


def inflight(client: httpx.Client) -> float:
    line = next(line for line in client.get("/metrics").text.splitlines()
                if line.startswith('kfbox_serving_inflight_requests{name="tokens",namespace="default"}'))
    return float(line.rsplit(" ", 1)[1])


def test_a_full_revision_answers_503_at_once_and_serves_again_after(server: ServerProcess, tmp_path: Path) -> None:
    gate = tmp_path / "gate"
    held: list[httpx.Response] = []

    def hold() -> None:
        with httpx.Client(base_url=server.url, timeout=60) as c:
            held.append(c.post(PATH, json={"gate": str(gate)}))

    threads = [threading.Thread(target=hold) for _ in range(QUEUE)]
    for thread in threads:
        thread.start()
    with server.client() as client:
        wait_for(lambda: inflight(client) == QUEUE, 30, f"{QUEUE} requests held by the replica")
        assert_overloaded_then_released(client.post(PATH, json={"gate": str(gate)}), gate, threads, held)
        assert client.post(PATH, json={"gate": str(gate)}).json() == {"predictions": ["released"]}


def test_headers_pass_through_but_not_the_platform_credentials(server: ServerProcess) -> None:
    sent: dict[str, Any] = {"x-request-id": "req-7", "x-tenant": "blue", "traceparent": "00-ab-cd-01",
                            "authorization": "Bearer platform-secret", "cookie": "kfbox_session=abc"}
    with server.client() as client:
        reply = client.post(PATH, json={"echo": True}, headers=sent)
    assert reply.status_code == 200, reply.text
    seen = reply.json()["headers"]
    assert {k: seen.get(k) for k in ("x-request-id", "x-tenant", "traceparent")} == \
        {"x-request-id": "req-7", "x-tenant": "blue", "traceparent": "00-ab-cd-01"}
    assert "authorization" not in seen and "cookie" not in seen
    assert reply.headers.get_list("content-type") == ["application/json"]
    assert len(reply.headers.get_list("server")) == 1 and len(reply.headers.get_list("date")) == 1
