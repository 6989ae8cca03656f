"""Kubernetes Events for InferenceServices: the real ``kubectl`` reads them from ``kfbox up`` (``kubectl describe
isvc``'s Events section, ``kubectl get events``), and the recorder's dedup and bound, with an injected clock."""

from __future__ import annotations

import json
import os
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from kfbox.serving.events import WARNING, EventRecorder, Involved
from tests.serving.helpers import API, ROWS, delete, kubectl_env, manifest, train_iris, wait_for, wait_ready
from tests.serving.helpers import kubectl_ok as ok
from tests.support import ServerProcess

NS = "events-test"


@pytest.fixture(scope="module")
def kube_env(server: ServerProcess, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    yield kubectl_env(server, tmp_path_factory.mktemp("kubectl-home"))


def apply(env: dict[str, str], tmp_path: Path, name: str, storage_uri: str, **predictor: Any) -> None:
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(manifest(name, storage_uri, namespace=NS, **predictor)))
    ok(env, "apply", "-f", str(path))


def events_of(env: dict[str, str], name: str) -> list[dict[str, object]]:
    out = ok(env, "get", "events", "-n", NS, "-o", "json", "--field-selector", f"involvedObject.name={name}")
    return json.loads(out)["items"]  # type: ignore[no-any-return]


def test_a_missing_model_shows_in_describe_and_get_events(kube_env: dict[str, str], server: ServerProcess,
                                                           tmp_path: Path) -> None:
    apply(kube_env, tmp_path, "missing", f"file://{tmp_path}/nowhere")
    try:
        # restarts back off (2 s, 4 s...): the second failure bumps the one event's count
        def failed_twice() -> str | None:
            out = ok(kube_env, "describe", "isvc", "missing", "-n", NS)
            return out if "(x2 over" in out else None
        described = wait_for(failed_twice, timeout=30, what="a repeated ModelLoadFailed")
        events = described.split("Events:", 1)[1]
        line = next(row for row in events.splitlines() if "ModelLoadFailed" in row)
        assert line.split()[:2] == ["Warning", "ModelLoadFailed"] and "kfbox-serving" in line
        assert f"Nothing at {tmp_path}/nowhere" in line
        assert "RevisionCreated" in events

        header, *rows = ok(kube_env, "get", "events", "-n", NS).splitlines()
        assert header.split() == ["LAST", "SEEN", "TYPE", "REASON", "OBJECT", "MESSAGE"]
        failed = next(row.split() for row in rows if "ModelLoadFailed" in row)
        assert failed[1:4] == ["Warning", "ModelLoadFailed", "inferenceservice/missing"]
        assert any(row.split()[0] == NS for row in ok(kube_env, "get", "ev", "-A").splitlines())

        (warning,) = [e for e in events_of(kube_env, "missing") if e["type"] == WARNING]
        assert warning["count"] >= 2 and warning["involvedObject"]["kind"] == "InferenceService"  # type: ignore[index]
        name = warning["metadata"]["name"]  # type: ignore[index]
        assert name.startswith("missing.")
        assert json.loads(ok(kube_env, "get", "event", name, "-n", NS, "-o", "json"))["reason"] == "ModelLoadFailed"
    finally:
        with server.client() as client:
            delete(client, "missing", NS)
    assert any(e["reason"] == "Deleted" for e in events_of(kube_env, "missing"))


def test_a_good_model_records_its_replica_started_and_ready(kube_env: dict[str, str], server: ServerProcess,
                                                             tmp_path: Path) -> None:
    train_iris(tmp_path / "model")
    apply(kube_env, tmp_path, "good", f"file://{tmp_path}/model")
    try:
        with server.client() as client:
            wait_ready(client, "good", NS)
        def reasons() -> set[object] | None:
            found = {e["reason"] for e in events_of(kube_env, "good")}
            return found if "ReplicaReady" in found else None
        assert {"RevisionCreated", "ReplicaStarted", "ReplicaReady"} <= wait_for(reasons, 30, "ReplicaReady")
        assert not {e["type"] for e in events_of(kube_env, "good")} - {"Normal"}

        with server.client() as client:  # a replica killed: a Warning, then a replacement started and ready
            revisions = client.get(f"{API.format(ns=NS)}/good").json()["status"]["revisions"]
        (pid,) = revisions["good-predictor-00001"]["pids"]
        os.kill(pid, signal.SIGKILL)
        def replaced() -> list[dict[str, object]] | None:
            events = events_of(kube_env, "good")
            died = [e for e in events if e["reason"] == "ReplicaDied"]
            started = [e for e in events if e["reason"] == "ReplicaStarted"]
            return events if died and len(started) >= 2 else None
        events = wait_for(replaced, 60, "ReplicaDied and a second ReplicaStarted")
        (died,) = [e for e in events if e["reason"] == "ReplicaDied"]
        assert died["type"] == WARNING and "replica 1 exited; replacing it" in str(died["message"])
    finally:
        with server.client() as client:
            delete(client, "good", NS)


