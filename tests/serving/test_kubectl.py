"""The real ``kubectl`` (Debian's package) against ``kfbox up``, through the kubeconfig ``kfbox kubeconfig``
writes. There is no Kubernetes cluster here: kfbox answers as the API server. The example's own
manifest (examples/iris/inference.yaml) serves a real iris model from the PVC path it names."""

from __future__ import annotations

import json
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.serving.helpers import kubectl, kubectl_env, train_iris
from tests.serving.helpers import kubectl_ok as ok
from tests.support import ServerProcess

ROOT = Path(__file__).resolve().parents[2]
MANIFEST = ROOT / "examples" / "iris" / "inference.yaml"
NS = "kubeflow-user-example-com"
NAME = "sklearn-inference"


@pytest.fixture(scope="module")
def kube_env(server: ServerProcess, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    env = kubectl_env(server, tmp_path_factory.mktemp("kubectl-home"))
    config = Path(env["KUBECONFIG"])
    assert yaml.safe_load(config.read_text())["current-context"] == "kfbox"
    assert (config.stat().st_mode & 0o777) == 0o600
    # the manifest's storageUri: pvc://model-pvc/models/KNN_6/v1/model
    train_iris(server.home / "pvc" / "model-pvc" / "models" / "KNN_6" / "v1" / "model")
    yield env


def test_apply_wait_get_watch_patch_select_delete(kube_env: dict[str, str]) -> None:
    assert f"inferenceservice.serving.kserve.io/{NAME} created" in ok(kube_env, "apply", "-f", str(MANIFEST))
    assert "condition met" in ok(kube_env, "wait", "--for=condition=Ready", f"isvc/{NAME}", "-n", NS,
                                 "--timeout=90s", timeout=100)
    table = ok(kube_env, "get", "isvc", "-n", NS)
    header, row = table.splitlines()[:2]
    assert header.split()[:3] == ["NAME", "URL", "READY"] and row.split()[0] == NAME and "True" in row.split()
    assert "unchanged" in ok(kube_env, "apply", "-f", str(MANIFEST))
    assert "serverside-applied" in ok(kube_env, "apply", "--server-side", "-f", str(MANIFEST))

    # watch while patching: the watch prints the object again for the change
    watcher = subprocess.Popen(["kubectl", "get", "isvc", "-n", NS, "-w", "--output-watch-events"],
                               env=kube_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(iter(watcher.stdout.readline, "")))  # type: ignore[union-attr]
    reader.start()
    try:
        deadline = time.monotonic() + 20
        while not any(NAME in line for line in lines) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert "patched" in ok(kube_env, "patch", "isvc", NAME, "-n", NS, "--type", "merge",
                               "-p", '{"metadata": {"labels": {"team": "a"}}}')
        while not any("MODIFIED" in line for line in lines) and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        watcher.terminate()
        watcher.wait(10)
        reader.join(10)
    assert any(line.split()[:2] == ["ADDED", NAME] for line in lines), lines
    assert any(line.split()[:2] == ["MODIFIED", NAME] for line in lines), lines

    assert "patched" in ok(kube_env, "patch", "isvc", NAME, "-n", NS, "--type", "json",
                           "-p", '[{"op": "replace", "path": "/spec/predictor/maxReplicas", "value": 3}]')
    selected = yaml.safe_load(ok(kube_env, "get", "isvc", "-l", "team=a", "-n", NS, "-o", "yaml"))
    assert [i["metadata"]["name"] for i in selected["items"]] == [NAME]
    assert selected["items"][0]["spec"]["predictor"]["maxReplicas"] == 3
    assert selected["items"][0]["metadata"]["generation"] == 2  # the label patch did not count
    assert "No resources found" in kubectl(kube_env, "get", "isvc", "-l", "team=b", "-n", NS).stderr

    assert f'"{NAME}" deleted' in ok(kube_env, "delete", "isvc", NAME, "-n", NS)
    gone = kubectl(kube_env, "get", "isvc", NAME, "-n", NS)
    assert gone.returncode == 1 and "NotFound" in gone.stderr


def created(kube_env: dict[str, str], tmp_path: Path, name: str, *, standard: bool = False,
            replica: bool = True) -> tuple[dict[str, Any], Path]:
    """The sample manifest as ``name``, written to a file and created with ``kubectl apply``: in KServe's Standard
    mode if ``standard``; without ``replica``, ``minReplicas: 0`` (the API only; Standard mode keeps one replica
    whatever is asked). Returns the manifest and its file."""
    body = yaml.safe_load(MANIFEST.read_text())
    body["metadata"]["name"] = name
    if standard:
        body["metadata"].setdefault("annotations", {})["serving.kserve.io/deploymentMode"] = "Standard"
    if not replica:
        body["spec"]["predictor"]["minReplicas"] = 0
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(body))
    assert "created" in ok(kube_env, "apply", "-f", str(path))
    return body, path


