"""Replica changes under the HAProxy data plane with clients on keep-alive connections, as a user's traffic
is: a real ``kfbox up --data-plane haproxy``, real replicas of a gated custom model, clients sending
requests continuously (some idle between requests) while the service scales up, down and to a new
revision. kfbox changes HAProxy's servers at run time, so none of that starts a new worker or closes a
client's connection; creating or deleting a service still reloads HAProxy, which keeps an idle
connection for its next request, and the deletion does not wait for the old worker to exit."""

from __future__ import annotations

import http.client
import json
import random
import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.serving.helpers import (
    API,
    apply,
    gated_annotations,
    gated_model,
    haproxy_ports,
    haproxy_workers,
    ingress_url,
    manifest,
    status,
    wait_for,
    wait_ready,
)
from tests.support import ServerProcess

DRAIN = 20.0
"""KFBOX_SERVING_DRAIN_SECONDS here: the old worker's hard-stop-after too, far longer than any wait below."""


@pytest.fixture(autouse=True, scope="module")
def haproxy_installed() -> None:
    if shutil.which("haproxy") is None:  # .ci/run installs it; say so rather than pass
        pytest.fail("haproxy is not installed: sudo apt-get install haproxy")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """``kfbox up`` with the HAProxy data plane, serving ``steady`` (the gated model): 1 to 3 replicas, one
    request in flight per replica as the autoscaler's target, a 2 s window."""
    home = tmp_path_factory.mktemp("home")
    proc = ServerProcess.start(home, extra_env={"KFBOX_DATA_PLANE": "haproxy", "KFBOX_INGRESS_PORT": "0",
                                                "KFBOX_SERVING_DRAIN_SECONDS": str(DRAIN)})
    gated_model(home / "code")
    with proc.client() as client:
        apply(client, steady(home))
        wait_ready(client, "steady")
    wait_for(lambda: haproxy_ports(home, "steady"), 30, "HAProxy routing to steady")
    yield proc
    proc.stop()


def steady(home: Path, min_replicas: int = 1) -> dict[str, object]:
    return manifest("steady", None, fmt="custom", min_replicas=min_replicas, max_replicas=3, scale_target=1,
                    scale_metric="concurrency", annotations={**gated_annotations(home / "code"),
                                                             "autoscaling.knative.dev/window": "2s"})


@pytest.fixture()
def client(server: ServerProcess) -> Iterator[httpx.Client]:
    with server.client() as c:
        yield c


class Clients:
    """Threads that each send echo requests on one keep-alive connection until stopped: ``busy`` of them back
    to back, ``idle`` of them resting 0.3-1.5 s between requests (HAProxy keeps an idle connection 5 s)."""

    def __init__(self, url: str, busy: int, idle: int) -> None:
        self.url = url
        self.stop = threading.Event()
        self.replies: list[tuple[int, int, str]] = []
        """(client, status, x-kfbox-revision) per answered request."""
        self.failures: list[str] = []
        self.threads = [threading.Thread(target=self._run, args=(n, 0.3 if n >= busy else 0.0))
                        for n in range(busy + idle)]
        for thread in self.threads:
            thread.start()

    def _run(self, number: int, rest: float) -> None:
        path = "/serving/default/steady/v1/models/steady:predict"
        with httpx.Client(base_url=self.url, timeout=30, limits=httpx.Limits(max_connections=1)) as c:
            while not self.stop.is_set():
                try:
                    reply = c.post(path, json={"echo": True})
                    self.replies.append((number, reply.status_code, reply.headers.get("x-kfbox-revision", "")))
                except httpx.HTTPError as exc:
                    self.failures.append(f"client {number}: {exc!r}")
                if rest:
                    time.sleep(rest + random.random() * 1.2)
                else:
                    time.sleep(0.01)

    def finish(self) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(60)


