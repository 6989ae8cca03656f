"""Revisions, canary traffic, promote/rollback, autoscaling and scale-from-zero on a live server."""

from __future__ import annotations

import collections
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.serving.helpers import (
    API,
    apply,
    expected,
    kfbox,
    manifest,
    ready,
    status,
    train_iris,
    v1,
    wait_for,
    wait_ready,
)
from tests.support import ServerProcess

WINDOW = {"autoscaling.knative.dev/window": "2s"}
SLOW_START = '''
import os
import pathlib
import time

from kserve import Model


class SlowStart(Model):
    """The first replica to load is ready at once; the others load once the file "gate" exists beside this one."""

    def load(self):
        folder = pathlib.Path(__file__).parent
        try:
            os.close(os.open(folder / "first", os.O_CREAT | os.O_EXCL))
        except FileExistsError:
            for _ in range(2400):
                if (folder / "gate").exists():
                    break
                time.sleep(0.05)
        self.ready = True
        return True

    async def predict(self, payload, headers=None):
        return {"predictions": ["loaded"]}
'''
"""A custom ``kserve.Model`` whose replicas become ready when the test says so, not by timing."""


@pytest.fixture()
def client(server: ServerProcess) -> Any:
    with server.client() as c:
        yield c


def revision_share(client: httpx.Client, name: str, n: int) -> collections.Counter[str]:
    seen: collections.Counter[str] = collections.Counter()
    with ThreadPoolExecutor(4) as pool:
        for reply in pool.map(lambda _: v1(client, name, [[5.1, 3.5, 1.4, 0.2]]), range(n)):
            assert reply.status_code == 200, reply.text
            seen[reply.headers["x-kfbox-revision"]] += 1
    return seen


def test_rollout_canary_promote_and_rollback(client: httpx.Client, server: ServerProcess) -> None:
    logistic = train_iris(server.home / "pvc" / "models" / "flower-v1")
    tree = train_iris(server.home / "pvc" / "models" / "flower-v2", kind="tree")
    apply(client, manifest("flower", "pvc://models/flower-v1"))
    wait_ready(client, "flower")
    assert v1(client, "flower").json() == {"predictions": expected(logistic)}

    # a changed spec without canary: the old revision serves until the new one is ready, then hands over
    rolling = apply(client, manifest("flower", "pvc://models/flower-v2"))["status"]["components"]["predictor"]
    # ...and the target following the latest revision names the one serving, as Knative resolves it
    assert rolling["traffic"] == [{"revisionName": "flower-predictor-00001", "percent": 100, "latestRevision": True}]
    assert v1(client, "flower").status_code == 200
    wait_for(lambda: status(client, "flower")["components"]["predictor"].get("latestRolledoutRevision")
             == "flower-predictor-00002", 90, "rollout of revision 2")
    assert revision_share(client, "flower", 20) == {"flower-predictor-00002": 20}
    assert v1(client, "flower").json() == {"predictions": expected(tree)}
    apply(client, manifest("flower", "pvc://models/flower-v2"))  # the same spec again: no new revision
    assert status(client, "flower")["components"]["predictor"]["latestCreatedRevision"] == "flower-predictor-00002"

    # revision 3 as a 20% canary
    st = apply(client, manifest("flower", "pvc://models/flower-v1", canary_traffic_percent=20))["status"]
    assert st["components"]["predictor"]["latestCreatedRevision"] == "flower-predictor-00003"
    wait_for(lambda: status(client, "flower")["revisions"]["flower-predictor-00003"]["ready"], 90, "canary ready")
    traffic = {t["revisionName"]: t["percent"] for t in status(client, "flower")["components"]["predictor"]["traffic"]}
    assert traffic == {"flower-predictor-00002": 80, "flower-predictor-00003": 20}
    seen = revision_share(client, "flower", 200)  # smooth weighted round robin: exact over every 5 picks
    assert 30 <= seen["flower-predictor-00003"] <= 50, seen
    assert seen["flower-predictor-00002"] + seen["flower-predictor-00003"] == 200

    promoted = kfbox("serve", "promote", "flower", url=server.url)
    assert promoted.returncode == 0, promoted.stderr
    assert revision_share(client, "flower", 40) == {"flower-predictor-00003": 40}
    assert v1(client, "flower").json() == {"predictions": expected(logistic)}
    # revision 4 as a 50% canary, rolled back: everything returns to revision 3
    apply(client, manifest("flower", "pvc://models/flower-v2", canary_traffic_percent=50))
    rolled = kfbox("serve", "rollback", "flower", url=server.url)
    assert rolled.returncode == 0, rolled.stderr
    assert revision_share(client, "flower", 40) == {"flower-predictor-00003": 40}
    traffic = status(client, "flower")["components"]["predictor"]["traffic"]
    assert traffic == [{"revisionName": "flower-predictor-00003", "percent": 100, "latestRevision": True}]
    again = client.post(API.format(ns="default") + "/flower/rollback")
    assert again.status_code == 409
    assert "no earlier" in again.json()["message"]
    client.delete(API.format(ns="default") + "/flower")


