"""An iris model served from ``pvc://`` through the gateway: V1/V2, path and Host routing,
bad input, broken models, a killed replica, metrics — against a real ``kfbox up``."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.serving.helpers import (
    ROWS,
    apply,
    expected,
    kfbox,
    manifest,
    process_title,
    ready,
    status,
    train_iris,
    v1,
    wait_for,
)
from tests.support import ServerProcess

V2_PATH = "/serving/default/iris/v2/models/iris/infer"


@pytest.fixture(scope="module")
def iris(server: ServerProcess) -> Any:
    """The iris model trained here, saved where pipelines mount PVC 'models', served with 2 replicas."""
    model = train_iris(server.home / "pvc" / "models" / "iris")
    with server.client() as client:
        apply(client, manifest("iris", "pvc://models/iris", min_replicas=2, max_replicas=2))
        wait_for(lambda: status(client, "iris")["replicas"] == 2, 90, "2 ready replicas")
    return model


@pytest.fixture()
def client(server: ServerProcess) -> Any:
    with server.client() as c:
        yield c


def v2_body(rows: list[list[float]]) -> dict[str, Any]:
    return {"inputs": [{"name": "input-0", "shape": [len(rows), len(rows[0])], "datatype": "FP64",
                        "data": [v for row in rows for v in row]}]}


def test_v1_and_v2_predictions_by_path_and_host(client: httpx.Client, iris: Any) -> None:
    want = expected(iris)
    reply = v1(client, "iris")
    assert reply.status_code == 200
    assert reply.json() == {"predictions": want}
    assert reply.headers["x-kfbox-revision"] == "iris-predictor-00001"

    v2 = client.post(V2_PATH, json=v2_body(ROWS))
    assert v2.status_code == 200
    assert v2.json()["model_name"] == "iris"
    assert v2.json()["outputs"][0]["data"] == want

    host = {"Host": "iris.default.example.com"}
    assert client.post("/v1/models/iris:predict", json={"instances": ROWS}, headers=host).json() == \
        {"predictions": want}
    assert client.post("/v2/models/iris/infer", json=v2_body(ROWS), headers=host).json()["outputs"][0]["data"] == want
    # health, readiness and metadata paths, both ways
    assert client.get("/serving/default/iris/v1/models/iris").json() == {"name": "iris", "ready": True}
    assert client.get("/v2/health/ready", headers=host).status_code == 200
    assert client.get("/serving/default/iris/v2/models/iris").json()["name"] == "iris"
    assert client.get("/serving/default/iris/v2/models/iris/ready").status_code == 200


def test_v1_and_v2_predictions_take_the_replicas_fast_path(client: httpx.Client, iris: Any) -> None:
    """kfbox's replicas answer V1 predict and V2 infer on their lean route (kfbox.serving.fastpath).
    The replies are alike by design, so the replicas' own /metrics (what Prometheus scrapes) tell the routes
    apart: the lean route's counter beside kserve's histogram of every prediction, summed over both replicas.
    A V2 request the lean route leaves to kserve (a charset in its content type) gets the same reply."""
    endpoints = status(client, "iris")["revisions"]["iris-predictor-00001"]["endpoints"]
    assert len(endpoints) == 2

    def counts() -> tuple[float, float]:
        """(predictions on the lean route, predictions on either route) of the two replicas together."""
        totals = dict.fromkeys(("kfbox_replica_fast_predictions_total", "request_predict_seconds_count"), 0.0)
        for url in endpoints:
            for line in httpx.get(url + "/metrics").text.splitlines():
                name, _, value = line.partition('{model_name="iris"} ')
                if name in totals:
                    totals[name] += float(value)
        return totals["kfbox_replica_fast_predictions_total"], totals["request_predict_seconds_count"]

    lean, every = counts()
    for _ in range(2):
        assert v1(client, "iris").json() == {"predictions": expected(iris)}
    assert counts() == (lean + 2, every + 2)
    body = json.dumps({"id": "v2-1", **v2_body(ROWS)}).encode()
    fast = client.post(V2_PATH, content=body, headers={"content-type": "application/json"})
    assert fast.json()["outputs"][0]["data"] == expected(iris)
    assert counts() == (lean + 3, every + 3)
    stock = client.post(V2_PATH, content=body, headers={"content-type": "application/json; charset=utf-8"})
    assert counts() == (lean + 3, every + 4)  # predicted by kserve's route, not the lean one
    assert (fast.status_code, fast.headers["content-type"], fast.content) == \
        (stock.status_code, stock.headers["content-type"], stock.content)
    assert fast.json() == {"model_name": "iris", "model_version": None, "id": "v2-1", "parameters": None, "outputs": [
        {"name": "output-0", "shape": [len(ROWS)], "datatype": "INT64", "parameters": None, "data": expected(iris)}]}


def test_kserve_rest_client_through_the_gateway(server: ServerProcess, iris: Any) -> None:
    """The upstream kserve InferenceRESTClient, V1 and V2, with the gateway URL as its base_url."""
    import numpy as np
    from kserve import InferenceRESTClient, InferInput, InferRequest, RESTConfig

    async def call() -> tuple[Any, Any]:
        base = f"{server.url}/serving/default/iris"
        v1_client = InferenceRESTClient(RESTConfig(protocol="v1"))
        v2_client = InferenceRESTClient(RESTConfig(protocol="v2"))
        tensor = InferInput(name="input-0", shape=[len(ROWS), 4], datatype="FP64")
        tensor.set_data_from_numpy(np.array(ROWS, dtype=np.float64))
        try:
            first = await v1_client.infer(base, {"instances": ROWS}, model_name="iris")
            second = await v2_client.infer(base, InferRequest(model_name="iris", infer_inputs=[tensor]),
                                           model_name="iris")
        finally:
            await v1_client.close()
            await v2_client.close()
        return first, second

    first, second = asyncio.run(call())
    assert first == {"predictions": expected(iris)}
    assert second.outputs[0].as_numpy().tolist() == expected(iris)


def test_status_is_kserve_shaped(client: httpx.Client, server: ServerProcess, iris: Any) -> None:
    st = status(client, "iris")
    assert ready(st) == {**ready(st), "status": "True"}
    assert st["url"] == "http://iris.default.example.com"
    assert st["address"]["url"] == f"{server.url}/serving/default/iris"
    assert st["components"]["predictor"]["traffic"] == [
        {"revisionName": "iris-predictor-00001", "percent": 100, "latestRevision": True}]
    listed = client.get("/apis/serving.kserve.io/v1beta1/inferenceservices").json()
    assert [i["metadata"]["name"] for i in listed["items"] if i["metadata"]["name"] == "iris"] == ["iris"]


BAD = [
    pytest.param("v1", {"instances": [[5.1, 3.5, 1.4]]}, 400, "features", id="wrong-shape"),
    pytest.param("v1", {"instances": [["a", "b", "c", "d"]]}, 400, "convert", id="non-numeric"),
    pytest.param("v1", {"rows": [[5.1, 3.5, 1.4, 0.2]]}, 400, "instances", id="missing-instances"),
    pytest.param("v1", {"instances": []}, 400, "instances", id="empty-instances"),
    pytest.param("v2", {"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP64", "data": [1.0, 2.0, 3.0]}]},
                 400, "reshape", id="v2-shape-data-mismatch"),
    pytest.param("v2", {"outputs": []}, 422, "inputs", id="v2-missing-inputs"),
    pytest.param("unknown-model", {"instances": ROWS}, 404, "nope", id="unknown-model"),
    pytest.param("unknown-isvc", {"instances": ROWS}, 404, "does not exist", id="unknown-inferenceservice"),
]


@pytest.mark.skipif(not Path("/proc/self/cmdline").exists(), reason="read from Linux's /proc")
def test_replicas_are_named_for_their_service_in_ps(client: httpx.Client, iris: Any) -> None:
    pids = status(client, "iris")["revisions"]["iris-predictor-00001"]["pids"]
    assert len(pids) == 2
    assert [process_title(pid) for pid in pids] == ["kfbox replica default/iris rev 1"] * 2


@pytest.mark.parametrize(("where", "body", "code", "says"), BAD)
def test_bad_input_is_a_4xx_with_kserve_error_body(client: httpx.Client, iris: Any, where: str,
                                                   body: dict[str, Any], code: int, says: str) -> None:
    path = {"v1": "/serving/default/iris/v1/models/iris:predict", "v2": V2_PATH,
            "unknown-model": "/serving/default/iris/v1/models/nope:predict",
            "unknown-isvc": "/serving/default/nope/v1/models/nope:predict"}[where]
    reply = client.post(path, json=body)
    assert reply.status_code == code, reply.text
    assert set(reply.json()) == {"error"}
    assert says in reply.json()["error"]
    assert v1(client, "iris").json() == {"predictions": expected(iris)}


def test_body_over_the_serving_limit_is_413(client: httpx.Client, iris: Any) -> None:
    big = b'{"instances": [' + b"[1.0, 2.0, 3.0, 4.0]," * 900_000 + b"[1.0, 2.0, 3.0, 4.0]]}"
    assert len(big) > 16 * 1024 * 1024
    reply = client.post("/serving/default/iris/v1/models/iris:predict", content=big,
                        headers={"content-type": "application/json"})
    assert reply.status_code == 413
    assert "limit" in reply.json()["error"]
    by_host = client.post("/v1/models/iris:predict", content=big, headers={"content-type": "application/json",
                                                                           "Host": "iris.default.example.com"})
    assert by_host.status_code == 413
    assert "limit" in by_host.json()["error"]
    assert v1(client, "iris").json() == {"predictions": expected(iris)}


def test_a_chunked_request_body_is_proxied_and_bounded_by_the_serving_limit(client: httpx.Client, iris: Any) -> None:
    """No content-length: the body limit counts what arrives (the gateway's short lane keeps that check)."""
    rows = json.dumps({"instances": ROWS}).encode()
    reply = client.post("/serving/default/iris/v1/models/iris:predict", content=iter([rows[:7], rows[7:]]),
                        headers={"content-type": "application/json"})
    assert "content-length" not in reply.request.headers
    assert reply.json() == {"predictions": expected(iris)}
    piece = b"[1.0, 2.0, 3.0, 4.0]," * 50_000
    big = client.post("/serving/default/iris/v1/models/iris:predict", content=iter([b'{"instances": ['] + [piece] * 20),
                      headers={"content-type": "application/json"})
    assert big.status_code == 413
    assert big.json() == {"error": f"Request body is larger than the limit of {16 * 1024 * 1024} bytes."}


def test_gateway_requests_are_counted_by_route_like_every_request(client: httpx.Client, iris: Any) -> None:
    def counted(text: str, status: str) -> float:
        prefix = f'kfbox_http_requests_total{{method="POST",route="/serving/{{namespace}}/{{name}}/{{path}}",' \
                 f'status="{status}"}}'
        return next((float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(prefix)), 0.0)

    before = client.get("/metrics").text
    for _ in range(3):
        assert v1(client, "iris").status_code == 200
    assert client.post("/serving/default/iris/v1/models/iris:predict", json={"instances": "x"}).status_code == 400
    by_host = client.post("/v1/models/iris:predict", json={"instances": ROWS},
                          headers={"Host": "iris.default.example.com"})
    assert by_host.status_code == 200
    after = client.get("/metrics").text
    assert counted(after, "200") - counted(before, "200") == 4
    assert counted(after, "400") - counted(before, "400") == 1


def test_a_serving_path_that_names_no_service_is_the_apps_404(client: httpx.Client, iris: Any) -> None:
    for path in ("/serving/default", "/serving/default/"):
        reply = client.post(path, json={})
        assert reply.status_code == 404, path
        assert "No API at POST" in reply.json()["error"]


def test_the_replica_log_has_no_line_per_request(client: httpx.Client, server: ServerProcess, iris: Any) -> None:
    for _ in range(5):
        assert v1(client, "iris").status_code == 200
    logs = [p.read_text() for p in (server.home / "logs" / "serving" / "default" / "iris").glob("*.log")]
    assert logs
    for text in logs:
        assert "Uvicorn running on http://127.0.0.1:" in text  # kserve's own start-up lines stay
        assert "uvicorn.access" not in text and "kserve.trace" not in text
        assert ":predict" not in text
        assert "DeprecationWarning" not in text  # kserve's ORJSONResponse warning: nothing a user can act on


def test_missing_or_corrupt_model_is_not_ready_and_says_why(client: httpx.Client, server: ServerProcess,
                                                            iris: Any) -> None:
    corrupt = server.home / "pvc" / "models" / "corrupt"
    corrupt.mkdir(parents=True)
    (corrupt / "model.joblib").write_bytes(b"this is not a pickle")
    apply(client, manifest("missing", "pvc://models/does-not-exist"))
    apply(client, manifest("corrupt", "pvc://models/corrupt"))
    for name, reason in (("missing", "does-not-exist"), ("corrupt", "model.joblib")):
        st = wait_for(lambda n=name: (s := status(client, n))["modelStatus"]["states"]["activeModelState"]  # type: ignore[misc]
                      == "FailedToLoad" and s, 60, f"{name} to fail")
        condition = ready(st)
        assert condition["status"] == "False"
        assert condition["reason"] == "ModelLoadFailed"
        assert reason in condition["message"]
        shown = kfbox("serve", "get", name, url=server.url)
        assert shown.returncode == 0, shown.stderr
        assert "ModelLoadFailed" in shown.stdout
        started = time.monotonic()
        reply = v1(client, name)
        assert reply.status_code == 503
        assert time.monotonic() - started < 2.0  # answered, not hung
        assert "error" in reply.json()
    waited = kfbox("serve", "apply", "-f", str(_manifest_file(server, "missing", "pvc://models/does-not-exist")),
                   "--wait", "--timeout", "60", url=server.url)  # the same spec again: no new revision
    assert waited.returncode == 1  # at once, not after the timeout
    assert "InferenceService default/missing failed to load its model" in waited.stderr, waited.stderr
    assert "kfbox serve logs missing -n default" in waited.stderr
    assert v1(client, "iris").json() == {"predictions": expected(iris)}  # nothing else affected
    for name in ("missing", "corrupt"):
        assert client.delete(f"/apis/serving.kserve.io/v1beta1/namespaces/default/inferenceservices/{name}"
                             ).status_code == 200


def test_a_killed_replica_is_replaced_and_traffic_continues(client: httpx.Client, server: ServerProcess,
                                                           iris: Any) -> None:
    pids = status(client, "iris")["revisions"]["iris-predictor-00001"]["pids"]
    assert len(pids) == 2
    codes: list[int] = []
    stop = threading.Event()

    def traffic() -> None:
        with server.client() as c:
            while not stop.is_set():
                try:
                    codes.append(v1(c, "iris").status_code)
                except httpx.HTTPError:
                    codes.append(0)

    thread = threading.Thread(target=traffic)
    thread.start()
    try:  # counted, not timed: on a loaded machine 0.3 s can hold a handful of requests
        wait_for(lambda: len(codes) >= 20, 30, "traffic before the kill")
        os.kill(pids[0], signal.SIGKILL)
        wait_for(lambda: (p := status(client, "iris")["revisions"]["iris-predictor-00001"]["pids"])  # type: ignore[misc]
                 and len(p) == 2 and pids[0] not in p, 90, "a replacement replica")
        replaced_at = len(codes)
        wait_for(lambda: len(codes) >= replaced_at + 20, 30, "traffic after the replacement")
    finally:
        stop.set()
        thread.join()
    failures = [c for c in codes if c != 200]
    assert len(failures) <= 1, failures  # at most the one request in flight on the killed replica


def test_metrics_per_inferenceservice(client: httpx.Client, iris: Any) -> None:
    v1(client, "iris")
    # its own 400, not an earlier test's: xdist's scheduler may run this test first
    assert client.post("/serving/default/iris/v1/models/iris:predict", json={"instances": "x"}).status_code == 400
    text = client.get("/metrics").text
    lines = text.splitlines()

    def value(prefix: str) -> float:
        return float(next(line for line in lines if line.startswith(prefix)).rsplit(" ", 1)[1])

    assert value('kfbox_serving_requests_total{code="200",name="iris",namespace="default"}') >= 1
    assert value('kfbox_serving_requests_total{code="400",name="iris",namespace="default"}') >= 1
    assert value('kfbox_serving_request_duration_seconds_count{name="iris",namespace="default"}') >= 2
    assert value('kfbox_serving_inflight_requests{name="iris",namespace="default"}') == 0
    assert value('kfbox_serving_replicas{name="iris",namespace="default"}') == 2
    assert value('kfbox_serving_replica_start_seconds_count{name="iris",namespace="default"}') >= 2
    assert "kfbox_serving_cold_starts_total" in text
    assert "kfbox_serving_cold_start_seconds_bucket" in text or "kfbox_serving_cold_start_seconds" in text


def test_apply_refuses_bad_manifests_and_changes_nothing(client: httpx.Client, iris: Any) -> None:
    api = "/apis/serving.kserve.io/v1beta1/namespaces/default/inferenceservices"

    def specs() -> dict[str, Any]:  # status (replicas, conditions) may move meanwhile: what apply would change
        return {item["metadata"]["name"]: (item["metadata"].get("generation"), item["spec"])
                for item in client.get(api).json()["items"]}

    before = specs()
    bad = [
        manifest("Bad_Name", "pvc://models/iris"),
        manifest("x", "http://example.com/model.joblib"),
        manifest("x", "pvc://models/../../etc"),
        manifest("x", "pvc://models/iris", fmt="tensorflow"),
        manifest("x", None),
        {**manifest("x", "pvc://models/iris"), "kind": "Deployment"},
        manifest("x", "pvc://models/iris", min_replicas=3, max_replicas=1),
    ]
    for body in bad:
        reply = client.post(api, json=body)
        wrong_kind = body["kind"] != "InferenceService"  # 400 BadRequest; field errors are 422 Invalid
        assert reply.status_code == (400 if wrong_kind else 422), (body, reply.text)
        assert reply.json()["kind"] == "Status" and reply.json()["message"]
    assert specs() == before


def _manifest_file(server: ServerProcess, name: str, uri: str) -> Path:
    path = server.home / f"{name}.json"
    path.write_text(json.dumps(manifest(name, uri)))
    return path


def test_cli_apply_list_logs_predict_delete(server: ServerProcess, tmp_path: Path, iris: Any) -> None:
    """Last in this module: the CLI re-applies the same spec (no new revision), then deletes it."""
    path = tmp_path / "isvc.yaml"
    path.write_text("""\
apiVersion: serving.kserve.io/v1beta1
kind: InferenceService
metadata:
  name: iris
spec:
  predictor:
    minReplicas: 2
    maxReplicas: 2
    model:
      modelFormat:
        name: sklearn
      storageUri: pvc://models/iris
""")
    applied = kfbox("serve", "apply", "-f", str(path), "--wait", url=server.url)
    assert applied.returncode == 0, applied.stderr
    assert "inferenceservice.serving.kserve.io/iris configured" in applied.stdout  # its replicas' bounds moved
    again = kfbox("serve", "apply", "-f", str(path), url=server.url)
    assert "inferenceservice.serving.kserve.io/iris unchanged" in again.stdout, again.stderr  # kubectl's words
    listed = json.loads(kfbox("serve", "list", "-o", "json", url=server.url).stdout)
    iris_listed = next(i for i in listed if i["metadata"]["name"] == "iris")
    assert iris_listed["status"]["components"]["predictor"]["latestCreatedRevision"] == "iris-predictor-00001"
    predicted = kfbox("predict", "iris", "--data", json.dumps(ROWS), url=server.url)
    assert predicted.returncode == 0, predicted.stderr
    assert json.loads(predicted.stdout) == {"predictions": expected(iris)}
    as_v2 = kfbox("predict", "iris", "--v2", "--data", json.dumps(ROWS), url=server.url)
    assert json.loads(as_v2.stdout)["outputs"][0]["data"] == expected(iris), as_v2.stderr
    bad = kfbox("predict", "iris", "--data", "[[1, 2]]", url=server.url)
    assert bad.returncode == 1
    assert "features" in bad.stderr
    logs = kfbox("serve", "logs", "iris", url=server.url)
    assert "iris-predictor-00001" in logs.stdout
    deleted = kfbox("serve", "delete", "iris", url=server.url)
    assert deleted.returncode == 0
    gone = kfbox("serve", "get", "iris", url=server.url)
    assert gone.returncode == 1
    assert "not found" in gone.stderr and "kfbox serve list" in gone.stderr
    created = kfbox("serve", "apply", "-f", str(path), url=server.url)
    assert "inferenceservice.serving.kserve.io/iris created" in created.stdout, created.stderr
    assert kfbox("serve", "delete", "iris", url=server.url).returncode == 0
    assert v1(httpx.Client(base_url=server.url), "iris").status_code == 404


def test_a_service_created_again_has_its_metrics(client: httpx.Client, server: ServerProcess, iris: Any) -> None:
    """After the CLI test deleted iris (its gauges dropped): the gateway keeps each service's metric series,
    and a service created again under the same name must count and report in-flight requests anew."""
    assert v1(client, "iris").status_code == 404
    before = client.get("/metrics").text
    apply(client, manifest("iris", "pvc://models/iris"))
    wait_for(lambda: status(client, "iris")["replicas"] == 1, 90, "iris ready again")
    assert v1(client, "iris").status_code == 200
    lines = client.get("/metrics").text.splitlines()

    def value(text: list[str], prefix: str) -> float:
        return float(next((line for line in text if line.startswith(prefix)), "x 0").rsplit(" ", 1)[1])

    served = 'kfbox_serving_requests_total{code="200",name="iris",namespace="default"}'
    assert value(lines, served) == value(before.splitlines(), served) + 1
    inflight = 'kfbox_serving_inflight_requests{name="iris",namespace="default"}'
    assert inflight not in before  # dropped with the deleted service
    assert any(line.startswith(inflight) for line in lines) and value(lines, inflight) == 0
    client.delete("/apis/serving.kserve.io/v1beta1/namespaces/default/inferenceservices/iris")


def test_kubernetes_client_custom_objects_api(server: ServerProcess) -> None:
    """The pipeline's way in: kubernetes' CustomObjectsApi against kfbox, as against a cluster."""
    from kubernetes import client as k8s

    api = k8s.CustomObjectsApi(k8s.ApiClient(k8s.Configuration(host=server.url)))
    args = ("serving.kserve.io", "v1beta1", "team-a", "inferenceservices")
    body = manifest("k8s-made", "pvc://models/not-there-yet", namespace="team-a")
    created = api.create_namespaced_custom_object(*args, body)
    assert created["metadata"]["name"] == "k8s-made"
    patched = api.patch_namespaced_custom_object(*args, "k8s-made",
                                                 {"spec": {"predictor": {"canaryTrafficPercent": 10}}})
    assert patched["spec"]["predictor"]["canaryTrafficPercent"] == 10
    assert patched["spec"]["predictor"]["model"]["storageUri"] == "pvc://models/not-there-yet"
    fetched = api.get_namespaced_custom_object(*args, "k8s-made")
    assert fetched["metadata"]["generation"] == 2
    listed = api.list_namespaced_custom_object(*args)
    assert [i["metadata"]["name"] for i in listed["items"]] == ["k8s-made"]
    api.delete_namespaced_custom_object(*args, "k8s-made")
    with pytest.raises(k8s.ApiException) as info:
        api.get_namespaced_custom_object(*args, "k8s-made")
    assert info.value.status == 404