def test_scaling_to_zero_and_back_is_told(kube_env: dict[str, str], server: ServerProcess, tmp_path: Path) -> None:
    train_iris(tmp_path / "model")
    apply(kube_env, tmp_path, "idle", f"file://{tmp_path}/model", min_replicas=0,
          annotations={"autoscaling.knative.dev/window": "2s"})
    try:
        def scaled(message: str) -> bool:
            return any(e["reason"] in ("ScaledUp", "ScaledDown") and message in str(e["message"])
                       for e in events_of(kube_env, "idle"))
        wait_for(lambda: scaled("scaled from 1 to 0 replicas on metric concurrency"), 60, "ScaledDown")
        with server.client() as client:
            reply = client.post(f"/serving/{NS}/idle/v1/models/idle:predict", json={"instances": ROWS}, timeout=60)
            assert reply.status_code == 200, reply.text
        assert scaled("scaled from 0 to 1 replicas on a waiting request")
    finally:
        with server.client() as client:
            delete(client, "idle", NS)


def test_events_refuse_unknown_field_selectors_and_writes(server: ServerProcess) -> None:
    with server.client() as client:
        resources = client.get("/api/v1").json()["resources"]
        assert {"name": "events", "singularName": "event", "namespaced": True, "kind": "Event",
                "verbs": ["get", "list", "watch"], "shortNames": ["ev"]} in resources
        refused = client.get(f"/api/v1/namespaces/{NS}/events", params={"fieldSelector": "spec.nodeName=x"})
        assert refused.status_code == 400 and refused.json()["reason"] == "BadRequest"
        assert "involvedObject.name" in refused.json()["message"]
        listed = client.get("/api/v1/events", params={"fieldSelector": "type=Warning,involvedObject.kind=Pod"})
        assert listed.status_code == 200 and listed.json()["items"] == []
        written = client.post(f"/api/v1/namespaces/{NS}/events", json={"reason": "Mine"})
        assert written.status_code == 405 and written.json()["reason"] == "MethodNotAllowed"


ISVC = Involved("default", "iris", "uid-1")


def test_the_same_event_again_counts_instead_of_adding() -> None:
    now = [1000.0]
    recorder = EventRecorder(clock=lambda: now[0])
    first = recorder.record(ISVC, "ModelLoadFailed", "no model.joblib", WARNING)
    now[0] += 65
    again = recorder.record(ISVC, "ModelLoadFailed", "no model.joblib", WARNING)
    assert again is first and first["count"] == 2
    assert (first["firstTimestamp"], first["lastTimestamp"]) == ("1970-01-01T00:16:40Z", "1970-01-01T00:17:45Z")
    recorder.record(ISVC, "ModelLoadFailed", "another reason", WARNING)
    recorder.record(Involved("default", "iris", "uid-2"), "ModelLoadFailed", "no model.joblib", WARNING)  # re-created
    assert [e["count"] for e in recorder.objects("default")] == [2, 1, 1]
    assert recorder.objects("other") == []


def test_the_recorder_keeps_the_newest_and_drops_the_oldest() -> None:
    recorder = EventRecorder(capacity=3)
    for n in range(3):
        recorder.record(ISVC, "ScaledUp", f"to {n + 1}")
    recorder.record(ISVC, "ScaledUp", "to 1")  # seen again: now the newest
    recorder.record(ISVC, "ScaledDown", "to 0")
    assert [e["message"] for e in recorder.objects()] == ["to 3", "to 1", "to 0"]