def load_until(server: ServerProcess, name: str, clients: int, reached: Callable[[], bool], timeout: float,
               what: str) -> collections.Counter[int]:
    """``clients`` keep-alive clients send V1 predicts to ``name``, each one request at a time, until ``reached()``
    (bounded by ``timeout``, then it fails naming ``what``); returns the status codes they got."""
    stop = threading.Event()
    codes: collections.Counter[int] = collections.Counter()

    def send() -> None:
        with server.client() as c:
            while not stop.is_set():
                codes[v1(c, name).status_code] += 1

    threads = [threading.Thread(target=send) for _ in range(clients)]
    for thread in threads:
        thread.start()
    try:
        wait_for(reached, timeout, what)
    finally:
        stop.set()
        for thread in threads:
            thread.join()
    return codes


def test_autoscale_up_under_load_and_down_after_idle(client: httpx.Client, server: ServerProcess) -> None:
    train_iris(server.home / "pvc" / "models" / "auto")
    apply(client, manifest("auto", "pvc://models/auto", annotations=WINDOW, min_replicas=1, max_replicas=3,
                           scale_target=2, scale_metric="concurrency"))
    wait_ready(client, "auto")
    assert status(client, "auto")["replicas"] == 1
    codes = load_until(server, "auto", 32, lambda: status(client, "auto")["replicas"] == 3, 120,
                       "3 replicas under load")
    assert set(codes) == {200}, codes
    wait_for(lambda: status(client, "auto")["replicas"] == 1, 30, "scale down to 1 after the idle window")
    metrics = client.get("/metrics").text
    assert 'kfbox_serving_replicas{name="auto",namespace="default"} 1.0' in metrics
    client.delete(API.format(ns="default") + "/auto")


def test_rps_scales_a_sequential_clients_load_up_and_down_after_idle(client: httpx.Client,
                                                                     server: ServerProcess) -> None:
    """``scaleMetric: rps`` (Knative's requests per second per replica): one client sending one request at a
    time (never more than one in flight, which ``concurrency`` would serve with one replica) at hundreds of
    requests a second against a target of 20 (scaled at 80% by the annotation: 16) scales to maxReplicas; idle,
    back to one."""
    train_iris(server.home / "pvc" / "models" / "rated")
    apply(client, manifest("rated", "pvc://models/rated", min_replicas=1, max_replicas=3, scale_target=20,
                           scale_metric="rps",
                           annotations={**WINDOW, "autoscaling.knative.dev/target-utilization-percentage": "80"}))
    wait_ready(client, "rated")
    assert status(client, "rated")["replicas"] == 1
    assert status(client, "rated")["autoscaling"] == {
        "metric": "rps", "target": 20, "minReplicas": 1, "maxReplicas": 3, "targetUtilizationPercentage": 80.0,
        "per": "requests per second a replica (scaled at 80%: 16)"}
    shown = kfbox("serve", "get", "rated", url=server.url)
    assert "rps, target 20 requests per second a replica (scaled at 80%: 16); 1-3 replicas" in shown.stdout, (
        shown.stdout)
    codes = load_until(server, "rated", 1, lambda: status(client, "rated")["replicas"] == 3, 60,
                       "3 replicas for one sequential client")
    assert set(codes) == {200} and codes[200] > 60, codes
    wait_for(lambda: status(client, "rated")["replicas"] == 1, 30, "scale down to 1 after the idle window")
    client.delete(API.format(ns="default") + "/rated")