def test_server_side_apply_conflict_and_discovery(kube_env: dict[str, str], tmp_path: Path) -> None:
    body, path = created(kube_env, tmp_path, "ssa-only", replica=False)  # client-side first, then server-side:
    body["spec"]["predictor"]["maxReplicas"] = 4  # kubectl takes the fields over without a conflict, as on a cluster
    path.write_text(yaml.safe_dump(body))
    assert "serverside-applied" in ok(kube_env, "apply", "--server-side", "-f", str(path))
    managers = ok(kube_env, "get", "isvc", "ssa-only", "-n", NS, "--show-managed-fields",
                  "-o", "jsonpath={.metadata.managedFields[*].manager}").split()
    assert "kubectl" in managers and "kubectl-client-side-apply" not in managers
    body["spec"]["predictor"]["maxReplicas"] = 5
    path.write_text(yaml.safe_dump(body))
    clash = kubectl(kube_env, "apply", "--server-side", "--field-manager", "someone-else", "-f", str(path))
    assert clash.returncode == 1 and "conflict" in clash.stderr.lower() and "maxReplicas" in clash.stderr
    assert "serverside-applied" in ok(kube_env, "apply", "--server-side", "--field-manager", "someone-else",
                                      "--force-conflicts", "-f", str(path))
    assert ok(kube_env, "get", "isvc", "ssa-only", "-n", NS, "-o", "jsonpath={.spec.predictor.maxReplicas}") == "5"
    assert "inferenceservices" in ok(kube_env, "api-resources", "--api-group", "serving.kserve.io")
    assert "canaryTrafficPercent" in ok(kube_env, "explain", "isvc.spec.predictor")
    assert "created" in ok(kube_env, "create", "namespace", "team-x")
    ok(kube_env, "delete", "isvc", "ssa-only", "-n", NS)


def test_get_ksvc_shows_each_predictor_as_kserves_knative_service(kube_env: dict[str, str], tmp_path: Path) -> None:
    created(kube_env, tmp_path, "ksvc-view", replica=False)
    header, row = ok(kube_env, "get", "ksvc", "-n", NS).splitlines()[:2]
    assert header.split() == ["NAME", "URL", "LATESTCREATED", "LATESTREADY", "READY", "REASON"]  # Knative's columns
    assert row.split()[:3] == ["ksvc-view-predictor", f"http://ksvc-view-predictor.{NS}.example.com",
                               "ksvc-view-predictor-00001"]
    owner = ok(kube_env, "get", "ksvc", "ksvc-view-predictor", "-n", NS, "-o",
               "jsonpath={.metadata.ownerReferences[0].kind}/{.metadata.ownerReferences[0].name}")
    assert owner == "InferenceService/ksvc-view"
    assert "services" in ok(kube_env, "api-resources", "--api-group", "serving.knative.dev")
    refused = kubectl(kube_env, "delete", "ksvc", "ksvc-view-predictor", "-n", NS)
    assert refused.returncode == 1 and "(MethodNotAllowed)" in refused.stderr, refused.stderr
    assert f"kubectl edit isvc ksvc-view -n {NS}" in refused.stderr  # the way to change it
    ok(kube_env, "delete", "isvc", "ksvc-view", "-n", NS)


