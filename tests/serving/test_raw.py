"""A Standard-mode (RawDeployment) InferenceService's predictor as KServe's Deployment and HorizontalPodAutoscaler,
read through the real ``kubernetes`` client (AppsV1Api, AutoscalingV2Api, CustomObjectsApi) as KServe's e2e tests
read them on a cluster, from the serving package's shared ``kfbox up``."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.serving.helpers import (
    API,
    ROWS,
    apply,
    kube_client,
    manifest,
    refused,
    status,
    train_iris,
    wait_for,
    wait_ready,
)
from tests.support import ServerProcess

NS = "raw-tests"
STANDARD = {"serving.kserve.io/deploymentMode": "Standard"}
HPA = "horizontalpodautoscalers"


@pytest.fixture(scope="module")
def client(server: ServerProcess) -> Iterator[httpx.Client]:
    with server.client() as http:
        yield http


@pytest.fixture(scope="module")
def kube(server: ServerProcess) -> Any:
    return kube_client(server)


def scaled_by_cpu(name: str, env: list[dict[str, str]]) -> dict[str, Any]:
    body = manifest(name, f"pvc://models/{name}", namespace=NS, annotations=STANDARD, min_replicas=2,
                    scale_metric="cpu", scale_target=50)
    model = body["spec"]["predictor"]["model"]
    model["resources"] = {"requests": {"cpu": "25m", "memory": "128Mi"}, "limits": {"cpu": "1", "memory": "1Gi"}}
    model["env"] = env
    body["metadata"]["labels"] = {"serving.kserve.io/test": "raw-cpu"}
    return body


def test_a_standard_predictor_is_a_deployment_scaled_by_an_hpa_and_follows_a_replace(
        server: ServerProcess, client: httpx.Client, kube: Any) -> None:
    from kubernetes import client as k8s

    apps, hpas, custom = k8s.AppsV1Api(kube), k8s.AutoscalingV2Api(kube), k8s.CustomObjectsApi(kube)
    train_iris(server.home / "pvc" / "models" / "raw-iris")
    env = [{"name": f"TEST_ENV{suffix}", "value": str(n)} for n, suffix in ((1, ""), (2, "_2"), (3, "_3"))]
    apply(client, scaled_by_cpu("raw-iris", env))
    wait_ready(client, "raw-iris", NS)
    owner = client.get(API.format(ns=NS) + "/raw-iris").json()

    deadline = time.monotonic() + 60  # the second replica may still be loading when the service turns Ready
    while True:
        found = apps.list_namespaced_deployment(NS, label_selector="serving.kserve.io/test=raw-cpu").items
        if (found and found[0].status.ready_replicas == 2) or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert [d.metadata.name for d in found] == ["raw-iris-predictor"]
    deployment = found[0]
    assert deployment.spec.replicas == 2 and deployment.status.ready_replicas == 2  # minReplicas, as KServe's e2e
    assert deployment.status.available_replicas == 2 and deployment.status.updated_replicas == 2
    assert {c.type: c.status for c in deployment.status.conditions} == {"Available": "True", "Progressing": "True"}
    assert deployment.metadata.labels == {"serving.kserve.io/test": "raw-cpu", "app": "isvc.raw-iris-predictor",
                                          "serving.kserve.io/inferenceservice": "raw-iris", "component": "predictor"}
    assert deployment.spec.selector.match_labels == {"app": "isvc.raw-iris-predictor"}
    assert deployment.spec.template.metadata.labels == deployment.metadata.labels
    assert deployment.metadata.annotations["serving.kserve.io/deploymentMode"] == "Standard"
    ref = deployment.metadata.owner_references[0]
    assert (ref.kind, ref.name, ref.uid, ref.controller) == ("InferenceService", "raw-iris",
                                                            owner["metadata"]["uid"], True)
    container = deployment.spec.template.spec.containers[0]
    assert container.name == "kserve-container" and container.image is None  # kfbox runs no container image
    assert [(e.name, e.value) for e in container.env] == [("TEST_ENV", "1"), ("TEST_ENV_2", "2"), ("TEST_ENV_3", "3")]
    assert container.resources.requests == {"cpu": "25m", "memory": "128Mi"}

    # what KServe's test_sklearn_scale_raw reads, and the v2 object it is converted from
    v1 = custom.list_namespaced_custom_object("autoscaling", "v1", NS, HPA,
                                              label_selector="serving.kserve.io/inferenceservice=raw-iris")
    assert [i["metadata"]["name"] for i in v1["items"]] == ["raw-iris-predictor"]
    assert v1["items"][0]["spec"]["targetCPUUtilizationPercentage"] == 50
    assert v1["items"][0]["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment",
                                                        "name": "raw-iris-predictor"}
    v2 = hpas.read_namespaced_horizontal_pod_autoscaler("raw-iris-predictor", NS)
    assert (v2.spec.min_replicas, v2.spec.max_replicas) == (2, 2)
    (metric,) = v2.spec.metrics
    assert (metric.type, metric.resource.name, metric.resource.target.type,
            metric.resource.target.average_utilization) == ("Resource", "cpu", "Utilization", 50)
    assert v2.status.desired_replicas == 2 and v2.status.current_replicas == 2
    assert [h.metadata.name for h in hpas.list_horizontal_pod_autoscaler_for_all_namespaces(
        label_selector="serving.kserve.io/test=raw-cpu").items] == ["raw-iris-predictor"]

    # a replace that drops one env entry: the Deployment's template follows at once (a new revision)
    apply(client, scaled_by_cpu("raw-iris", env[:2]))
    deployment = apps.read_namespaced_deployment("raw-iris-predictor", NS)
    assert [e.name for e in deployment.spec.template.spec.containers[0].env] == ["TEST_ENV", "TEST_ENV_2"]
    assert deployment.metadata.annotations["deployment.kubernetes.io/revision"] == "2"


def test_each_mode_shows_only_its_own_objects_and_they_are_read_only(client: httpx.Client, kube: Any) -> None:
    from kubernetes import client as k8s

    apps, custom = k8s.AppsV1Api(kube), k8s.CustomObjectsApi(kube)
    # minReplicas 0: no replica starts; RawDeployment is Standard's older name
    apply(client, manifest("raw-legacy", "pvc://models/none", namespace=NS, min_replicas=0,
                           annotations={"serving.kserve.io/deploymentMode": "RawDeployment"}))
    apply(client, manifest("raw-knative", "pvc://models/none", namespace=NS, min_replicas=0))

    assert [d.metadata.name for d in apps.list_namespaced_deployment(NS).items
            if d.metadata.name != "raw-iris-predictor"] == ["raw-legacy-predictor"]
    ksvcs = custom.list_namespaced_custom_object("serving.knative.dev", "v1", NS, "services")["items"]
    assert [k["metadata"]["name"] for k in ksvcs] == ["raw-knative-predictor"]  # no Knative Service in Standard
    refused(lambda: custom.get_namespaced_custom_object("serving.knative.dev", "v1", NS, "services",
                                                        "raw-legacy-predictor"), 404)
    missing = refused(lambda: apps.read_namespaced_deployment("raw-knative-predictor", NS), 404)
    assert missing["reason"] == "NotFound" and missing["details"]["kind"] == "deployments"
    assert "kubectl get deploy -n raw-tests" in missing["message"]

    # concurrency (the default) in Standard mode: KServe writes an HPA without metrics, defaulted to 80% CPU
    hpa = custom.get_namespaced_custom_object("autoscaling", "v2", NS, HPA, "raw-legacy-predictor")
    assert hpa["spec"]["metrics"] == [{"type": "Resource", "resource": {
        "name": "cpu", "target": {"type": "Utilization", "averageUtilization": 80}}}]
    assert hpa["spec"]["minReplicas"] == 1  # the HPA's floor, even for minReplicas 0
    # KServe's empty behavior as the API server defaults it: the scale-down stabilization is left to the flag
    assert hpa["spec"]["behavior"] == {
        "scaleUp": {"stabilizationWindowSeconds": 0, "selectPolicy": "Max", "policies": [
            {"type": "Pods", "value": 4, "periodSeconds": 15}, {"type": "Percent", "value": 100, "periodSeconds": 15}]},
        "scaleDown": {"selectPolicy": "Max", "policies": [{"type": "Percent", "value": 100, "periodSeconds": 15}]}}
    assert hpa["metadata"]["annotations"]["serving.kserve.io/deploymentMode"] == "Standard"
    refused(lambda: custom.get_namespaced_custom_object("autoscaling", "v1", NS, HPA, "raw-knative-predictor"), 404)

    patch = refused(lambda: apps.patch_namespaced_deployment("raw-legacy-predictor", NS, {"spec": {"replicas": 3}}),
                    405)
    assert patch["reason"] == "MethodNotAllowed" and 'InferenceService "raw-legacy"' in patch["message"]
    delete = refused(lambda: custom.delete_namespaced_custom_object("autoscaling", "v2", NS, HPA,
                                                                    "raw-legacy-predictor"), 405)
    assert delete["reason"] == "MethodNotAllowed"
    assert apps.read_namespaced_deployment("raw-legacy-predictor", NS).spec.replicas is not None

    groups = {g["name"]: [v["version"] for v in g["versions"]] for g in client.get("/apis").json()["groups"]}
    assert groups["apps"] == ["v1"] and groups["autoscaling"] == ["v2", "v1"]


def test_the_deployment_mode_is_fixed_when_the_inference_service_is_created(client: httpx.Client, kube: Any) -> None:
    """KServe's rule: an update naming another mode is refused with its webhook's message (the older names read as
    the new ones); an update that drops the annotation keeps the mode, as KServe's controller reads the status."""
    from kubernetes import client as k8s

    apps, custom = k8s.AppsV1Api(kube), k8s.CustomObjectsApi(kube)
    isvc = ("serving.kserve.io", "v1beta1", NS, "inferenceservices")
    apply(client, manifest("mode-knative", "pvc://models/none", namespace=NS, min_replicas=0))
    apply(client, manifest("mode-standard", "pvc://models/none", namespace=NS, min_replicas=0,
                           annotations={"serving.kserve.io/deploymentMode": "RawDeployment"}))
    assert custom.get_namespaced_custom_object(*isvc, "mode-knative")["status"]["deploymentMode"] == "Knative"
    assert custom.get_namespaced_custom_object(*isvc, "mode-standard")["status"]["deploymentMode"] == "Standard"

    to_standard = {"metadata": {"annotations": {"serving.kserve.io/deploymentMode": "RawDeployment"}}}
    for dry_run in ("All", None):
        status = refused(lambda run=dry_run: custom.patch_namespaced_custom_object(
            *isvc, "mode-knative", to_standard, dry_run=run), 422)
        assert status["reason"] == "Invalid"
        assert "update rejected: deploymentMode cannot be changed from 'Knative' to 'Standard'" in status["message"]
        assert status["details"]["causes"][0]["field"] == "metadata.annotations[serving.kserve.io/deploymentMode]"
    unchanged = custom.get_namespaced_custom_object(*isvc, "mode-knative")
    assert "annotations" not in unchanged["metadata"] and unchanged["metadata"]["generation"] == 1
    custom.get_namespaced_custom_object("serving.knative.dev", "v1", NS, "services", "mode-knative-predictor")

    # the same mode by its other name is no change; dropping the annotation keeps Standard, which the object says
    custom.patch_namespaced_custom_object(*isvc, "mode-standard", {"metadata": {"annotations": {
        "serving.kserve.io/deploymentMode": "Standard"}}})
    kept = custom.patch_namespaced_custom_object(*isvc, "mode-standard", {"metadata": {"annotations": {
        "serving.kserve.io/deploymentMode": None}}})
    assert kept["metadata"]["annotations"] == {"serving.kserve.io/deploymentMode": "Standard"}
    assert kept["status"]["deploymentMode"] == "Standard"
    assert apps.read_namespaced_deployment("mode-standard-predictor", NS).spec.replicas is not None
    refused(lambda: custom.get_namespaced_custom_object("serving.knative.dev", "v1", NS, "services",
                                                        "mode-standard-predictor"), 404)