def test_cpu_scales_on_the_replicas_use_of_their_request_and_back_when_idle(client: httpx.Client,
                                                                           server: ServerProcess) -> None:
    """``scaleMetric: cpu`` (the HPA's metric: here Knative mode with Knative's HPA class, as KServe takes it): a
    replica asking for 100m of CPU, with a target of 50% of it, kept busy by one sequential client (far over 50m)
    scales to maxReplicas; idle (a replica's idle use is far under 50m), back to minReplicas."""
    train_iris(server.home / "pvc" / "models" / "busy")
    body = manifest("busy", "pvc://models/busy", min_replicas=1, max_replicas=3, scale_target=50, scale_metric="cpu",
                    annotations={**WINDOW, "autoscaling.knative.dev/class": "hpa.autoscaling.knative.dev"})
    body["spec"]["predictor"]["model"]["resources"] = {"requests": {"cpu": "100m"}}
    apply(client, body)
    wait_ready(client, "busy")
    shown = kfbox("serve", "get", "busy", url=server.url)
    assert "cpu, target 50 percent of the 0.1 CPU a replica requests; 1-3 replicas" in shown.stdout, shown.stdout
    codes = load_until(server, "busy", 1, lambda: status(client, "busy")["replicas"] == 3, 60,
                       "3 replicas for one busy client")
    assert set(codes) == {200}, codes
    wait_for(lambda: status(client, "busy")["replicas"] == 1, 30, "scale down to 1 once idle")
    client.delete(API.format(ns="default") + "/busy")


def test_scale_to_zero_and_cold_start(client: httpx.Client, server: ServerProcess) -> None:
    model = train_iris(server.home / "pvc" / "models" / "zero")
    apply(client, manifest("zero", "pvc://models/zero", annotations={"autoscaling.knative.dev/window": "1s"},
                           min_replicas=0, max_replicas=1))
    wait_ready(client, "zero")
    wait_for(lambda: status(client, "zero")["revisions"]["zero-predictor-00001"]["replicas"] == 0, 30, "zero")
    st = status(client, "zero")
    assert [c["status"] for c in st["conditions"] if c["type"] == "Ready"] == ["True"]  # scaled to zero is Ready
    reply = v1(client, "zero")
    assert reply.status_code == 200, reply.text
    assert reply.json() == {"predictions": expected(model)}  # held while a replica started (the metrics below)
    metrics = client.get("/metrics").text
    assert 'kfbox_serving_cold_starts_total{name="zero",namespace="default"} 1.0' in metrics
    assert 'kfbox_serving_cold_start_seconds_count{name="zero",namespace="default"} 1.0' in metrics
    client.delete(API.format(ns="default") + "/zero")


