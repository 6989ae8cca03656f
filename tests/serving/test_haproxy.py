"""The optional HAProxy data plane (``kfbox up --data-plane haproxy``) against Debian's real haproxy on
loopback, driven by a real ``kfbox up`` with a token, in front of real kserve replicas: routing by Host
and path straight to a replica, auth, the canary split, cold starts through kfbox, overload's 503,
a killed replica replaced in its slot without a reload, request metrics, gRPC on the same port, no orphan, and
the refusal without haproxy.

A request answered by HAProxy straight from a replica never reaches kfbox's HTTP stack, so it is not
in ``kfbox_http_requests_total`` (route ``/serving/...``); one that fell back to kfbox is. The tests
tell the two apart by that counter, as a user reading ``/metrics`` would."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from kfbox.config import Settings
from kfbox.errors import InvalidInput
from kfbox.serving.haproxy import restart_delay
from tests.serving.helpers import (
    ROWS,
    apply,
    assert_overloaded_then_released,
    expected,
    gated_annotations,
    gated_model,
    haproxy_ports,
    haproxy_slots,
    haproxy_workers,
    ingress_url,
    manifest,
    status,
    train_iris,
    wait_for,
    wait_ready,
)
from tests.support import ServerProcess, run_cli


@pytest.fixture(autouse=True, scope="module")
def haproxy_installed() -> None:
    if shutil.which("haproxy") is None:  # .ci/run installs it; say so rather than pass
        pytest.fail("haproxy is not installed: sudo apt-get install haproxy")


TOKEN = "s3cret-token"
QUEUE = 2
BACKOFF = "0.1"
"""The module server's first restart backoff (KFBOX_DATA_PLANE_RESTART_BACKOFF; the default, 0.5 s, is tested
below): giving HAProxy up after its 6th exit then waits 0.2 + 0.4 + 0.8 + 1.6 s, not 15 s."""
AUTH = {"Authorization": f"Bearer {TOKEN}"}
GATEWAY_ROUTE = 'route="/serving/{namespace}/{name}/{path}"'


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """``kfbox up`` with a token and the HAProxy data plane (ingress on a free port), serving ``iris`` and
    the ``held`` model, one replica each, at most QUEUE requests per replica."""
    home = tmp_path_factory.mktemp("home")
    held = gated_model(home / "code")
    proc = ServerProcess.start(home, token=TOKEN, extra_env={
        "KFBOX_DATA_PLANE": "haproxy", "KFBOX_INGRESS_PORT": "0", "KFBOX_SERVING_QUEUE_PER_REPLICA": str(QUEUE),
        "KFBOX_SERVING_GRPC_PORT": "0", "KFBOX_DATA_PLANE_RESTART_BACKOFF": BACKOFF})
    train_iris(home / "pvc" / "models" / "iris")
    with proc.client() as client:
        apply(client, manifest("iris", "pvc://models/iris", annotations={"serving.kfbox.io/enable-grpc": "true"}))
        apply(client, manifest("held", None, fmt="custom", annotations=held))
        wait_ready(client, "iris")
        wait_ready(client, "held")
    url = ingress_url(home)
    with proc.client() as client, httpx.Client(base_url=url, headers=AUTH, timeout=60) as ingress:
        wait_for(lambda: straight(ingress, client, "iris") and straight(ingress, client, "held", {"echo": True}),
                 30, "HAProxy routing to iris and held")
    yield proc
    proc.stop()


@pytest.fixture()
def ingress(server: ServerProcess) -> Iterator[httpx.Client]:
    url = ingress_url(server.home)
    with httpx.Client(base_url=url, headers=AUTH, timeout=60) as client:
        yield client


@pytest.fixture()
def client(server: ServerProcess) -> Iterator[httpx.Client]:
    with server.client() as c:
        yield c


def routed(server: ServerProcess, name: str, namespace: str = "default") -> bool:
    """HAProxy's current worker routes the service straight to a replica (kfbox sets its servers at run time)."""
    return bool(haproxy_ports(server.home, name, namespace))


def endpoints(client: httpx.Client, name: str, revision: str) -> set[int]:
    """The ports of a revision's ready replicas, as kfbox's status lists them."""
    return {int(e.rsplit(":", 1)[1]) for e in status(client, name)["revisions"][revision]["endpoints"]}


