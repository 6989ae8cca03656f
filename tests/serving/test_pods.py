"""An InferenceService's replicas as core/v1 Pods, from the serving package's shared ``kfbox up``: the real
``kubectl`` lists them (``get pods -l``), prints a replica's log (``logs``) and restarts one (``delete pod``); the
real ``kubernetes`` client lists them by label as KServe's e2e tests do."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.serving.helpers import (
    ROWS,
    apply,
    kube_client,
    kubectl,
    kubectl_env,
    manifest,
    refused,
    train_iris,
    wait_for,
    wait_ready,
)
from tests.serving.helpers import kubectl_ok as ok
from tests.support import ServerProcess

NS = "pods-test"
SELECTOR = "serving.kserve.io/inferenceservice="


@pytest.fixture(scope="module")
def client(server: ServerProcess) -> Iterator[httpx.Client]:
    with server.client() as http:
        yield http


@pytest.fixture(scope="module")
def kube_env(server: ServerProcess, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    return kubectl_env(server, tmp_path_factory.mktemp("kubectl-home"))


def pod_rows(env: dict[str, str], name: str) -> list[list[str]]:
    header, *rows = ok(env, "get", "pods", "-n", NS, "-l", SELECTOR + name).splitlines()
    assert header.split() == ["NAME", "READY", "STATUS", "RESTARTS", "AGE"]
    return [row.split() for row in rows]


def test_kubectl_lists_a_replica_pod_prints_its_log_and_restarts_it(server: ServerProcess, client: httpx.Client,
                                                                    kube_env: dict[str, str]) -> None:
    from kubernetes import client as k8s
    from kubernetes import watch

    train_iris(server.home / "pvc" / "models" / "pod-iris")
    apply(client, manifest("pod-iris", "pvc://models/pod-iris", namespace=NS))
    wait_ready(client, "pod-iris", NS)

    ((pod, ready, phase, restarts, _),) = pod_rows(kube_env, "pod-iris")
    assert re.fullmatch(r"pod-iris-predictor-00001-deployment-[a-z0-9]{10}-[a-z0-9]{5}", pod), pod
    assert (ready, phase, restarts) == ("1/1", "Running", "0")
    assert "po" in ok(kube_env, "api-resources", "--api-group=").split()

    header, row = ok(kube_env, "top", "pods", "-n", NS, "-l", SELECTOR + "pod-iris").splitlines()
    assert header.split() == ["NAME", "CPU(cores)", "MEMORY(bytes)"]
    name, cpu, memory = row.split()
    assert name == pod and re.fullmatch(r"\d+m", cpu) and int(memory.removesuffix("Mi")) > 10, row  # a model's RSS

    logged = ok(kube_env, "logs", pod, "-n", NS)
    assert "Uvicorn running" in logged or "Started server process" in logged, logged
    assert ok(kube_env, "logs", "-n", NS, "-l", SELECTOR + "pod-iris", "--tail", "1").strip() == \
        logged.strip().splitlines()[-1].strip()
    previous = kubectl(kube_env, "logs", pod, "-n", NS, "--previous")
    assert previous.returncode != 0 and "previous terminated container" in previous.stderr, previous.stderr

    core = k8s.CoreV1Api(kube_client(server))
    before = core.list_namespaced_pod(NS, label_selector=SELECTOR + "pod-iris").metadata.resource_version
    assert ok(kube_env, "delete", "pod", pod, "-n", NS).strip() == f'pod "{pod}" deleted'

    def replaced() -> list[str] | None:
        rows = pod_rows(kube_env, "pod-iris")
        return rows[0] if len(rows) == 1 and rows[0][0] != pod and rows[0][1] == "1/1" else None
    new = wait_for(replaced, timeout=60, what="a replacement pod, ready")
    assert new[2] == "Running"
    reply = client.post(f"/serving/{NS}/pod-iris/v1/models/pod-iris:predict", json={"instances": ROWS})
    assert reply.status_code == 200 and len(reply.json()["predictions"]) == 3, reply.text
    gone = kubectl(kube_env, "get", "pod", pod, "-n", NS)
    assert gone.returncode != 0 and "NotFound" in gone.stderr, gone.stderr

    seen = []  # a watch from before the delete replays it: the old pod DELETED, the new one ADDED
    for event in watch.Watch().stream(core.list_namespaced_pod, NS, label_selector=SELECTOR + "pod-iris",
                                      resource_version=before, timeout_seconds=5):
        seen.append((event["type"], event["object"].metadata.name))
        if ("ADDED", new[0]) in seen and ("DELETED", pod) in seen:
            break
    assert ("DELETED", pod) in seen and ("ADDED", new[0]) in seen, seen


def test_the_kubernetes_client_lists_a_standard_predictors_pods_by_label(server: ServerProcess,
                                                                         client: httpx.Client) -> None:
    from kubernetes import client as k8s

    core = k8s.CoreV1Api(kube_client(server))
    train_iris(server.home / "pvc" / "models" / "pod-raw")
    body = manifest("pod-raw", "pvc://models/pod-raw", namespace=NS,
                    annotations={"serving.kserve.io/deploymentMode": "Standard"})
    body["spec"]["predictor"]["model"]["env"] = [{"name": "GREETING", "value": "hi"}]
    owner = apply(client, body)
    wait_ready(client, "pod-raw", NS)

    (pod,) = core.list_namespaced_pod(NS, label_selector=SELECTOR + "pod-raw").items
    assert re.fullmatch(r"pod-raw-predictor-[0-9a-f]{10}-[a-z0-9]{5}", pod.metadata.name), pod.metadata.name
    assert pod.metadata.labels["app"] == "isvc.pod-raw-predictor"
    assert pod.metadata.labels["component"] == "predictor"
    (ref,) = pod.metadata.owner_references
    assert (ref.kind, ref.name) == ("ReplicaSet", pod.metadata.name.rsplit("-", 1)[0])
    assert pod.metadata.name.rsplit("-", 2)[1] == pod.metadata.labels["pod-template-hash"]
    (container,) = pod.spec.containers
    assert container.name == "kserve-container" and [(e.name, e.value) for e in container.env] == [("GREETING", "hi")]
    assert pod.status.phase == "Running" and pod.status.pod_ip == "127.0.0.1" and pod.status.start_time is not None
    assert {c.type: c.status for c in pod.status.conditions} == {
        "PodScheduled": "True", "Initialized": "True", "ContainersReady": "True", "Ready": "True"}
    (state,) = pod.status.container_statuses
    assert state.ready and state.restart_count == 0 and state.state.running.started_at is not None
    assert owner["metadata"]["uid"] != pod.metadata.uid

    got = core.read_namespaced_pod(pod.metadata.name, NS)
    assert got.metadata.uid == pod.metadata.uid
    by_field = core.list_pod_for_all_namespaces(field_selector=f"metadata.name={pod.metadata.name},"
                                                "status.phase=Running").items
    assert [p.metadata.name for p in by_field] == [pod.metadata.name]
    assert core.list_namespaced_pod(NS, field_selector="status.phase=Failed",
                                    label_selector=SELECTOR + "pod-raw").items == []
    body_400 = refused(lambda: core.list_namespaced_pod(NS, field_selector="spec.hostname=x"), 400)
    assert "spec.hostname=x" in body_400["message"]
    body_405 = refused(lambda: core.patch_namespaced_pod(pod.metadata.name, NS, {"metadata": {"labels": {"a": "b"}}}),
                       405)
    assert "kubectl edit isvc" in body_405["message"]
    refused(lambda: core.read_namespaced_pod("pod-raw-predictor-nothere-abcde", NS), 404)
    log: Any = core.read_namespaced_pod_log(pod.metadata.name, NS, container="kserve-container", tail_lines=2)
    assert 1 <= len(log.splitlines()) <= 2, log
    refused(lambda: core.read_namespaced_pod_log(pod.metadata.name, NS, container="queue-proxy"), 400)