def test_get_deploy_and_hpa_show_a_standard_predictor_as_kserves_raw_objects(kube_env: dict[str, str],
                                                                             tmp_path: Path) -> None:
    created(kube_env, tmp_path, "raw-view", standard=True)
    header, row = ok(kube_env, "get", "deploy", "-n", NS).splitlines()[:2]
    assert header.split() == ["NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE"]  # kubectl's usual columns
    assert row.split()[0] == "raw-view-predictor"
    header, row = ok(kube_env, "get", "hpa", "-n", NS).splitlines()[:2]
    assert header.split() == ["NAME", "REFERENCE", "TARGETS", "MINPODS", "MAXPODS", "REPLICAS", "AGE"]
    assert row.split()[:2] == ["raw-view-predictor", "Deployment/raw-view-predictor"] and "80%" in row
    assert "No resources found" in kubectl(kube_env, "get", "ksvc", "raw-view-predictor", "-n", NS).stderr + \
        kubectl(kube_env, "get", "ksvc", "-n", NS, "-l", "serving.kserve.io/inferenceservice=raw-view").stderr
    refused = kubectl(kube_env, "scale", "deploy", "raw-view-predictor", "-n", NS, "--replicas", "3")
    assert refused.returncode == 1 and "(MethodNotAllowed)" in refused.stderr, refused.stderr
    assert f"kubectl edit isvc raw-view -n {NS}" in refused.stderr  # the way to change it
    ok(kube_env, "delete", "isvc", "raw-view", "-n", NS)


def test_apply_refuses_a_standard_predictor_whose_hpa_cannot_scale_on_its_metric(kube_env: dict[str, str],
                                                                                 tmp_path: Path) -> None:
    """KServe's validating webhook: with autoscalerClass hpa, Standard mode scales on cpu or memory only; the
    refusal carries its message and nothing is created."""
    body = yaml.safe_load(MANIFEST.read_text())
    body["metadata"]["name"] = "hpa-concurrency"
    body["metadata"]["annotations"] = {"serving.kserve.io/deploymentMode": "Standard",
                                       "serving.kserve.io/autoscalerClass": "hpa"}
    body["spec"]["predictor"]["scaleMetric"] = "concurrency"
    path = tmp_path / "hpa-concurrency.yaml"
    path.write_text(yaml.safe_dump(body))
    refused = kubectl(kube_env, "apply", "-f", str(path))
    assert refused.returncode == 1 and "[concurrency] is not a supported metric" in refused.stderr, refused.stderr
    assert 'The InferenceService "hpa-concurrency" is invalid' in refused.stderr, refused.stderr  # 422, as kfbox
    # answers every manifest it refuses (a cluster's webhook denial is a 403 naming the webhook)
    assert "NotFound" in kubectl(kube_env, "get", "isvc", "hpa-concurrency", "-n", NS).stderr


