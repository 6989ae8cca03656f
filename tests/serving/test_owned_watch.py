"""Watching the objects KServe writes for a predictor (Knative Services, Deployments): the real ``kubernetes``
client's ``watch.Watch().stream`` and raw streaming against the serving package's shared ``kfbox up``. Their
events follow the InferenceServices' (kfbox.serving.owned.Projection)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.serving.helpers import API, apply, kube_client, manifest, train_iris
from tests.support import ServerProcess

NS = "watch-tests"
STANDARD = {"serving.kserve.io/deploymentMode": "Standard"}


@pytest.fixture(scope="module")
def client(server: ServerProcess) -> Iterator[httpx.Client]:
    with server.client() as http:
        yield http


@pytest.fixture(scope="module")
def kube(server: ServerProcess) -> Any:
    return kube_client(server)


def lines(client: httpx.Client, path: str, **params: str) -> list[dict[str, Any]]:
    """Every event of a watch that ends by its own ``timeoutSeconds``."""
    with client.stream("GET", path, params={"watch": "true", **params}) as reply:
        assert reply.status_code == 200, reply.read()
        return [json.loads(line) for line in reply.iter_lines() if line]


def test_a_deployment_watch_sees_it_added_rolled_out_ready_and_deleted(
        server: ServerProcess, client: httpx.Client, kube: Any) -> None:
    from kubernetes import client as k8s
    from kubernetes import watch

    train_iris(server.home / "pvc" / "models" / "watch-iris")
    body = manifest("watch-iris", "pvc://models/watch-iris", namespace=NS, annotations=STANDARD, min_replicas=0)
    apply(client, body)  # no replica yet
    apps = k8s.AppsV1Api(kube)
    events = watch.Watch().stream(apps.list_namespaced_deployment, NS, timeout_seconds=60)

    kind, first = next(events)["type"], None
    assert kind == "ADDED"  # the existing Deployment, as a watch without a resourceVersion starts
    body["spec"]["predictor"]["minReplicas"] = 1
    apply(client, body)  # a new revision with one replica
    for event in events:
        deployment = event["object"]
        assert event["type"] == "MODIFIED" and deployment.metadata.name == "watch-iris-predictor"
        if first is None and deployment.metadata.generation == 2:  # the replace (not a status change before it)
            first = deployment
        if deployment.status.ready_replicas == 1:
            break
    assert first is not None and first.spec.replicas == 1 and first.metadata.generation == 2
    assert first.status.observed_generation == 2 and not first.status.ready_replicas  # before the replica is up
    assert deployment.status.available_replicas == deployment.status.updated_replicas == 1
    assert int(deployment.metadata.resource_version) > int(first.metadata.resource_version)

    assert client.delete(API.format(ns=NS) + "/watch-iris").status_code == 200
    gone = next(e for e in events if e["type"] == "DELETED")
    assert gone["object"].metadata.name == "watch-iris-predictor"
    assert gone["object"].metadata.owner_references[0].name == "watch-iris"


def test_a_knative_service_watch_with_a_label_selector_sees_only_its_own(client: httpx.Client, kube: Any) -> None:
    from kubernetes import client as k8s
    from kubernetes import watch

    bodies = {name: manifest(name, "pvc://models/none", namespace=NS, min_replicas=0) for name in ("kw-a", "kw-b")}
    for body in bodies.values():
        apply(client, body)
    custom = k8s.CustomObjectsApi(kube)
    events = watch.Watch().stream(custom.list_namespaced_custom_object, "serving.knative.dev", "v1", NS, "services",
                                  label_selector="serving.kserve.io/inferenceservice=kw-b", timeout_seconds=2)
    assert next(events)["type"] == "ADDED"
    for body in bodies.values():  # both change; the watch hears only kw-b's
        body["spec"]["predictor"]["maxReplicas"] = 3
        apply(client, body)
    rest = list(events)  # until its timeoutSeconds
    assert {e["object"]["metadata"]["name"] for e in rest} == {"kw-b-predictor"}
    assert {e["type"] for e in rest} == {"MODIFIED"}  # the change and status changes (the model is missing)
    # the last carries the change (a status change from the first apply may come before it)
    template = rest[-1]["object"]["spec"]["template"]["metadata"]["annotations"]
    assert template["autoscaling.knative.dev/max-scale"] == "3"


def test_an_expired_version_is_410_and_a_listed_one_gets_bookmarks(client: httpx.Client) -> None:
    body = manifest("kw-c", "pvc://models/none", namespace=NS, min_replicas=0)
    apply(client, body)
    body["spec"]["predictor"]["maxReplicas"] = 2
    apply(client, body)
    # version 1 is older than any Knative Service watch here keeps (its events start when its routes are first
    # served: here at the latest, after the two writes above)
    (expired,) = lines(client, f"/apis/serving.knative.dev/v1/namespaces/{NS}/services", resourceVersion="1",
                       timeoutSeconds="5")
    assert expired["type"] == "ERROR" and expired["object"]["code"] == 410
    assert expired["object"]["reason"] == "Expired"

    listed = client.get("/apis/autoscaling/v2/horizontalpodautoscalers").json()["metadata"]["resourceVersion"]
    events = lines(client, "/apis/autoscaling/v2/horizontalpodautoscalers", resourceVersion=listed,
                   timeoutSeconds="1.5", allowWatchBookmarks="true", fieldSelector="metadata.name=none")
    assert events and {e["type"] for e in events} == {"BOOKMARK"}
    assert events[0]["object"]["kind"] == "HorizontalPodAutoscaler"
    assert events[0]["object"]["apiVersion"] == "autoscaling/v2"


def test_discovery_lists_watch_for_each_projected_kind(client: httpx.Client) -> None:
    for group_version, names in (("serving.knative.dev/v1", ["services"]), ("apps/v1", ["deployments", "replicasets"]),
                                 ("autoscaling/v2", ["horizontalpodautoscalers"]),
                                 ("autoscaling/v1", ["horizontalpodautoscalers"])):
        resources = client.get(f"/apis/{group_version}").json()["resources"]
        assert [r["name"] for r in resources] == names
        assert all(r["verbs"] == ["get", "list", "watch"] for r in resources)


def test_a_cluster_wide_watch_follows_every_namespace_and_a_recreate_in_the_other_mode(client: httpx.Client) -> None:
    """Watches without a namespace (``kubectl get ksvc -A -w``) from a listed resourceVersion: the Knative Services
    of two namespaces; an InferenceService deleted and created again in Standard mode (the mode is fixed at
    creation) leaves the Knative Services' watch with DELETED and enters the Deployments' with ADDED."""
    knative, deployments = "/apis/serving.knative.dev/v1/services", "/apis/apps/v1/deployments"
    since = {path: client.get(path).json()["metadata"]["resourceVersion"] for path in (knative, deployments)}
    for namespace in ("cw-one", "cw-two"):
        apply(client, manifest("cw", "pvc://models/none", namespace=namespace, min_replicas=0))
    assert client.delete(API.format(ns="cw-two") + "/cw").status_code == 200
    apply(client, manifest("cw", "pvc://models/none", namespace="cw-two", min_replicas=0, annotations=STANDARD))

    def seen(path: str) -> list[tuple[str, str]]:
        events = lines(client, path, resourceVersion=since[path], timeoutSeconds="1.5")
        return [(e["type"], e["object"]["metadata"]["namespace"]) for e in events
                if e["object"]["metadata"]["name"] == "cw-predictor"]

    ksvc = seen(knative)
    one, two = ([kind for kind, namespace in ksvc if namespace == ns] for ns in ("cw-one", "cw-two"))
    assert one[0] == "ADDED" and set(one[1:]) <= {"MODIFIED"}  # then its status changes (no model there)
    assert two[0] == "ADDED" and two[-1] == "DELETED" and set(two[1:-1]) <= {"MODIFIED"}
    deployed = seen(deployments)
    assert deployed[0] == ("ADDED", "cw-two") and {namespace for _, namespace in deployed} == {"cw-two"}
    assert "DELETED" not in {kind for kind, _ in deployed}