def test_initial_scale_starts_a_new_revision_with_that_many_replicas(client: httpx.Client,
                                                                      server: ServerProcess) -> None:
    """``autoscaling.knative.dev/initial-scale: 2`` on the predictor: the revision starts two replicas (not
    Knative's default one), shown by ``kfbox serve get`` and passed to the Knative Service's revision template as
    KServe passes it; idle once both were ready, it falls back to minReplicas after the window. 0 is refused as
    Knative's webhook refuses it on a cluster that does not allow a zero initial scale (the default)."""
    train_iris(server.home / "pvc" / "models" / "twice")
    body = manifest("twice", "pvc://models/twice", min_replicas=1, max_replicas=3,
                    annotations={"autoscaling.knative.dev/window": "3s"})
    body["spec"]["predictor"]["annotations"] = {"autoscaling.knative.dev/initial-scale": "2"}
    apply(client, body)
    assert status(client, "twice")["desiredReplicas"] == 2
    wait_for(lambda: status(client, "twice")["replicas"] == 2, 90, "two replicas ready")
    shown = kfbox("serve", "get", "twice", url=server.url)
    assert "1-3 replicas; starts with 2" in shown.stdout, shown.stdout
    ksvc = client.get("/apis/serving.knative.dev/v1/namespaces/default/services/twice-predictor").json()
    assert ksvc["spec"]["template"]["metadata"]["annotations"]["autoscaling.knative.dev/initial-scale"] == "2"
    wait_for(lambda: status(client, "twice")["replicas"] == 1, 30, "back to minReplicas once idle")

    client.delete(API.format(ns="default") + "/twice")
    body["spec"]["predictor"]["annotations"] = {"autoscaling.knative.dev/initial-scale": "0"}
    reply = client.post(API.format(ns="default"), json={**body, "metadata": {"name": "never"}})
    assert (reply.status_code, reply.json()["reason"]) == (422, "Invalid"), reply.text
    assert "autoscaling.knative.dev/initial-scale '0' must be an integer of at least 1" in reply.json()["message"]


def slow_start(folder: Path, name: str, initial_scale: int, window: str | None = None,
               **predictor: Any) -> tuple[Path, dict[str, Any]]:
    """SLOW_START written into ``folder`` (its gate file goes there too) and a manifest serving it as ``name``
    with Knative's ``initial-scale``."""
    folder.mkdir()
    (folder / "slow_start.py").write_text(SLOW_START)
    annotations = {"serving.kfbox.io/model-class": "slow_start:SlowStart", "serving.kfbox.io/python-path": str(folder),
                   **({"autoscaling.knative.dev/window": window} if window else {})}
    body = manifest(name, None, fmt="custom", annotations=annotations, **predictor)
    body["spec"]["predictor"]["annotations"] = {"autoscaling.knative.dev/initial-scale": str(initial_scale)}
    return folder, body


def test_initial_scale_is_ready_only_once_that_many_replicas_were_ready(client: httpx.Client,
                                                                        server: ServerProcess) -> None:
    """Knative marks a revision Ready only once its ``initial-scale`` replicas were ready. With
    ``initial-scale: 3`` and a model (SLOW_START) of which one replica loads at once and the others only when the
    test opens a gate: one replica ready, the InferenceService is not Ready nor PredictorReady, names no
    latestReadyRevision, and its Knative Service is not Ready. Gate open, all three ready: Ready; idle, back to
    minReplicas, it stays Ready (the usual rules from then on)."""
    folder, body = slow_start(server.home / "slow-start", "thrice", 3, min_replicas=1, max_replicas=3,
                              window="3s")
    apply(client, body)
    wait_for(lambda: status(client, "thrice")["replicas"] == 1, 90, "the first replica ready")
    ksvc_url = "/apis/serving.knative.dev/v1/namespaces/default/services/thrice-predictor"
    for _ in range(10):  # a few of the manager's ticks with one replica of three ready
        st = status(client, "thrice")
        assert (st["replicas"], st["desiredReplicas"]) == (1, 3), st
        conditions = {c["type"]: c["status"] for c in st["conditions"]}
        assert conditions["Ready"] == conditions["PredictorReady"] == "False", st["conditions"]
        assert "latestReadyRevision" not in st["components"]["predictor"], st["components"]
        ksvc = client.get(ksvc_url).json()["status"]
        assert ready(ksvc)["status"] == "False", ksvc
        time.sleep(0.2)
    (folder / "gate").touch()
    st = wait_ready(client, "thrice")
    assert st["replicas"] == 3, st  # Ready came with the third replica (held a window once there)
    assert st["components"]["predictor"]["latestReadyRevision"] == "thrice-predictor-00001"
    assert v1(client, "thrice").json() == {"predictions": ["loaded"]}
    wait_for(lambda: status(client, "thrice")["replicas"] == 1, 30, "back to minReplicas once idle")
    assert ready(status(client, "thrice"))["status"] == "True"
    assert ready(client.get(ksvc_url).json()["status"])["status"] == "True"
    client.delete(API.format(ns="default") + "/thrice")