def test_each_revision_has_a_replica_set_owned_by_the_deployment_that_owns_its_pods(
        server: ServerProcess, client: httpx.Client, kube: Any) -> None:
    """What kubectl's describe and rollout history read through client-go, read with the ``kubernetes`` client:
    the ReplicaSets of the Deployment (its selector, a controller reference to it), one per revision."""
    from kubernetes import client as k8s
    from kubernetes import watch

    apps, core = k8s.AppsV1Api(kube), k8s.CoreV1Api(kube)
    train_iris(server.home / "pvc" / "models" / "rs-iris")
    body = manifest("rs-iris", "pvc://models/rs-iris", namespace=NS, annotations=STANDARD)
    apply(client, body)
    wait_ready(client, "rs-iris", NS)
    deployment = apps.read_namespaced_deployment("rs-iris-predictor", NS)
    selector = "app=isvc.rs-iris-predictor"
    (first,) = apps.list_namespaced_replica_set(NS, label_selector=selector).items
    assert first.metadata.owner_references[0].to_dict() == {
        "api_version": "apps/v1", "kind": "Deployment", "name": "rs-iris-predictor", "uid": deployment.metadata.uid,
        "controller": True, "block_owner_deletion": True}
    assert first.metadata.annotations["deployment.kubernetes.io/revision"] == "1" == \
        deployment.metadata.annotations["deployment.kubernetes.io/revision"]
    template_hash = first.metadata.labels.pop("pod-template-hash")
    assert first.metadata.name == f"rs-iris-predictor-{template_hash}"
    assert first.metadata.labels == deployment.metadata.labels
    assert first.spec.selector.match_labels == {"app": "isvc.rs-iris-predictor", "pod-template-hash": template_hash}
    assert first.spec.template.metadata.labels.pop("pod-template-hash") == template_hash
    assert first.spec.template == deployment.spec.template  # what kubectl matches to find the new ReplicaSet
    assert first.spec.replicas == 1 and first.status.ready_replicas == first.status.available_replicas == 1
    assert first.status.replicas == first.status.fully_labeled_replicas == 1
    (pod,) = core.list_namespaced_pod(NS, label_selector=f"pod-template-hash={template_hash}").items
    assert (pod.metadata.owner_references[0].name, pod.metadata.owner_references[0].uid) == (
        first.metadata.name, first.metadata.uid)
    assert apps.read_namespaced_replica_set(first.metadata.name, NS).metadata.uid == first.metadata.uid

    # a new revision: a new ReplicaSet, as a watch of them reports; the first one stays, scaled to 0
    listed = apps.list_namespaced_replica_set(NS, label_selector=selector)
    events = watch.Watch().stream(apps.list_namespaced_replica_set, NS, label_selector=selector,
                                  resource_version=listed.metadata.resource_version, timeout_seconds=60)
    body["spec"]["predictor"]["model"]["env"] = [{"name": "GREETING", "value": "hello"}]
    apply(client, body)
    added = next(e["object"] for e in events if e["type"] == "ADDED")
    assert added.metadata.annotations["deployment.kubernetes.io/revision"] == "2"
    assert added.spec.template.spec.containers[0].env[0].value == "hello"
    wait_for(lambda: apps.read_namespaced_replica_set(added.metadata.name, NS).status.ready_replicas == 1,
             what="the second revision's replica")
    old, new = apps.list_replica_set_for_all_namespaces(label_selector=selector).items
    assert (old.metadata.name, old.spec.replicas, old.status.replicas) == (first.metadata.name, 0, 0)
    assert old.status.ready_replicas is None  # zero, omitted as Go omits it
    assert (new.metadata.name, new.spec.replicas) == (added.metadata.name, 1)
    assert refused(lambda: apps.delete_namespaced_replica_set(old.metadata.name, NS), 405)["reason"] == \
        "MethodNotAllowed"
    missing = refused(lambda: apps.read_namespaced_replica_set("rs-iris-predictor-0000000000", NS), 404)
    assert missing["details"]["kind"] == "replicasets"

    assert client.delete(API.format(ns=NS) + "/rs-iris").status_code == 200
    assert not apps.list_namespaced_replica_set(NS, label_selector=selector).items


