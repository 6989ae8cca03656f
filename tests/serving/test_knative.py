"""Each InferenceService's predictor as KServe's Knative Service (``serving.knative.dev/v1``), read through the
real ``kubernetes`` client's CustomObjectsApi as KServe's own e2e tests read it on a cluster, from the serving
package's shared ``kfbox up``."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.serving.helpers import API, apply, kube_client, manifest, refused, train_iris, wait_ready
from tests.support import ServerProcess

NS = "ksvc-tests"
GROUP, VERSION, PLURAL = "serving.knative.dev", "v1", "services"
AUTOSCALING = "autoscaling.knative.dev/"


@pytest.fixture(scope="module")
def client(server: ServerProcess) -> Iterator[httpx.Client]:
    with server.client() as http:
        yield http


@pytest.fixture(scope="module")
def custom(server: ServerProcess) -> Any:
    from kubernetes import client as k8s

    return k8s.CustomObjectsApi(kube_client(server))


def isvc(client: httpx.Client, name: str) -> dict[str, Any]:
    reply = client.get(API.format(ns=NS) + f"/{name}")
    assert reply.status_code == 200, reply.text
    return reply.json()  # type: ignore[no-any-return]


def test_a_ready_predictor_shows_its_autoscaling_labels_owner_and_revisions(
        server: ServerProcess, client: httpx.Client, custom: Any) -> None:
    train_iris(server.home / "pvc" / "models" / "ksvc-iris")
    body = manifest("ksvc-iris", "pvc://models/ksvc-iris", namespace=NS, min_replicas=1, max_replicas=3,
                    scale_metric="concurrency", scale_target=2,
                    annotations={"team": "fraud", "kubectl.kubernetes.io/last-applied-configuration": "{}"})
    body["metadata"]["labels"] = {"app": "iris"}
    apply(client, body)
    wait_ready(client, "ksvc-iris", NS)

    ksvc = custom.get_namespaced_custom_object(GROUP, VERSION, NS, PLURAL, "ksvc-iris-predictor")
    assert (ksvc["apiVersion"], ksvc["kind"]) == ("serving.knative.dev/v1", "Service")
    template = ksvc["spec"]["template"]["metadata"]["annotations"]
    # what KServe's e2e test_sklearn_kserve_concurrency asserts, and the rest of what its controller writes
    assert template[AUTOSCALING + "metric"] == "concurrency" and template[AUTOSCALING + "target"] == "2"
    assert template[AUTOSCALING + "class"] == "kpa.autoscaling.knative.dev"
    assert (template[AUTOSCALING + "min-scale"], template[AUTOSCALING + "max-scale"]) == ("1", "3")
    assert AUTOSCALING + "target-utilization-percentage" not in template  # KServe writes none: Knative's 70% applies
    assert template["team"] == "fraud"  # the isvc's own annotations propagate; kubectl's last-applied does not
    assert "kubectl.kubernetes.io/last-applied-configuration" not in template
    assert template["internal.serving.kserve.io/storage-initializer-sourceuri"] == "pvc://models/ksvc-iris"

    owner = isvc(client, "ksvc-iris")
    meta = ksvc["metadata"]
    assert (meta["name"], meta["namespace"]) == ("ksvc-iris-predictor", NS)
    assert meta["labels"] == {"app": "iris", "serving.kserve.io/inferenceservice": "ksvc-iris",
                              "component": "predictor"}
    assert meta["ownerReferences"] == [{"apiVersion": "serving.kserve.io/v1beta1", "kind": "InferenceService",
                                        "name": "ksvc-iris", "uid": owner["metadata"]["uid"], "controller": True,
                                        "blockOwnerDeletion": True}]
    assert meta["creationTimestamp"] == owner["metadata"]["creationTimestamp"]
    assert int(meta["resourceVersion"]) <= int(owner["metadata"]["resourceVersion"])  # a status touch may follow
    assert ksvc["spec"]["traffic"] == [{"latestRevision": True, "percent": 100}]

    status = ksvc["status"]
    assert status["latestCreatedRevisionName"] == status["latestReadyRevisionName"] == "ksvc-iris-predictor-00001"
    assert {c["type"]: c["status"] for c in status["conditions"]} == \
        {"Ready": "True", "ConfigurationsReady": "True", "RoutesReady": "True"}
    assert status["traffic"] == [{"revisionName": "ksvc-iris-predictor-00001", "percent": 100,
                                  "latestRevision": True}]
    assert status["url"] == owner["status"]["components"]["predictor"]["url"]
    assert status["url"].startswith(f"http://ksvc-iris-predictor.{NS}.")


def test_lists_select_by_service_unset_settings_stay_unset_and_writes_are_refused(
        client: httpx.Client, custom: Any) -> None:
    for name in ("ksvc-a", "ksvc-b"):  # minReplicas 0: no replica starts
        apply(client, manifest(name, "pvc://models/none", namespace=NS, min_replicas=0))
    selected = custom.list_namespaced_custom_object(GROUP, VERSION, NS, PLURAL,
                                                    label_selector="serving.kserve.io/inferenceservice=ksvc-b")
    assert selected["kind"] == "ServiceList"
    assert [i["metadata"]["name"] for i in selected["items"]] == ["ksvc-b-predictor"]
    everywhere = custom.list_cluster_custom_object(GROUP, VERSION, PLURAL)
    assert {"ksvc-a-predictor", "ksvc-b-predictor"} <= {i["metadata"]["name"] for i in everywhere["items"]}

    # KServe writes metric and target only when the predictor sets them, and no max-scale without maxReplicas
    template = selected["items"][0]["spec"]["template"]["metadata"]["annotations"]
    assert {k: v for k, v in template.items() if k.startswith(AUTOSCALING)} == \
        {AUTOSCALING + "class": "kpa.autoscaling.knative.dev", AUTOSCALING + "min-scale": "0"}

    missing = refused(lambda: custom.get_namespaced_custom_object(GROUP, VERSION, NS, PLURAL, "ksvc-a"), 404)
    assert missing["reason"] == "NotFound" and missing["details"] == {
        "name": "ksvc-a", "group": "serving.knative.dev", "kind": "services"}
    assert "named <isvc>-predictor" in missing["message"]  # the isvc's own name is not its Knative Service's
    patch = refused(lambda: custom.patch_namespaced_custom_object(
        GROUP, VERSION, NS, PLURAL, "ksvc-a-predictor", {"metadata": {"labels": {"x": "y"}}}), 405)
    assert patch["reason"] == "MethodNotAllowed" and 'InferenceService "ksvc-a"' in patch["message"]
    delete = refused(lambda: custom.delete_namespaced_custom_object(GROUP, VERSION, NS, PLURAL, "ksvc-a-predictor"),
                     405)
    assert delete["reason"] == "MethodNotAllowed"
    assert isvc(client, "ksvc-a")["metadata"]["name"] == "ksvc-a"  # the InferenceService is untouched