def test_get_deploy_watch_and_rollout_status_follow_a_standard_predictor(kube_env: dict[str, str],
                                                                         tmp_path: Path) -> None:
    created(kube_env, tmp_path, "rollout", standard=True)
    rollout = kubectl(kube_env, "rollout", "status", "deploy/rollout-predictor", "-n", NS, "--timeout", "30s",
                      timeout=40)
    assert rollout.returncode == 0 and 'deployment "rollout-predictor" successfully rolled out' in rollout.stdout, \
        rollout.stdout + rollout.stderr
    assert "watch" not in rollout.stderr.lower(), rollout.stderr  # no failed watch that the informer retried

    # the Deployment as listed, then its deletion with the InferenceService's, as the watch reports it
    watcher = subprocess.Popen(["kubectl", "get", "deploy", "-n", NS, "-w", "--output-watch-events",
                                "--request-timeout", "60s"],
                               env=kube_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(iter(watcher.stdout.readline, "")))  # type: ignore[union-attr]
    reader.start()
    try:
        deadline = time.monotonic() + 20
        while not any("rollout-predictor" in line for line in lines) and time.monotonic() < deadline:
            time.sleep(0.1)
        ok(kube_env, "delete", "isvc", "rollout", "-n", NS)
        while not any("DELETED" in line for line in lines) and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        watcher.terminate()
        watcher.wait(10)
        reader.join(10)
    assert any(line.split()[:3] == ["ADDED", "rollout-predictor", "1/1"] for line in lines), lines
    assert any(line.split()[:2] == ["DELETED", "rollout-predictor"] for line in lines), lines


def test_describe_deploy_rollout_history_and_get_rs_show_a_standard_predictors_replica_sets(
        kube_env: dict[str, str], tmp_path: Path) -> None:
    body, path = created(kube_env, tmp_path, "rs-view", standard=True)
    ok(kube_env, "rollout", "status", "deploy/rs-view-predictor", "-n", NS, "--timeout", "30s", timeout=40)
    selector = ["-n", NS, "-l", "serving.kserve.io/inferenceservice=rs-view"]
    (first,) = ok(kube_env, "get", "rs", *selector, "-o", "jsonpath={.items[*].metadata.name}").split()
    described = ok(kube_env, "describe", "deploy", "rs-view-predictor", "-n", NS)
    assert f"NewReplicaSet:   {first} (1/1 replicas created)" in described, described
    assert "OldReplicaSets:  <none>" in described, described

    # a new pod template (an env entry) is a new revision: the first ReplicaSet stays, scaled to 0
    body["spec"]["predictor"]["model"]["env"] = [{"name": "GREETING", "value": "hello"}]
    path.write_text(yaml.safe_dump(body))
    assert "configured" in ok(kube_env, "apply", "-f", str(path))
    ok(kube_env, "rollout", "status", "deploy/rs-view-predictor", "-n", NS, "--timeout", "30s", timeout=40)
    history = ok(kube_env, "rollout", "history", "deploy/rs-view-predictor", "-n", NS).split("\n", 1)[1]
    assert [line.split()[0] for line in history.splitlines()[1:] if line.strip()] == ["1", "2"], history
    header, *rows = ok(kube_env, "get", "rs", *selector).splitlines()
    assert header.split() == ["NAME", "DESIRED", "CURRENT", "READY", "AGE"]
    shown = {row.split()[0]: row.split()[1:4] for row in rows}
    assert len(shown) == 2 and shown[first] == ["0", "0", "0"], rows
    (second,) = set(shown) - {first}
    assert shown[second] == ["1", "1", "1"], rows
    described = ok(kube_env, "describe", "deploy", "rs-view-predictor", "-n", NS)
    assert f"NewReplicaSet:   {second} (1/1 replicas created)" in described, described
    assert f"OldReplicaSets:  {first} (0/0 replicas created)" in described, described
    assert "GREETING:\thello" in ok(kube_env, "rollout", "history", "deploy/rs-view-predictor", "-n", NS,
                                    "--revision=2")
    refused = kubectl(kube_env, "delete", "rs", first, "-n", NS)
    assert refused.returncode == 1 and "(MethodNotAllowed)" in refused.stderr, refused.stderr
    ok(kube_env, "delete", "isvc", "rs-view", "-n", NS)