def test_keep_alive_clients_lose_no_request_while_replicas_change(server: ServerProcess, client: httpx.Client,
                                                                 tmp_path: Path) -> None:
    workers = haproxy_workers(server.home)
    clients = Clients(ingress_url(server.home), busy=2, idle=3)
    try:
        # scale up: two requests held at the gate with a target of one each
        gate = tmp_path / "gate"
        with httpx.Client(base_url=ingress_url(server.home), timeout=60) as holder:
            held = [threading.Thread(target=holder.post, args=("/serving/default/steady/v1/models/steady:predict",),
                                     kwargs={"json": {"gate": str(gate)}}) for _ in range(2)]
            for thread in held:
                thread.start()
            wait_for(lambda: len(haproxy_ports(server.home, "steady")) >= 2, 120, "a scale up in HAProxy")
            gate.touch()
            for thread in held:
                thread.join(60)
        # scale down once idle again (the clients' echo requests are short: under one in flight on average)
        wait_for(lambda: status(client, "steady")["replicas"] == 1 and len(haproxy_ports(server.home, "steady")) == 1,
                 120, "a scale down to 1 in HAProxy")
        # a new revision with two replicas replaces the old one
        apply(client, steady(server.home, min_replicas=2))
        wait_for(lambda: status(client, "steady")["components"]["predictor"].get("latestRolledoutRevision")
                 == "steady-predictor-00002", 120, "revision 2 rolled out")
        wait_for(lambda: {revision for _, _, revision in clients.replies[-20:]} == {"steady-predictor-00002"}, 30,
                 "the clients served by revision 2 only")
        wait_for(lambda: len(haproxy_ports(server.home, "steady")) == 2, 30, "revision 1 out of HAProxy")
        time.sleep(1.0)
    finally:
        clients.finish()
    assert clients.failures == []
    assert {code for _, code, _ in clients.replies} == {200}
    assert len(clients.replies) > 100, len(clients.replies)
    assert {number for number, _, _ in clients.replies} == set(range(5))
    assert {revision for _, _, revision in clients.replies} >= {"steady-predictor-00001", "steady-predictor-00002"}
    assert haproxy_workers(server.home) == workers  # every change at run time: the same worker, no reload


def test_a_new_service_reloads_and_a_deletion_neither_waits_for_nor_cuts_an_idle_connection(
        server: ServerProcess, client: httpx.Client) -> None:
    """Creating a service changes HAProxy's configuration (a reload); deleting it too. The deletion returns
    while HAProxy's old worker still holds our idle keep-alive connection (its replicas were released once no
    worker had a request at them), and that connection's next request is answered."""
    (before,), _ = haproxy_workers(server.home)
    apply(client, manifest("brief", None, fmt="custom", annotations=gated_annotations(server.home / "code")))
    wait_ready(client, "brief")
    wait_for(lambda: haproxy_ports(server.home, "brief"), 30, "HAProxy routing to brief")
    (added,), _ = haproxy_workers(server.home)
    assert added != before
    port = int(ingress_url(server.home).rsplit(":", 1)[1])
    idle = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    body, headers = json.dumps({"echo": True}), {"content-type": "application/json"}
    idle.request("POST", "/serving/default/brief/v1/models/brief:predict", body, headers)
    reply = idle.getresponse()
    assert reply.status == 200 and reply.getheader("x-kfbox-revision") == "brief-predictor-00001", reply.read()
    reply.read()
    started = time.monotonic()
    deleted = client.delete(API.format(ns="default") + "/brief")
    took = time.monotonic() - started
    assert deleted.status_code == 200, deleted.text
    current, old = haproxy_workers(server.home)
    assert old == [added] and current != [added], (current, old)  # our idle connection keeps the old worker
    assert took < DRAIN / 2, took
    idle.request("POST", "/serving/default/steady/v1/models/steady:predict", body, headers)
    reply = idle.getresponse()
    assert reply.status == 200 and reply.getheader("connection") == "close", reply.read()
    assert json.loads(reply.read())["headers"]["host"]  # the replica's answer (here by way of kfbox's gateway)
    idle.close()
    wait_for(lambda: haproxy_workers(server.home)[1] == [], 10, "the old worker gone once the connection closed")
