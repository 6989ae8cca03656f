"""A deployment's page against a real ``kfbox up`` serving a real replica: the "try it" form of a
V2 deployment built from the model's own metadata (``GET /v2/models/NAME``), and the replica log
followed live over Server-Sent Events and still readable after the replica stopped.

The model is the user's own kserve ``Model`` class (``serving.kfbox.io/model-class``) around a
trained iris classifier: it declares its four inputs, as a model with a signature does (the stock
sklearn server declares none, and keeps the V1 form): tests/ui/iris_v2.py."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.serving.helpers import API, apply, kfbox, status, train_iris, wait_for, wait_ready
from tests.support import ServerProcess
from tests.ui.iris_v2 import iris_v2_manifest, write_iris_v2


@pytest.fixture(scope="module")
def http(server: ServerProcess) -> Iterator[httpx.Client]:
    with server.client() as client:
        yield client


@pytest.fixture(scope="module")
def deployed(server: ServerProcess, http: httpx.Client) -> str:
    code = write_iris_v2(server.home / "code")
    train_iris(server.home / "pvc" / "models" / "iris")
    train_iris(server.home / "pvc" / "models" / "iris-again")
    apply(http, iris_v2_manifest("pvc://models/iris", code))
    wait_ready(http, "iris-v2")
    return "/deployments/default/iris-v2"


def csrf(http: httpx.Client, page: str) -> str:
    http.get(page, headers={"Accept": "text/html"})
    return str(http.cookies.get("kfbox_csrf"))


def test_v2_form_has_the_models_inputs_and_predicts_the_class(server: ServerProcess, http: httpx.Client,
                                                              deployed: str) -> None:
    body = http.get(deployed + ".json").json()
    assert [(f["label"], f["datatype"]) for f in body["fields"]] == [
        ("sepal_length", "FP64"), ("sepal_width", "FP64"), ("petal_length", "FP64"), ("petal_width", "FP64")]
    html = http.get(deployed, headers={"Accept": "text/html"}).text
    assert re.search(r'<label for="x2">petal_length <span class="muted">FP64</span></label>', html)
    assert "more features" not in html and "/v2/models/iris-v2/infer" in html  # the curl is the V2 request
    token = csrf(http, deployed)
    form = {"csrf_token": token, "features": "4", "labels": "setosa,versicolor,virginica",
            "x0": "6.7", "x1": "3.0", "x2": "5.2", "x3": "2.3"}
    reply = http.post(deployed + "/predict", data=form, headers={"Origin": server.url})
    assert reply.status_code == 200, reply.text[-600:]
    assert re.search(r'<strong class="prediction">virginica</strong>', reply.text)
    setosa = http.post(deployed + "/predict", data={**form, "x0": "5.1", "x1": "3.5", "x2": "1.4", "x3": "0.2"},
                       headers={"Origin": server.url})
    assert re.search(r'<strong class="prediction">setosa</strong>', setosa.text)
    bad = http.post(deployed + "/predict", data={**form, "x3": "wide"}, headers={"Origin": server.url})
    assert bad.status_code == 400 and "petal_width is a FP64: enter a number" in bad.text


def read_events(lines: Iterator[str], until: str, timeout: float = 30) -> list[dict[str, Any]]:
    """SSE events from a stream's ``lines`` until one's text contains ``until``."""
    events: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout
    for line in lines:
        if line.startswith("data: "):
            events.append(json.loads(line[6:]))
            if until in events[-1]["text"]:
                return events
        assert time.monotonic() < deadline, events
    raise AssertionError(f"the stream ended without {until!r}: {events}")


def test_replica_log_is_followed_live_and_kept_after_the_replica_stops(server: ServerProcess, http: httpx.Client,
                                                                       deployed: str) -> None:
    page = http.get(deployed + ".json").json()
    first = page["log_files"][-1]  # the live replica's, which the stream follows (newest last; a replica
    # restarted meanwhile, e.g. a missed health check on a loaded machine, leaves its earlier log listed too)
    with http.stream("GET", deployed + "/logs/stream", timeout=httpx.Timeout(5, read=25)) as stream:
        assert stream.headers["content-type"].startswith("text/event-stream")
        infer = {"inputs": [{"name": n, "datatype": "FP64", "shape": [1, 1], "data": [v]}
                            for n, v in zip(["sepal_length", "sepal_width", "petal_length", "petal_width"],
                                            [6.2, 2.9, 4.3, 1.3], strict=True)]}
        tail = None
        lines = stream.iter_lines()
        for line in lines:  # the bounded tail first: what the replica wrote so far
            if line.startswith("data: "):
                tail = json.loads(line[6:])
                break
        assert tail and tail["tail"] and tail["offset"] > 0
        reply = http.post("/serving/default/iris-v2/v2/models/iris-v2/infer", json=infer)
        assert reply.status_code == 200, reply.text
        live = read_events(lines, "[[6.2, 2.9, 4.3, 1.3]]")
        assert not live[-1]["tail"] and live[-1]["offset"] > tail["offset"]

    # a new revision replaces the replica; the old one's log stays listed and readable
    patch = {"spec": {"predictor": {"model": {"storageUri": "pvc://models/iris-again"}}}}
    changed = http.patch(API.format(ns="default") + "/iris-v2", json=patch,
                         headers={"Content-Type": "application/merge-patch+json"})
    assert changed.status_code == 200, changed.text
    wait_for(lambda: "iris-v2-predictor-00002" in status(http, "iris-v2").get("revisions", {})
             and len(status(http, "iris-v2")["revisions"]) == 1, 90, "the first revision's replica to stop")
    wait_ready(http, "iris-v2")
    files = [f["name"] for f in http.get(deployed + ".json").json()["log_files"]]
    assert first["name"] in files and len(files) >= 2
    old = http.get(deployed + "/logs/raw", params={"file": first["name"]})
    assert old.status_code == 200 and "scored 1 row(s): [[6.2, 2.9, 4.3, 1.3]]" in old.text
    outside = http.get(deployed + "/logs/raw", params={"file": "../../server.json"})
    assert outside.status_code == 404 and "has no log" in outside.text


def test_without_the_data_plane_the_snippets_use_the_gateway_and_no_ingress_is_shown(
        server: ServerProcess, http: httpx.Client, deployed: str) -> None:
    """The default (``--data-plane python``): kfbox's own port is the only door; nothing about an ingress."""
    text = http.get(deployed, headers={"Accept": "text/html"}).text
    assert f"<code>curl -s {server.url}/serving/default/iris-v2/v" in text
    assert f"response = httpx.post(&#39;{server.url}/serving/default/iris-v2/v" in text
    assert "Ingress" not in text and "Data plane" not in text and "HAProxy" not in text and 'id="door"' not in text
    listed = http.get("/deployments", headers={"Accept": "text/html"}).text
    assert "Data plane" not in listed and "ingress" not in listed.lower()
    assert "ingress" not in http.get(deployed + ".json").text and "data_plane" not in http.get("/deployments.json").text
    assert "ingress_url" not in http.get("/healthz").json()
    shown = kfbox("serve", "get", "iris-v2", url=server.url)
    assert shown.returncode == 0, shown.stderr
    assert f"{server.url}/serving/default/iris-v2" in shown.stdout
    assert "ingress" not in shown.stdout and "data plane" not in shown.stdout


def test_the_page_and_serve_get_say_what_the_deployment_scales_on(server: ServerProcess, http: httpx.Client,
                                                                  deployed: str) -> None:
    """No scaleMetric in the manifest: Knative's default, concurrency, with its default target of 100, scaled at
    Knative's default target utilization of 70%."""
    text = http.get(deployed, headers={"Accept": "text/html"}).text
    assert ("Autoscaling on concurrency: target 100 requests in flight a replica (scaled at 70%: 70); min 1, max 1 "
            "replicas; 1 ready of 1 desired.") in text
    shown = kfbox("serve", "get", "iris-v2", url=server.url)
    assert shown.returncode == 0, shown.stderr
    assert "concurrency, target 100 requests in flight a replica (scaled at 70%: 70); 1-1 replicas" in shown.stdout