def straight(ingress: httpx.Client, client: httpx.Client, name: str, body: Any = None) -> bool:
    """A request through the ingress answered by the replica without passing through kfbox: HAProxy's
    running worker routes the service (its configuration file may be newer than the worker)."""
    before = through_kfbox(client)
    reply = ingress.post(f"/serving/default/{name}/v1/models/{name}:predict", json=body or {"instances": ROWS})
    return reply.status_code == 200 and through_kfbox(client) == before


def metric(client: httpx.Client, prefix: str) -> float:
    """The sum of the samples whose line starts with ``prefix`` in kfbox's /metrics."""
    return sum(float(line.rsplit(" ", 1)[1]) for line in client.get("/metrics").text.splitlines()
               if line.startswith(prefix))


def settled(client: httpx.Client, prefix: str) -> float:
    """:func:`metric` once it reads the same twice in a row, half a second apart: HAProxy's log lines reach
    kfbox in batches (kfbox.serving.haproxy_log.BATCH_SECONDS), after the replies."""
    last = metric(client, prefix)
    while True:
        time.sleep(0.5)
        if (now := metric(client, prefix)) == last:
            return now
        last = now


def through_kfbox(client: httpx.Client) -> float:
    return metric(client, f'kfbox_http_requests_total{{method="POST",{GATEWAY_ROUTE}')


def predict(ingress: httpx.Client, name: str, **kwargs: Any) -> httpx.Response:
    return ingress.post(f"/serving/default/{name}/v1/models/{name}:predict", json={"instances": ROWS}, **kwargs)


def test_ingress_port_is_recorded_and_haproxy_config_is_private(server: ServerProcess) -> None:
    record = json.loads((server.home / "server.json").read_text())
    assert record["ingress_url"].startswith("http://127.0.0.1:") and record["ingress_url"] != record["url"]
    folder = server.home / "haproxy"
    for name in ("haproxy.cfg", "token.lst", "revisions.map"):
        assert (folder / name).stat().st_mode & 0o077 == 0, name
    assert TOKEN not in (folder / "haproxy.cfg").read_text()  # only in the 0600 pattern file


def test_routes_by_path_and_host_straight_to_the_replica(server: ServerProcess, ingress: httpx.Client,
                                                         client: httpx.Client) -> None:
    want = {"predictions": expected(train_iris(server.home / "check"))}
    before = through_kfbox(client)
    counted = metric(client, 'kfbox_serving_requests_total{code="200",name="iris"')
    by_path = predict(ingress, "iris")
    assert by_path.status_code == 200, by_path.text
    assert by_path.json() == want
    assert by_path.headers["x-kfbox-revision"] == "iris-predictor-00001"
    by_host = ingress.post("/v1/models/iris:predict", json={"instances": ROWS},
                           headers={"Host": "iris.default.example.com:80"})
    assert by_host.json() == want and by_host.headers["x-kfbox-revision"] == "iris-predictor-00001"
    predictor_host = ingress.post("/v1/models/iris:predict", json={"instances": ROWS},
                                  headers={"Host": "iris-predictor.default.example.com"})
    assert predictor_host.json() == want
    v2 = ingress.post("/v2/models/iris/infer", headers={"Host": "iris.default.example.com"},
                      json={"inputs": [{"name": "x", "shape": [3, 4], "datatype": "FP64",
                                        "data": [v for row in ROWS for v in row]}]})
    assert v2.json()["outputs"][0]["data"] == want["predictions"]
    assert through_kfbox(client) == before  # none of them passed through kfbox's stack
    # ...but kfbox counted them, from HAProxy's log
    wait_for(lambda: metric(client, 'kfbox_serving_requests_total{code="200",name="iris"') == counted + 4, 10,
             "4 requests counted")
    assert metric(client, 'kfbox_serving_request_duration_seconds_count{name="iris"') >= 4