MERGE = {"content-type": "application/merge-patch+json"}


def patch_predictor(client: httpx.Client, name: str, predictor: dict[str, Any], namespace: str = NS) -> None:
    reply = client.patch(API.format(ns=namespace) + f"/{name}", json={"spec": {"predictor": predictor}},
                         headers=MERGE)
    assert reply.status_code == 200, reply.text


def pids(client: httpx.Client, name: str, namespace: str = NS) -> dict[str, list[int]]:
    """The ready replicas' pids per revision name, from the service's status."""
    return {rev: shown["pids"] for rev, shown in status(client, name, namespace)["revisions"].items()}


def test_a_standard_hpa_only_change_updates_the_running_revision_in_place(
        server: ServerProcess, client: httpx.Client, kube: Any) -> None:
    """On a cluster KServe writes minReplicas/maxReplicas/scaleMetric/scaleTarget into the HPA only: patching them
    keeps the Deployment's pod template, so no new ReplicaSet and no pod restarted; the HPA follows. A change to the
    pod template (storageUri) still rolls out a new revision, and so does any scaling change in Knative mode."""
    from kubernetes import client as k8s

    apps, hpas = k8s.AppsV1Api(kube), k8s.AutoscalingV2Api(kube)
    train_iris(server.home / "pvc" / "models" / "hpa-iris")
    apply(client, manifest("hpa-iris", "pvc://models/hpa-iris", namespace=NS, annotations=STANDARD,
                           max_replicas=3))
    wait_ready(client, "hpa-iris", NS)
    (first,) = pids(client, "hpa-iris")["hpa-iris-predictor-00001"]
    generation = client.get(API.format(ns=NS) + "/hpa-iris").json()["metadata"]["generation"]

    patch_predictor(client, "hpa-iris", {"minReplicas": 2})
    two = wait_for(lambda: (shown := pids(client, "hpa-iris")) and len(shown.get("hpa-iris-predictor-00001", []))
                   == 2 and shown, what="a second replica of revision 1")
    assert set(two) == {"hpa-iris-predictor-00001"} and first in two["hpa-iris-predictor-00001"]
    body = client.get(API.format(ns=NS) + "/hpa-iris").json()
    assert body["metadata"]["generation"] == generation + 1 == body["status"]["observedGeneration"]
    assert body["status"]["components"]["predictor"]["latestCreatedRevision"] == "hpa-iris-predictor-00001"
    assert body["status"]["autoscaling"]["minReplicas"] == 2
    (rs,) = apps.list_namespaced_replica_set(NS, label_selector="app=isvc.hpa-iris-predictor").items
    assert rs.metadata.annotations["deployment.kubernetes.io/revision"] == "1" and rs.spec.replicas == 2
    deployment = apps.read_namespaced_deployment("hpa-iris-predictor", NS)
    assert deployment.spec.replicas == 2
    assert deployment.metadata.annotations["deployment.kubernetes.io/revision"] == "1"
    hpa_v2 = hpas.read_namespaced_horizontal_pod_autoscaler("hpa-iris-predictor", NS)
    assert (hpa_v2.spec.min_replicas, hpa_v2.spec.max_replicas) == (2, 3)
    reply = client.post(f"/serving/{NS}/hpa-iris/v1/models/hpa-iris:predict", json={"instances": ROWS})
    assert reply.status_code == 200 and reply.headers["x-kfbox-revision"] == "hpa-iris-predictor-00001"
    reasons = [e["reason"] for e in client.get(f"/api/v1/namespaces/{NS}/events").json()["items"]
               if e["involvedObject"]["name"] == "hpa-iris"]
    assert "ScaledUp" in reasons and reasons.count("RevisionCreated") == 1

    # back down, still in place: one of the two replicas stops
    patch_predictor(client, "hpa-iris", {"minReplicas": 1, "maxReplicas": 1})
    wait_for(lambda: (shown := pids(client, "hpa-iris")) and set(shown) == {"hpa-iris-predictor-00001"} and
             len(shown["hpa-iris-predictor-00001"]) == 1, what="revision 1 scaled back to one replica")
    assert (hpas.read_namespaced_horizontal_pod_autoscaler("hpa-iris-predictor", NS).spec.max_replicas) == 1

    # the pod template changes: a new revision and a second ReplicaSet, as before
    train_iris(server.home / "pvc" / "models" / "hpa-iris-2")
    patch_predictor(client, "hpa-iris", {"model": {"storageUri": "pvc://models/hpa-iris-2"}})
    wait_for(lambda: status(client, "hpa-iris", NS)["components"]["predictor"].get("latestReadyRevision")
             == "hpa-iris-predictor-00002", what="revision 2 ready")
    assert len(apps.list_namespaced_replica_set(NS, label_selector="app=isvc.hpa-iris-predictor").items) == 2


    # the same patch in Knative mode, where minReplicas is the revision template's min-scale: a new revision
    train_iris(server.home / "pvc" / "models" / "kn-bounds")
    apply(client, manifest("kn-bounds", "pvc://models/kn-bounds", namespace=NS))
    wait_ready(client, "kn-bounds", NS)
    patch_predictor(client, "kn-bounds", {"minReplicas": 2})
    assert status(client, "kn-bounds", NS)["components"]["predictor"]["latestCreatedRevision"] == \
        "kn-bounds-predictor-00002"

