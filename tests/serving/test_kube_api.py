"""The InferenceService API follows the Kubernetes API's conventions, one test per convention,
against a real ``kfbox up`` (there is no Kubernetes here: kfbox is the API server).

Most objects use ``minReplicas: 0`` so no replica starts; the rollout test serves a real model.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.serving.helpers import API, manifest, train_iris, wait_for
from tests.support import ServerProcess

BASE = API.format(ns="default")
MERGE = {"content-type": "application/merge-patch+json"}
JSON_PATCH = {"content-type": "application/json-patch+json"}
APPLY = {"content-type": "application/apply-patch+yaml"}


@pytest.fixture(scope="module")
def client(server: ServerProcess) -> Iterator[httpx.Client]:
    with server.client() as http:
        yield http


def idle(name: str, **kwargs: Any) -> dict[str, Any]:
    """A manifest that starts no replica (scale to zero), for API-only tests."""
    return manifest(name, "pvc://models/none", min_replicas=0, max_replicas=1, **kwargs)


def create(client: httpx.Client, body: dict[str, Any]) -> dict[str, Any]:
    reply = client.post(BASE, json=body)
    assert reply.status_code == 201, reply.text
    return reply.json()  # type: ignore[no-any-return]


def status_of(reply: httpx.Response, code: int, reason: str) -> dict[str, Any]:
    assert reply.status_code == code, reply.text
    body = reply.json()
    assert (body["kind"], body["apiVersion"], body["status"], body["code"], body["reason"]) == \
        ("Status", "v1", "Failure", code, reason), body
    assert body["message"]
    return body  # type: ignore[no-any-return]


def test_create_is_201_duplicate_409_missing_404_with_status_bodies(client: httpx.Client) -> None:
    created = create(client, idle("conv-a"))
    meta = created["metadata"]
    assert meta["generation"] == 1 and meta["uid"] and int(meta["resourceVersion"]) > 0
    assert meta["creationTimestamp"].endswith("Z")
    again = status_of(client.post(BASE, json=idle("conv-a")), 409, "AlreadyExists")
    assert again["details"] == {"name": "conv-a", "group": "serving.kserve.io", "kind": "inferenceservices"}
    assert client.get(f"{BASE}/conv-a").json()["metadata"]["uid"] == meta["uid"]  # not replaced
    missing = status_of(client.get(f"{BASE}/nope"), 404, "NotFound")
    assert missing["details"]["name"] == "nope"
    status_of(client.delete(f"{BASE}/nope"), 404, "NotFound")


def test_schema_errors_are_422_invalid_and_wrong_kind_400(client: httpx.Client) -> None:
    bad = status_of(client.post(BASE, json=manifest("conv-bad", "pvc://x", fmt="tensorflow")), 422, "Invalid")
    assert "tensorflow" in bad["message"] and bad["details"]["causes"]
    status_of(client.post(BASE, json={**idle("conv-bad"), "kind": "Deployment"}), 400, "BadRequest")
    status_of(client.post(BASE, content=b"{not json", headers={"content-type": "application/json"}), 400,
              "BadRequest")
    status_of(client.get(f"{BASE}?labelSelector=a%20in%20"), 400, "BadRequest")
    status_of(client.get(f"{BASE}?limit=abc"), 400, "BadRequest")
    status_of(client.get("/apis/apps/v1/deployments?limit=-1"), 400, "BadRequest")
    assert client.get(f"{BASE}?limit=500").status_code == 200


def test_resource_version_is_optimistic_concurrency_and_generation_counts_spec_changes(client: httpx.Client) -> None:
    obj = create(client, idle("conv-b"))
    v1 = obj["metadata"]["resourceVersion"]
    no_version = {**obj, "metadata": {k: v for k, v in obj["metadata"].items() if k != "resourceVersion"}}
    status_of(client.put(f"{BASE}/conv-b", json=no_version), 422, "Invalid")
    labelled = client.patch(f"{BASE}/conv-b", json={"metadata": {"labels": {"team": "a"}}}, headers=MERGE)
    assert labelled.status_code == 200, labelled.text
    v2 = labelled.json()["metadata"]["resourceVersion"]
    assert int(v2) > int(v1) and labelled.json()["metadata"]["generation"] == 1  # labels are not spec
    stale = status_of(client.put(f"{BASE}/conv-b", json=obj), 409, "Conflict")  # obj carries v1
    assert "modified" in stale["message"]
    status_of(client.patch(f"{BASE}/conv-b", json={"metadata": {"resourceVersion": v1}, "spec": {}},
                           headers=MERGE), 409, "Conflict")
    current = client.get(f"{BASE}/conv-b").json()
    current["spec"]["predictor"]["maxReplicas"] = 2
    replaced = client.put(f"{BASE}/conv-b", json=current)
    assert replaced.status_code == 200, replaced.text
    assert replaced.json()["metadata"]["generation"] == 2
    assert replaced.json()["status"]["observedGeneration"] == 2
    status_of(client.request("DELETE", f"{BASE}/conv-b", json={"preconditions": {"resourceVersion": v1}}),
              409, "Conflict")


def test_dry_run_validates_and_stores_nothing(client: httpx.Client) -> None:
    preview = client.post(f"{BASE}?dryRun=All", json=idle("conv-dry"))
    assert preview.status_code == 201 and preview.json()["metadata"]["name"] == "conv-dry"
    status_of(client.get(f"{BASE}/conv-dry"), 404, "NotFound")
    status_of(client.post(f"{BASE}?dryRun=All", json=manifest("conv-dry", None)), 422, "Invalid")
    create(client, idle("conv-dry"))
    patched = client.patch(f"{BASE}/conv-dry?dryRun=All", json={"spec": {"predictor": {"maxReplicas": 3}}},
                           headers=MERGE)
    assert patched.status_code == 200 and patched.json()["spec"]["predictor"]["maxReplicas"] == 3
    assert patched.json()["metadata"]["generation"] == 2
    assert client.get(f"{BASE}/conv-dry").json()["spec"]["predictor"]["maxReplicas"] == 1
    assert client.delete(f"{BASE}/conv-dry?dryRun=All").status_code == 200
    assert client.get(f"{BASE}/conv-dry").status_code == 200


def test_label_and_field_selectors(client: httpx.Client) -> None:
    for name, labels in (("sel-1", {"team": "a", "tier": "gold"}), ("sel-2", {"team": "b"}), ("sel-3", {})):
        body = idle(name)
        body["metadata"]["labels"] = labels
        body["metadata"]["namespace"] = "selectors"
        assert client.post(API.format(ns="selectors"), json=body).status_code == 201

    def names(query: str) -> list[str]:
        reply = client.get(API.format(ns="selectors"), params=query)
        assert reply.status_code == 200, reply.text
        assert int(reply.json()["metadata"]["resourceVersion"]) > 0
        return [i["metadata"]["name"] for i in reply.json()["items"]]

    assert names("labelSelector=team=a") == ["sel-1"]
    assert names("labelSelector=team==b") == ["sel-2"]
    assert names("labelSelector=team!=a") == ["sel-2", "sel-3"]
    assert names("labelSelector=team in (a,b)") == ["sel-1", "sel-2"]
    assert names("labelSelector=team notin (a)") == ["sel-2", "sel-3"]
    assert names("labelSelector=team") == ["sel-1", "sel-2"]
    assert names("labelSelector=!team") == ["sel-3"]
    assert names("labelSelector=team=a,tier=gold") == ["sel-1"]
    assert names("fieldSelector=metadata.name=sel-2") == ["sel-2"]
    all_ns = client.get("/apis/serving.kserve.io/v1beta1/inferenceservices",
                        params={"fieldSelector": "metadata.namespace=selectors"}).json()["items"]
    assert sorted(i["metadata"]["name"] for i in all_ns) == ["sel-1", "sel-2", "sel-3"]


def read_events(client: httpx.Client, query: str, until: int, collected: list[dict[str, Any]]) -> None:
    with client.stream("GET", f"{BASE}?watch=true&{query}") as reply:
        assert reply.status_code == 200
        for line in reply.iter_lines():
            if line:
                collected.append(json.loads(line))
            if len(collected) >= until:
                return


def test_watch_streams_events_from_a_resource_version(client: httpx.Client) -> None:
    start = client.get(BASE).json()["metadata"]["resourceVersion"]
    events: list[dict[str, Any]] = []
    watcher = threading.Thread(target=read_events, args=(
        client, f"resourceVersion={start}&timeoutSeconds=20&fieldSelector=metadata.name=conv-w", 3, events))
    watcher.start()
    create(client, idle("conv-w"))
    assert client.patch(f"{BASE}/conv-w", json={"metadata": {"labels": {"x": "y"}}}, headers=MERGE).status_code == 200
    assert client.delete(f"{BASE}/conv-w").status_code == 200
    watcher.join(25)
    kinds = [e["type"] for e in events]
    assert kinds[0] == "ADDED" and kinds[-1] == "DELETED" and set(kinds[1:-1]) <= {"MODIFIED"}, kinds
    versions = [int(e["object"]["metadata"]["resourceVersion"]) for e in events]
    assert versions == sorted(versions) and versions[0] > int(start)
    assert all(e["object"]["metadata"]["name"] == "conv-w" for e in events)
    # without a resourceVersion a watch starts with the objects that exist
    create(client, idle("conv-w2"))
    initial: list[dict[str, Any]] = []
    read_events(client, "timeoutSeconds=2&fieldSelector=metadata.name=conv-w2", 1, initial)
    assert initial[0]["type"] == "ADDED" and initial[0]["object"]["metadata"]["name"] == "conv-w2"


def test_watch_bookmarks_and_timeout(client: httpx.Client) -> None:
    events: list[dict[str, Any]] = []
    latest = client.get(BASE).json()["metadata"]["resourceVersion"]
    read_events(client, f"resourceVersion={latest}&allowWatchBookmarks=true&timeoutSeconds=3"
                        "&fieldSelector=metadata.name=nothing-here", 100, events)  # ends by timeoutSeconds
    assert events and {e["type"] for e in events} == {"BOOKMARK"}
    assert int(events[-1]["object"]["metadata"]["resourceVersion"]) >= int(latest)


def test_status_subresource(client: httpx.Client) -> None:
    obj = create(client, idle("conv-s"))
    got = client.get(f"{BASE}/conv-s/status")
    assert got.status_code == 200 and "conditions" in got.json()["status"]
    bumped = client.patch(f"{BASE}/conv-s", json={"metadata": {"labels": {"bump": "1"}}}, headers=MERGE)
    assert bumped.json()["metadata"]["resourceVersion"] != obj["metadata"]["resourceVersion"]
    status_of(client.put(f"{BASE}/conv-s/status", json=obj), 409, "Conflict")  # obj's version is now stale
    patched = client.patch(f"{BASE}/conv-s/status", json={"status": {"url": "http://elsewhere"}}, headers=MERGE)
    assert patched.status_code == 200
    assert patched.json()["status"]["url"] != "http://elsewhere"  # kfbox's controller owns status
    assert patched.json()["spec"] == obj["spec"]


def test_patch_types(client: httpx.Client) -> None:
    create(client, idle("conv-p"))
    ops = [{"op": "replace", "path": "/spec/predictor/maxReplicas", "value": 4},
           {"op": "add", "path": "/metadata/labels", "value": {"via": "json-patch"}}]
    patched = client.patch(f"{BASE}/conv-p", content=json.dumps(ops), headers=JSON_PATCH)
    assert patched.status_code == 200, patched.text
    assert patched.json()["spec"]["predictor"]["maxReplicas"] == 4
    assert patched.json()["metadata"]["labels"] == {"via": "json-patch"}
    failed = client.patch(f"{BASE}/conv-p", headers=JSON_PATCH,
                          content=json.dumps([{"op": "test", "path": "/spec/predictor/maxReplicas", "value": 9}]))
    status_of(failed, 422, "Invalid")
    strategic = client.patch(f"{BASE}/conv-p", json={"spec": {"predictor": {"maxReplicas": 5}}},
                             headers={"content-type": "application/strategic-merge-patch+json"})
    assert strategic.status_code == 200 and strategic.json()["spec"]["predictor"]["maxReplicas"] == 5
    status_of(client.patch(f"{BASE}/conv-p", json={}, headers={"content-type": "text/plain"}), 415,
              "UnsupportedMediaType")


def test_server_side_apply_owns_fields_and_reports_conflicts(client: httpx.Client) -> None:
    intent = idle("conv-ssa")
    intent["metadata"]["labels"] = {"owner": "alice"}
    path = f"{BASE}/conv-ssa"
    first = client.patch(f"{path}?fieldManager=alice", content=json.dumps(intent), headers=APPLY)
    assert first.status_code == 201, first.text  # apply creates
    managers = {m["manager"]: m for m in first.json()["metadata"]["managedFields"]}
    assert managers["alice"]["operation"] == "Apply"
    assert "f:maxReplicas" in managers["alice"]["fieldsV1"]["f:spec"]["f:predictor"]
    bob = {"apiVersion": intent["apiVersion"], "kind": intent["kind"], "metadata": {"name": "conv-ssa"},
           "spec": {"predictor": {"maxReplicas": 3}}}
    conflict = status_of(client.patch(f"{path}?fieldManager=bob", content=json.dumps(bob), headers=APPLY),
                         409, "Conflict")
    assert conflict["details"]["causes"][0]["field"] == ".spec.predictor.maxReplicas"
    assert 'conflict with "alice"' in conflict["message"]
    forced = client.patch(f"{path}?fieldManager=bob&force=true", content=json.dumps(bob), headers=APPLY)
    assert forced.status_code == 200 and forced.json()["spec"]["predictor"]["maxReplicas"] == 3
    # alice applies again without her label: it goes; bob's field stays bob's
    intent["metadata"].pop("labels")
    intent["spec"]["predictor"].pop("maxReplicas")
    again = client.patch(f"{path}?fieldManager=alice", content=json.dumps(intent), headers=APPLY)
    assert again.status_code == 200, again.text
    assert "labels" not in again.json()["metadata"]
    assert again.json()["spec"]["predictor"]["maxReplicas"] == 3
    status_of(client.patch(path, content=json.dumps(intent), headers=APPLY), 422, "Invalid")  # no fieldManager


def test_discovery_version_openapi_and_namespaces(client: httpx.Client) -> None:
    assert client.get("/api").json()["versions"] == ["v1"]
    groups = client.get("/apis", headers={"accept": "application/json;g=apidiscovery.k8s.io;v=v2;"
                                                    "as=APIGroupDiscoveryList,application/json"})
    assert groups.headers["content-type"] == "application/json"  # not aggregated: kubectl falls back
    assert groups.json()["groups"][0]["preferredVersion"]["groupVersion"] == "serving.kserve.io/v1beta1"
    resources = client.get("/apis/serving.kserve.io/v1beta1").json()["resources"]
    isvc = next(r for r in resources if r["name"] == "inferenceservices")
    assert isvc["shortNames"] == ["isvc"] and "watch" in isvc["verbs"] and isvc["namespaced"]
    assert client.get("/version").json()["major"] == "1"
    index = client.get("/openapi/v3").json()["paths"]
    doc = client.get(index["apis/serving.kserve.io/v1beta1"]["serverRelativeURL"]).json()
    assert "io.kserve.serving.v1beta1.InferenceService" in doc["components"]["schemas"]
    assert client.get("/openapi/v2", headers={"accept": "application/com.github.proto-openapi.spec.v2@v1.0"
                                                        "+protobuf"}).status_code == 406
    assert client.get("/api/v1/namespaces/default").json()["status"]["phase"] == "Active"
    made = client.post("/api/v1/namespaces", json={"apiVersion": "v1", "kind": "Namespace",
                                                   "metadata": {"name": "team-ns"}})
    assert made.status_code == 201
    status_of(client.post("/api/v1/namespaces", json={"metadata": {"name": "team-ns"}}), 409, "AlreadyExists")
    status_of(client.get("/api/v1/namespaces/absent"), 404, "NotFound")
    names = [n["metadata"]["name"] for n in client.get("/api/v1/namespaces").json()["items"]]
    assert {"default", "team-ns"} <= set(names)


def table_row(client: httpx.Client, name: str) -> list[Any]:
    """The cells kubectl prints for one InferenceService (the server-side Table it asks for)."""
    reply = client.get(f"{BASE}/{name}", headers={"Accept": "application/json;as=Table;v=v1;g=meta.k8s.io"})
    assert reply.status_code == 200, reply.text
    return list(reply.json()["rows"][0]["cells"])


def test_ready_follows_the_rollout_of_each_generation(client: httpx.Client, server: ServerProcess) -> None:
    train_iris(server.home / "pvc" / "models" / "conv-v1")
    train_iris(server.home / "pvc" / "models" / "conv-v2", kind="tree")
    create(client, manifest("conv-r", "pvc://models/conv-v1"))

    def ready_for(generation: int) -> dict[str, Any] | None:
        body = client.get(f"{BASE}/conv-r").json()
        st = body["status"]
        ready = next(c for c in st["conditions"] if c["type"] == "Ready")
        return body if st["observedGeneration"] == generation and ready["status"] == "True" else None

    wait_for(lambda: ready_for(1), 90, "generation 1 Ready")
    patched = client.patch(f"{BASE}/conv-r", headers=MERGE, json={"spec": {"predictor": {
        "canaryTrafficPercent": 20, "model": {"storageUri": "pvc://models/conv-v2"}}}})
    assert patched.status_code == 200
    st = patched.json()["status"]
    assert patched.json()["metadata"]["generation"] == 2 and st["observedGeneration"] == 2
    ready = next(c for c in st["conditions"] if c["type"] == "Ready")
    assert ready["status"] == "False" and ready["reason"] == "RevisionNotReady", ready
    # the canary's 20% goes to revision 1 until revision 2 has a replica, and kubectl's LATEST and
    # LATESTREADYREVISION columns (the target following the latest revision) say so, as Knative resolves it
    assert st["components"]["predictor"]["traffic"] == [
        {"revisionName": "conv-r-predictor-00001", "percent": 80, "latestRevision": False, "tag": "prev"},
        {"revisionName": "conv-r-predictor-00001", "percent": 20, "latestRevision": True}]
    assert table_row(client, "conv-r")[3:7] == [80, 20, "conv-r-predictor-00001", "conv-r-predictor-00001"]
    body = wait_for(lambda: ready_for(2), 90, "generation 2 Ready")
    assert body["status"]["components"]["predictor"]["latestReadyRevision"] == "conv-r-predictor-00002"
    assert table_row(client, "conv-r")[3:7] == [80, 20, "conv-r-predictor-00001", "conv-r-predictor-00002"]
    assert client.delete(f"{BASE}/conv-r").status_code == 200


def test_watch_from_before_a_restart_is_410_gone(tmp_path: Path) -> None:
    """Versions persist; the event history does not: a watch from a version older than the restarted server's
    is 410 Gone (the events after it are not held). A server of its own, restarted here (the package's shared
    server is not restarted under the other modules)."""
    server = ServerProcess.start(tmp_path / "home")
    try:
        with server.client() as http:
            before = create(http, idle("conv-gone"))["metadata"]["resourceVersion"]
            assert http.patch(f"{BASE}/conv-gone", json={"metadata": {"labels": {"x": "y"}}},
                              headers=MERGE).status_code == 200  # a change after `before`, lost at the restart
        server.stop()
        server = ServerProcess.start(tmp_path / "home")
        with server.client() as http:
            listed = http.get(BASE).json()
            assert int(listed["metadata"]["resourceVersion"]) > int(before)
            events: list[dict[str, Any]] = []
            read_events(http, f"resourceVersion={before}&timeoutSeconds=5", 1, events)
            assert events and events[0]["type"] == "ERROR", events
            assert (events[0]["object"]["code"], events[0]["object"]["reason"]) == (410, "Expired")
            fresh: list[dict[str, Any]] = []  # from the list's version: fine
            read_events(http, f"resourceVersion={listed['metadata']['resourceVersion']}&timeoutSeconds=1", 1, fresh)
            assert all(e["type"] != "ERROR" for e in fresh)
    finally:
        server.stop()