def test_every_request_under_load_is_counted(server: ServerProcess, client: httpx.Client) -> None:
    """Keep-alive clients, as many as the service admits at once, send 1,600 requests as fast as they can:
    every one is in kfbox's metrics.
    HAProxy's log lines used to travel as datagrams, of which a stock Linux queues 10
    (``net.unix.max_dgram_qlen``): at 1,500 requests/s about 6 in 7 were dropped uncounted."""
    total, clients = 1600, QUEUE
    before = through_kfbox(client)
    counted = metric(client, 'kfbox_serving_requests_total{code="200",name="iris"')
    timed = metric(client, 'kfbox_serving_request_duration_seconds_count{name="iris"')

    def send(_: int) -> list[int]:
        with httpx.Client(base_url=ingress_url(server.home), headers=AUTH, timeout=60) as own:
            return [predict(own, "iris").status_code for _ in range(total // clients)]

    with ThreadPoolExecutor(clients) as pool:
        statuses = Counter(code for codes in pool.map(send, range(clients)) for code in codes)
    assert statuses == {200: total}
    assert through_kfbox(client) == before  # all of them answered by HAProxy straight from the replica
    wait_for(lambda: metric(client, 'kfbox_serving_requests_total{code="200",name="iris"') == counted + total,
             10, f"{total} requests counted")
    assert metric(client, 'kfbox_serving_request_duration_seconds_count{name="iris"') == timed + total


def test_loadtest_by_name_goes_through_the_ingress(server: ServerProcess, client: httpx.Client) -> None:
    """``kfbox loadtest NAME`` measures the door clients use: the ingress port while HAProxy is up."""
    before = through_kfbox(client)
    ran = run_cli("loadtest", "iris", "-n", "60", "-c", "2", "-d", json.dumps({"instances": ROWS}), "-o", "json",
                  "--home", str(server.home), "--token", TOKEN)
    assert ran.returncode == 0, ran.stdout + ran.stderr
    report = json.loads(ran.stdout)
    assert report["url"] == f"{ingress_url(server.home)}/serving/default/iris/v1/models/iris:predict"
    assert report["status_codes"] == {"200": 60}
    assert through_kfbox(client) == before
    assert client.get("/healthz").json()["data_plane_state"] == "up"


def test_auth_refusal_comes_from_kfbox_and_credentials_stay_out_of_the_replica(
        server: ServerProcess, ingress: httpx.Client, client: httpx.Client) -> None:
    url = str(ingress.base_url)
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Bearer {TOKEN}x"}):
        refused = httpx.post(url + "/serving/default/iris/v1/models/iris:predict", json={"instances": ROWS},
                             headers=headers)
        assert refused.status_code == 401, headers
        assert refused.headers["www-authenticate"] == "Bearer"
        assert set(refused.json()) == {"error"}
    assert httpx.get(url + "/apis/serving.kserve.io/v1beta1/namespaces/default/inferenceservices").status_code == 401
    # the platform's API answers through the ingress too, with the token (HAProxy's fallback is kfbox)
    listed = ingress.get("/apis/serving.kserve.io/v1beta1/namespaces/default/inferenceservices")
    assert {item["metadata"]["name"] for item in listed.json()["items"]} >= {"iris", "held"}
    echoed = ingress.post("/serving/default/held/v1/models/held:predict", json={"echo": True},
                          headers={"cookie": "kfbox_session=abc", "x-request-id": "req-9"})
    seen = echoed.json()["headers"]
    assert seen.get("x-request-id") == "req-9"
    assert "authorization" not in seen and "cookie" not in seen


def test_unusual_requests_and_unknown_services_fall_back_to_kfbox(ingress: httpx.Client, client: httpx.Client) -> None:
    before = through_kfbox(client)
    missing = ingress.post("/serving/default/nope/v1/models/nope:predict", json={"instances": ROWS})
    assert missing.status_code == 404 and "nope does not exist" in missing.json()["error"]
    chunked = ingress.post("/serving/default/iris/v1/models/iris:predict",
                           content=iter([b'{"instances": ', json.dumps(ROWS).encode(), b"}"]))
    assert chunked.status_code == 200  # a chunked body: kfbox's gateway, which bounds it
    assert through_kfbox(client) == before + 2
    big = ingress.post("/serving/default/iris/v1/models/iris:predict", content=b"x" * (17 * 1024 * 1024))
    assert big.status_code == 413 and set(big.json()) == {"error"}


def test_replica_errors_have_kserve_bodies(ingress: httpx.Client) -> None:
    bad = ingress.post("/serving/default/iris/v1/models/iris:predict", json={"instances": "x"})
    assert bad.status_code == 400 and set(bad.json()) == {"error"}
    not_allowed = ingress.delete("/serving/default/iris/v1/models/iris:predict")
    assert not_allowed.status_code == 405
    assert not_allowed.json() == {"error": "Method Not Allowed"} and not_allowed.headers["allow"] == "GET"
    invalid = ingress.post("/serving/default/iris/v2/models/iris/infer", json={"inputs": 1})
    assert invalid.status_code == 422
    assert set(invalid.json()) == {"error"} and invalid.json()["error"].startswith("Invalid request: ")
    missing = ingress.get("/serving/default/iris/v2/nothing")
    assert missing.status_code == 404 and missing.json() == {"error": "Not Found"}
    assert missing.headers["x-kfbox-revision"] == "iris-predictor-00001"


def test_overload_is_a_fast_503_with_kserve_body(server: ServerProcess, ingress: httpx.Client,
                                                 client: httpx.Client, tmp_path: Path) -> None:
    gate = tmp_path / "gate"
    held: list[httpx.Response] = []
    path = "/serving/default/held/v1/models/held:predict"

    def hold() -> None:
        with httpx.Client(base_url=ingress.base_url, headers=AUTH, timeout=60) as c:
            held.append(c.post(path, json={"gate": str(gate)}))

    threads = [threading.Thread(target=hold) for _ in range(QUEUE)]
    for thread in threads:
        thread.start()
    # kfbox reads HAProxy's requests in flight into its gauge (and the autoscaler)
    wait_for(lambda: metric(client, 'kfbox_serving_inflight_requests{name="held"') == QUEUE, 30,
             f"{QUEUE} requests in flight through HAProxy")
    assert_overloaded_then_released(ingress.post(path, json={"gate": str(gate)}), gate, threads, held)
    wait_for(lambda: metric(client, 'kfbox_serving_requests_total{code="503",name="held"') == 1, 10, "503 counted")


def test_grpc_calls_to_the_ingress_port_reach_the_grpc_gateway(server: ServerProcess) -> None:
    """One ingress port for both protocols, as KServe's e2e tests expect of Istio's (their gRPC calls go to
    KSERVE_INGRESS_HOST_PORT): HTTP/2 gRPC goes to kfbox's gRPC gateway, which checks the token itself."""
    import asyncio

    import grpc
    from kserve import InferenceGRPCClient, InferInput, InferRequest

    address = ingress_url(server.home).removeprefix("http://")
    inputs = [InferInput("input-0", [len(ROWS), 4], "FP64", data=[x for row in ROWS for x in row])]
    auth = [("authorization", f"Bearer {TOKEN}")]

    async def calls() -> None:
        client = InferenceGRPCClient(address, timeout=60)
        try:
            reply = await client.infer(InferRequest(model_name="iris", infer_inputs=inputs), headers=auth)
            assert list(reply.outputs[0].data) == expected(train_iris(server.home / "check-grpc"))
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await client.infer(InferRequest(model_name="iris", infer_inputs=inputs))
            assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
        finally:
            await client.close()

    asyncio.run(calls())


def test_canary_split_through_haproxy(server: ServerProcess, ingress: httpx.Client, client: httpx.Client) -> None:
    train_iris(server.home / "pvc" / "models" / "flower-v1")
    train_iris(server.home / "pvc" / "models" / "flower-v2", kind="tree")
    apply(client, manifest("flower", "pvc://models/flower-v1"))
    wait_for(lambda: status(client, "flower")["components"]["predictor"].get("latestRolledoutRevision")
             == "flower-predictor-00001", 90, "rollout of revision 1")  # no promotion racing the next apply
    wait_for(lambda: routed(server, "flower"), 10, "flower in HAProxy")
    workers = haproxy_workers(server.home)[0]  # the service's creation reloaded; its split turned on will not
    # a merge patch, as `kubectl patch`: no resourceVersion to race the status updates of revision 1
    patched = client.patch("/apis/serving.kserve.io/v1beta1/namespaces/default/inferenceservices/flower",
                           json={"spec": {"predictor": {"canaryTrafficPercent": 20,
                                                        "model": {"storageUri": "pvc://models/flower-v2"}}}},
                           headers={"content-type": "application/merge-patch+json"})
    assert patched.status_code == 200, patched.text
    wait_for(lambda: status(client, "flower")["revisions"]["flower-predictor-00002"]["ready"], 90, "canary ready")
    wait_for(lambda: endpoints(client, "flower", "flower-predictor-00002") <= haproxy_ports(server.home, "flower"),
             10, "the canary in HAProxy")
    wait_for(lambda: straight(ingress, client, "flower") and any(
        predict(ingress, "flower").headers["x-kfbox-revision"] == "flower-predictor-00002" for _ in range(5)),
        10, "HAProxy sending the canary its share")
    before = through_kfbox(client)
    seen: Counter[str] = Counter()
    with ThreadPoolExecutor(QUEUE) as pool:  # no more at once than one replica may hold: no 503
        for reply in pool.map(lambda _: predict(ingress, "flower"), range(200)):
            assert reply.status_code == 200, reply.text
            seen[reply.headers["x-kfbox-revision"]] += 1
    assert through_kfbox(client) == before
    assert 30 <= seen["flower-predictor-00002"] <= 50, seen  # weighted round robin: 1 in 5, smoothly
    assert sum(seen.values()) == 200
    assert haproxy_workers(server.home)[0] == workers  # the split turned on at run time: no reload


def test_load_through_haproxy_scales_up_and_down(server: ServerProcess, ingress: httpx.Client,
                                                 client: httpx.Client, tmp_path: Path) -> None:
    """The autoscaler sees the requests HAProxy holds (none of them passes through kfbox): two held at once
    with a target of one each scale the service to two replicas; idle again, it scales back down, through
    HAProxy, and every request is answered."""
    apply(client, manifest("auto", None, fmt="custom", min_replicas=1, max_replicas=2, scale_target=1,
                           scale_metric="concurrency",
                           annotations={**gated_annotations(server.home / "code"),
                                        "autoscaling.knative.dev/window": "2s"}))
    wait_ready(client, "auto")
    wait_for(lambda: straight(ingress, client, "auto", {"echo": True}), 30, "HAProxy routing to auto")
    workers = haproxy_workers(server.home)[0]  # a new service took a reload; scaling it takes none
    before = through_kfbox(client)
    gate = tmp_path / "gate"
    held: list[httpx.Response] = []

    def hold() -> None:
        with httpx.Client(base_url=ingress.base_url, headers=AUTH, timeout=120) as c:
            held.append(c.post("/serving/default/auto/v1/models/auto:predict", json={"gate": str(gate)}))

    threads = [threading.Thread(target=hold) for _ in range(QUEUE)]
    for thread in threads:
        thread.start()
    try:
        wait_for(lambda: status(client, "auto")["replicas"] == 2, 120, "2 replicas for 2 requests held by HAProxy")
        wait_for(lambda: len(haproxy_ports(server.home, "auto")) == 2, 10, "the second replica in HAProxy")
    finally:
        gate.touch()
        for thread in threads:
            thread.join(120)
    assert [r.json() for r in held] == [{"predictions": ["released"]}] * QUEUE
    wait_for(lambda: status(client, "auto")["replicas"] == 1, 60, "scale down to 1 after the idle window")
    assert [straight(ingress, client, "auto", {"echo": True}) for _ in range(3)] == [True] * 3
    assert through_kfbox(client) == before
    assert len(haproxy_ports(server.home, "auto")) == 1
    assert haproxy_workers(server.home) == (workers, [])  # the same worker throughout, no old one
    client.delete("/apis/serving.kserve.io/v1beta1/namespaces/default/inferenceservices/auto")


def test_requests_through_haproxy_count_toward_rps(server: ServerProcess, ingress: httpx.Client,
                                                   client: httpx.Client) -> None:
    """``scaleMetric: rps`` counts the requests HAProxy sends straight to the replicas (from its counters; none
    passes through kfbox): one sequential client through the ingress against a target of 20 a second scales
    the service to two replicas."""
    apply(client, manifest("rated", "pvc://models/iris", min_replicas=1, max_replicas=2, scale_target=20,
                           scale_metric="rps", annotations={"autoscaling.knative.dev/window": "2s"}))
    wait_ready(client, "rated")
    wait_for(lambda: straight(ingress, client, "rated"), 30, "HAProxy routing to rated")
    before = through_kfbox(client)
    sent: Counter[int] = Counter()
    deadline = time.monotonic() + 60
    while status(client, "rated")["replicas"] < 2 and time.monotonic() < deadline:
        for _ in range(50):
            sent[predict(ingress, "rated").status_code] += 1
    assert status(client, "rated")["replicas"] == 2, sent
    assert set(sent) == {200}, sent
    assert through_kfbox(client) == before
    client.delete("/apis/serving.kserve.io/v1beta1/namespaces/default/inferenceservices/rated")


def test_a_killed_replica_is_replaced_in_its_slot_without_a_reload(server: ServerProcess, ingress: httpx.Client,
                                                                   client: httpx.Client) -> None:
    revision = status(client, "iris")["revisions"]["iris-predictor-00001"]
    (old,), (pid,) = revision["endpoints"], revision["pids"]
    old_port = int(old.rsplit(":", 1)[1])
    assert haproxy_slots(server.home, "iris") == {"s1": old_port}
    workers = haproxy_workers(server.home)[0]
    os.kill(pid, signal.SIGKILL)
    # until kfbox sees it dead, a request sent its way fails as through the Python gateway: KServe's body
    failed = predict(ingress, "iris")
    assert failed.status_code == 200 or (failed.status_code in (502, 503) and set(failed.json()) == {"error"})
    wait_for(lambda: status(client, "iris")["replicas"] == 1 and routed(server, "iris")
             and old_port not in haproxy_ports(server.home, "iris"), 60, "the new replica in HAProxy")
    # a dead replica has no request left to finish: its slot is free at once, not after the drain grace (30 s)
    (new_port,) = endpoints(client, "iris", "iris-predictor-00001")
    assert haproxy_slots(server.home, "iris") == {"s1": new_port}
    before = through_kfbox(client)
    assert [predict(ingress, "iris").status_code for _ in range(5)] == [200] * 5
    assert through_kfbox(client) == before
    assert haproxy_workers(server.home)[0] == workers


def test_a_scaled_to_zero_service_cold_starts_through_kfbox(server: ServerProcess, ingress: httpx.Client,
                                                           client: httpx.Client) -> None:
    model = train_iris(server.home / "pvc" / "models" / "zero")
    apply(client, manifest("zero", "pvc://models/zero", annotations={"autoscaling.knative.dev/window": "1s"},
                           min_replicas=0, max_replicas=1))
    pids = wait_ready(client, "zero")["revisions"]["zero-predictor-00001"]["pids"]
    wait_for(lambda: status(client, "zero")["revisions"]["zero-predictor-00001"]["replicas"] == 0, 60, "zero")
    wait_for(lambda: not routed(server, "zero"), 10, "zero out of HAProxy")
    # and the replica gone: while it drains, HAProxy's old worker (a kept-alive connection of ours) may still
    # send it a request straight, which it answers; seen once its start became a fork (~0.2 s)
    wait_for(lambda: not any(Path(f"/proc/{pid}").exists() for pid in pids), 30, "the drained replica to exit")
    reply = predict(ingress, "zero")
    assert reply.status_code == 200, reply.text
    assert reply.json() == {"predictions": expected(model)}
    assert metric(client, 'kfbox_serving_cold_starts_total{name="zero"') == 1
    wait_for(lambda: routed(server, "zero"), 10, "zero back in HAProxy once its replica is ready")
    client.delete("/apis/serving.kserve.io/v1beta1/namespaces/default/inferenceservices/zero")
    wait_for(lambda: not routed(server, "zero"), 10, "a deleted service out of HAProxy")


def test_a_deleted_service_finishes_the_requests_haproxy_holds(server: ServerProcess, ingress: httpx.Client,
                                                              client: httpx.Client, tmp_path: Path) -> None:
    """The replica stops only once HAProxy's old worker has finished what it sent there (kfbox's own count of
    requests in flight is zero: none of them passed through kfbox)."""
    gate = tmp_path / "gate"
    held: list[httpx.Response] = []

    def hold() -> None:
        with httpx.Client(base_url=ingress.base_url, headers=AUTH, timeout=60) as c:
            held.append(c.post("/serving/default/held/v1/models/held:predict", json={"gate": str(gate)}))

    holder = threading.Thread(target=hold)
    holder.start()
    wait_for(lambda: metric(client, 'kfbox_serving_inflight_requests{name="held"') == 1, 30, "1 request held")
    deleted: list[httpx.Response] = []
    deleter = threading.Thread(target=lambda: deleted.append(
        client.delete("/apis/serving.kserve.io/v1beta1/namespaces/default/inferenceservices/held")))
    deleter.start()
    wait_for(lambda: not routed(server, "held"), 10, "held out of HAProxy's new configuration")
    assert held == []  # still held by the old worker, its replica still running
    gate.touch()
    holder.join(60)
    deleter.join(60)
    assert [r.status_code for r in held] == [200] and held[0].json() == {"predictions": ["released"]}
    assert [r.status_code for r in deleted] == [200]


def test_a_killed_haproxy_is_restarted_with_the_current_routes(server: ServerProcess, ingress: httpx.Client,
                                                              client: httpx.Client) -> None:
    url = ingress_url(server.home)
    assert client.get("/healthz").json()["data_plane"] == f"haproxy up on {url}"
    pids = _haproxy_pids(server.home)
    os.kill(pids[0], signal.SIGKILL)  # the master: a crash as HAProxy has it
    wait_for(lambda: not any(_alive(pid) for pid in pids), 10, "the master and its workers gone")
    wait_for(lambda: _answers(ingress), 15, "predictions through the ingress port again")
    counted = settled(client, 'kfbox_serving_requests_total{code="200",name="iris"')  # _answers' lines arrive late
    assert straight(ingress, client, "iris")  # routed as before: the current configuration, not kfbox's fallback
    # ...and counted: the new worker's log reaches kfbox on a connection of its own
    wait_for(lambda: metric(client, 'kfbox_serving_requests_total{code="200",name="iris"') == counted + 1, 10,
             "the request after the restart counted")
    # ...to the replica set at run time (the one that replaced a killed one above), not the first one
    assert haproxy_ports(server.home, "iris") == endpoints(client, "iris", "iris-predictor-00001")
    assert _haproxy_pids(server.home)[0] != pids[0]
    assert client.get("/healthz").json()["data_plane"] == f"haproxy up on {url}, restarted 1 time"
    assert metric(client, "kfbox_data_plane_restarts_total") == 1 and metric(client, "kfbox_data_plane_up") == 1
    assert f"exited with -9; restarting it in {BACKOFF}s" in server.log()  # the configured backoff
    shown = run_cli("status", "--home", str(server.home), "--output", "json")
    assert json.loads(shown.stdout)["data_plane"] == f"haproxy up on {url}, restarted 1 time", shown.stderr


def test_a_haproxy_that_keeps_exiting_is_given_up_and_kfbox_still_serves(server: ServerProcess,
                                                                         client: httpx.Client) -> None:
    """Last with this module's server: it leaves HAProxy stopped. The ingress port is taken (by this test)
    once HAProxy is killed, so each restart exits at once, as a HAProxy crashing at start would."""
    url = ingress_url(server.home)
    port = int(url.rsplit(":", 1)[1])
    with socket.socket() as taken:
        taken.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)

        def kill_and_take_the_port() -> bool:
            try:
                pids = _haproxy_pids(server.home)
                os.kill(pids[0], signal.SIGKILL)
            except (OSError, ValueError):  # between a restart's spawn and its pid file
                return False
            wait_for(lambda: not any(_alive(pid) for pid in pids), 10, "HAProxy gone")
            try:  # kfbox may have restarted it first: then kill it again
                taken.bind(("127.0.0.1", port))
            except OSError:
                return False
            return True

        wait_for(kill_and_take_the_port, 30, "the ingress port taken while HAProxy is down")
        taken.listen()
        health = wait_for(lambda: (h := client.get("/healthz").json()["data_plane"]).startswith("haproxy stopped")
                          and h, 60, "HAProxy given up after repeated exits")
    assert "times within 120s" in health and f"the ingress port {url} is closed" in health, health
    assert "HAProxy data plane not restarted" in server.log()
    assert metric(client, "kfbox_data_plane_up") == 0
    reply = client.post("/serving/default/iris/v1/models/iris:predict", json={"instances": ROWS})
    assert reply.status_code == 200, reply.text  # kfbox's own port still serves inference
    # where users look: the deployment page says so, and its snippets use kfbox's own port
    page = client.get("/deployments/default/iris", headers={"Accept": "text/html"}).text
    assert '<span class="state state-stopped">STOPPED</span>' in page and "times within 120s" in page
    assert f"<code>curl -s {server.url}/serving/default/iris/v1/models/iris:predict -H" in page
    assert "HAProxy was given up (see the data plane line above), so these use kfbox&#39;s own port" in page
    shown = run_cli("serve", "get", "iris", "--url", server.url, env={"KFBOX_TOKEN": TOKEN})
    assert any("data plane" in line and "haproxy stopped:" in line for line in shown.stdout.splitlines()), \
        shown.stdout
    # and the load tester (and `kfbox example iris`) send inference to kfbox's own port too
    ran = run_cli("loadtest", "iris", "-n", "10", "-c", "1", "-d", json.dumps({"instances": ROWS}), "-o", "json",
                  "--home", str(server.home), "--token", TOKEN)
    assert json.loads(ran.stdout)["url"] == f"{server.url}/serving/default/iris/v1/models/iris:predict", ran.stderr


def _answers(ingress: httpx.Client) -> bool:
    try:
        return predict(ingress, "iris").status_code == 200
    except httpx.TransportError:
        return False




def _haproxy_pids(home: Path) -> list[int]:
    """The master (from its pid file) and its workers."""
    master = int((home / "haproxy" / "haproxy.pid").read_text().split()[0])
    workers = Path(f"/proc/{master}/task/{master}/children").read_text().split()
    return [master, *(int(pid) for pid in workers)]


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_the_restart_backoff_defaults_to_half_a_second_doubling_to_eight(monkeypatch: pytest.MonkeyPatch) -> None:
    """What a user who sets nothing gets (the module's server above sets a shorter one)."""
    assert [restart_delay(Settings.load(), exits) for exits in range(1, 7)] == [0.5, 1, 2, 4, 8, 8]
    monkeypatch.setenv("KFBOX_DATA_PLANE_RESTART_BACKOFF", BACKOFF)
    assert [restart_delay(Settings.load(), exits) for exits in range(1, 3)] == [0.1, 0.2]
    monkeypatch.setenv("KFBOX_DATA_PLANE_RESTART_BACKOFF", "-1")
    with pytest.raises(InvalidInput, match="KFBOX_DATA_PLANE_RESTART_BACKOFF"):
        Settings.load()


def test_no_orphan_haproxy_after_the_server_is_killed(tmp_path: Path) -> None:
    """A ``kill -9`` of kfbox (no shutdown hook runs); after a graceful stop: the next test."""
    proc = ServerProcess.start(tmp_path / "home", extra_env={"KFBOX_DATA_PLANE": "haproxy",
                                                             "KFBOX_INGRESS_PORT": "0"})
    pids = _haproxy_pids(proc.home)
    assert len(pids) >= 2 and all(_alive(pid) for pid in pids)
    os.kill(proc.process.pid, signal.SIGKILL)
    proc.process.wait()
    wait_for(lambda: not any(_alive(pid) for pid in pids), 10, "HAProxy gone")
    proc.stop()


def test_a_clear_error_without_haproxy(tmp_path: Path) -> None:
    empty = tmp_path / "bin"
    empty.mkdir()
    started = run_cli("up", "--port", "0", "--home", str(tmp_path / "home"), "--data-plane", "haproxy",
                      env={"PATH": str(empty)})
    assert started.returncode != 0
    assert "apt-get install haproxy" in started.stderr + started.stdout
    assert "Traceback" not in started.stderr
    assert not (tmp_path / "home" / "server.json").exists()


def test_a_clear_error_when_the_ingress_port_is_taken(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        started = run_cli("up", "--port", "0", "--home", str(tmp_path / "home"), "--data-plane", "haproxy",
                          "--ingress-port", str(port))
    assert started.returncode != 0
    assert f"HAProxy cannot listen on 127.0.0.1:{port}" in started.stderr + started.stdout
    assert "--ingress-port" in started.stderr + started.stdout


def test_a_haproxy_left_by_an_earlier_server_is_stopped_at_the_next_start(tmp_path: Path) -> None:
    """A stand-in for a master that outlived its server (the death signal can be lost, e.g. a container's PID 1
    reaping oddly): the next ``kfbox up`` of the home stops it before starting its own; and that server's own
    HAProxy, master and workers, is gone once it stops (no orphan after a graceful stop)."""
    home = tmp_path / "home"
    folder = home / "haproxy"
    folder.mkdir(parents=True)
    config = folder / "haproxy.cfg"
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    config.write_text("global\n    nbthread 1\ndefaults\n    mode http\n    timeout client 5s\n"
                      f"frontend f\n    bind 127.0.0.1:{port}\n    http-request return status 200\n")
    left = subprocess.Popen(["haproxy", "-W", "-f", str(config), "-p", str(folder / "haproxy.pid")],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        wait_for(lambda: (folder / "haproxy.pid").exists() and (folder / "haproxy.pid").read_text().strip(), 10,
                 "the leftover's pid file")
        proc = ServerProcess.start(home, extra_env={"KFBOX_DATA_PLANE": "haproxy", "KFBOX_INGRESS_PORT": "0"})
        try:
            left.wait(10)
            assert left.returncode is not None
            pids = _haproxy_pids(home)
            assert len(pids) >= 2 and pids[0] != left.pid and all(_alive(pid) for pid in pids)
        finally:
            proc.stop()
        wait_for(lambda: not any(_alive(pid) for pid in pids), 10, "HAProxy gone after the server stopped")
    finally:
        if left.poll() is None:
            left.kill()
            left.wait()