@pytest.mark.parametrize(("path", "field", "words"), [
    ("pods.spec.containers", "containers", "kserve-container"),
    ("deploy.spec.replicas", "replicas", "desired pods"),
    ("rs.status.readyReplicas", "readyReplicas", "model server is ready"),
    ("hpa.spec.minReplicas", "minReplicas", "predictor's minReplicas"),
    ("ksvc.status.url", "url", "external URL"),
    ("events.involvedObject", "involvedObject", "InferenceService the event is about"),
])
def test_explain_the_read_only_kinds(kube_env: dict[str, str], path: str, field: str, words: str) -> None:
    """``kubectl explain`` reads each group-version's OpenAPI v3 document: the fields kfbox fills, described."""
    shown = ok(kube_env, "explain", path)
    assert f"FIELD: {field}" in shown and "DESCRIPTION:" in shown and words in shown, shown


def test_explain_lists_only_the_fields_kfbox_fills(kube_env: dict[str, str]) -> None:
    """The HPA's spec lists what kfbox's HPA carries, and a field no kfbox object has is unknown to explain."""
    shown = ok(kube_env, "explain", "hpa.spec")
    assert "HorizontalPodAutoscaler" in shown and "minReplicas" in shown and "scaleTargetRef" in shown, shown
    assert "autoscaling/v2" in ok(kube_env, "explain", "hpa")
    assert "targetCPUUtilizationPercentage" in ok(kube_env, "explain", "hpa.spec", "--api-version",
                                                  "autoscaling/v1")
    missing = kubectl(kube_env, "explain", "pods.spec.initContainers")
    assert missing.returncode == 1 and "initContainers" in missing.stderr, missing.stderr
    assert "phase" in ok(kube_env, "explain", "pods.status") and "Namespace" in ok(kube_env, "explain", "ns")


def _unlisted(value: Any, schema: dict[str, Any], at: str) -> list[str]:
    """The paths in ``value`` that ``schema`` (an expanded OpenAPI schema) does not list."""
    if isinstance(value, list):
        return [p for item in value for p in _unlisted(item, schema.get("items", {}), at + "[]")]
    if not isinstance(value, dict) or "additionalProperties" in schema:
        return []
    properties = schema.get("properties", {})
    return [p for key, item in value.items()
            for p in ([f"{at}.{key}"] if key not in properties else _unlisted(item, properties[key], f"{at}.{key}"))]


def test_explain_schemas_list_every_field_kfbox_fills(kube_env: dict[str, str], server: ServerProcess,
                                                      tmp_path: Path) -> None:
    """What ``kubectl explain`` documents is what ``kubectl get -o json`` shows: every field of a Standard-mode
    predictor's Deployment, ReplicaSet, HPA and Pod, of a Serverless one's Knative Service and of their Events."""
    created(kube_env, tmp_path, "explain-raw", standard=True)
    created(kube_env, tmp_path, "explain-kn")
    ok(kube_env, "rollout", "status", "deploy/explain-raw-predictor", "-n", NS, "--timeout", "60s", timeout=70)
    ok(kube_env, "wait", "--for=condition=Ready", "isvc/explain-kn", "-n", NS, "--timeout=90s", timeout=100)
    with server.client() as client:
        index = client.get("/openapi/v3").json()["paths"]
        schemas = {(gvk["group"], gvk["version"], gvk["kind"]): schema
                   for path in index for schema in client.get(f"/openapi/v3/{path}").json()["components"][
                       "schemas"].values() for gvk in schema.get("x-kubernetes-group-version-kind", [])}
    seen = set()
    for resource in ("deploy", "rs", "hpa", "pods", "ksvc", "hpa.v1.autoscaling", "events"):
        for obj in json.loads(ok(kube_env, "get", resource, "-n", NS, "-o", "json"))["items"]:
            group, _, version = obj["apiVersion"].rpartition("/")
            assert _unlisted(obj, schemas[group, version, obj["kind"]], obj["kind"]) == []
            seen.add(obj["kind"])
    assert seen == {"Deployment", "ReplicaSet", "HorizontalPodAutoscaler", "Pod", "Service", "Event"}
    ok(kube_env, "delete", "isvc", "explain-raw", "explain-kn", "-n", NS)