def test_a_rollout_hands_over_only_once_the_initial_scale_was_ready(client: httpx.Client,
                                                                     server: ServerProcess) -> None:
    """Knative routes to the latest *ready* revision: a new revision with ``initial-scale: 2`` (SLOW_START, one
    replica ready until the gate opens) does not take the traffic from the serving one while one of its two is
    ready; the InferenceService says RevisionNotReady. Gate open, the rollout completes."""
    train_iris(server.home / "pvc" / "models" / "handover")
    apply(client, manifest("handover", "pvc://models/handover"))
    wait_ready(client, "handover")
    folder, body = slow_start(server.home / "slow-handover", "handover", 2, max_replicas=2)
    apply(client, body)
    wait_for(lambda: status(client, "handover")["revisions"]["handover-predictor-00002"]["ready"] == 1, 90,
             "one replica of revision 2 ready")
    for _ in range(10):  # a few of the manager's ticks with one replica of two ready
        st = status(client, "handover")
        assert st["components"]["predictor"]["latestRolledoutRevision"] == "handover-predictor-00001", st
        assert (ready(st)["status"], ready(st)["reason"]) == ("False", "RevisionNotReady"), st["conditions"]
        assert v1(client, "handover").headers["x-kfbox-revision"] == "handover-predictor-00001"
        time.sleep(0.2)
    (folder / "gate").touch()
    wait_for(lambda: status(client, "handover")["components"]["predictor"].get("latestRolledoutRevision")
             == "handover-predictor-00002", 90, "rollout of revision 2")
    reply = v1(client, "handover")
    assert (reply.headers["x-kfbox-revision"], reply.json()) == ("handover-predictor-00002",
                                                                 {"predictions": ["loaded"]})
    client.delete(API.format(ns="default") + "/handover")


def test_a_canary_gets_its_share_only_once_its_initial_scale_was_ready(client: httpx.Client,
                                                                         server: ServerProcess) -> None:
    """A 50% canary with ``initial-scale: 2`` (SLOW_START) sends its share to the stable revision while one of
    its two replicas is ready, as Knative routes only to ready revisions; gate open, it takes its half."""
    train_iris(server.home / "pvc" / "models" / "halves")
    apply(client, manifest("halves", "pvc://models/halves"))
    wait_ready(client, "halves")
    folder, body = slow_start(server.home / "slow-canary", "halves", 2, max_replicas=2, canary_traffic_percent=50)
    apply(client, body)
    wait_for(lambda: status(client, "halves")["revisions"]["halves-predictor-00002"]["ready"] == 1, 90,
             "one replica of the canary ready")
    assert revision_share(client, "halves", 20) == {"halves-predictor-00001": 20}
    (folder / "gate").touch()
    wait_for(lambda: status(client, "halves")["revisions"]["halves-predictor-00002"]["ready"] == 2, 90,
             "both replicas of the canary ready")
    assert revision_share(client, "halves", 20) == {"halves-predictor-00001": 10, "halves-predictor-00002": 10}
    client.delete(API.format(ns="default") + "/halves")