def test_an_in_place_hpa_change_survives_a_server_restart(tmp_path: Path) -> None:
    """The stored revision holds the new bounds: after a restart the same revision comes back with them. A server
    of its own, restarted here (the package's shared one is not restarted under the other modules)."""
    home = tmp_path / "home"
    train_iris(home / "pvc" / "models" / "hpa-keep")
    own = ServerProcess.start(home)
    try:
        with own.client() as http:
            apply(http, manifest("hpa-keep", "pvc://models/hpa-keep", namespace=NS, annotations=STANDARD))
            patch_predictor(http, "hpa-keep", {"minReplicas": 2})
        own.stop()
        own = ServerProcess.start(home)
        with own.client() as http:
            wait_for(lambda: len(pids(http, "hpa-keep").get("hpa-keep-predictor-00001", [])) == 2,
                     what="revision 1's two replicas after the restart")
            assert set(pids(http, "hpa-keep")) == {"hpa-keep-predictor-00001"}
            hpa_body = http.get(f"/apis/autoscaling/v2/namespaces/{NS}/horizontalpodautoscalers/"
                                "hpa-keep-predictor").json()
            assert hpa_body["spec"]["minReplicas"] == 2
            listed = http.get(f"/apis/apps/v1/namespaces/{NS}/replicasets").json()["items"]
            assert [rs["metadata"]["annotations"]["deployment.kubernetes.io/revision"] for rs in listed
                    if rs["metadata"]["labels"]["app"] == "isvc.hpa-keep-predictor"] == ["1"]
    finally:
        own.stop()
