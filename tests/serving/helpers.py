"""Shared by the serving tests: a real iris model, manifests built with the kserve SDK, waiting."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

import httpx

from tests.support import ServerProcess, run_cli

# kserve, kubernetes, sklearn and numpy are imported in the functions that use them: most serving test modules
# import this one, and every pytest worker imports every test module (~3 s of CPU for those four).


class SharedServer(NamedTuple):
    """The serving package's shared ``kfbox up`` (tests/serving/conftest.py's ``shared_server``)."""

    server: ServerProcess
    grpc_port: int
    """Its gRPC gateway's port (KFBOX_SERVING_GRPC_PORT)."""


SERVING = "/apis/serving.kserve.io/v1beta1"
API = SERVING + "/namespaces/{ns}/inferenceservices"
ROWS = [[5.1, 3.5, 1.4, 0.2], [6.2, 2.9, 4.3, 1.3], [6.7, 3.0, 5.2, 2.3]]


def train_iris(folder: Path, kind: str = "logistic") -> Any:
    """Train an iris classifier and save it as ``folder/model.joblib``; returns the model."""
    import joblib
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression
    from sklearn.tree import DecisionTreeClassifier

    features, labels = load_iris(return_X_y=True)
    model = (LogisticRegression(max_iter=500) if kind == "logistic" else DecisionTreeClassifier(max_depth=2))
    model.fit(features, labels)
    folder.mkdir(parents=True, exist_ok=True)
    joblib.dump(model, folder / "model.joblib")
    return model


def process_title(pid: int) -> str:
    """What ``ps`` shows for ``pid``: its command line, arguments joined by spaces."""
    return Path(f"/proc/{pid}/cmdline").read_bytes().rstrip(b"\0").replace(b"\0", b" ").decode()


def expected(model: Any, rows: list[list[float]] = ROWS) -> list[int]:
    import numpy as np

    return [int(v) for v in model.predict(np.array(rows))]


def manifest(name: str, storage_uri: str | None, *, fmt: str = "sklearn", namespace: str = "default",
             annotations: dict[str, str] | None = None, **predictor: Any) -> dict[str, Any]:
    """An InferenceService built with the upstream kserve SDK, serialised as kubectl would send it."""
    from kserve import (
        ApiClient,
        V1beta1InferenceService,
        V1beta1InferenceServiceSpec,
        V1beta1ModelFormat,
        V1beta1ModelSpec,
        V1beta1PredictorSpec,
        constants,
    )
    from kubernetes.client import V1ObjectMeta

    model = V1beta1ModelSpec(model_format=V1beta1ModelFormat(name=fmt), storage_uri=storage_uri)
    isvc = V1beta1InferenceService(
        api_version=constants.KSERVE_V1BETA1, kind=constants.KSERVE_KIND_INFERENCESERVICE,
        metadata=V1ObjectMeta(name=name, namespace=namespace, annotations=annotations),
        spec=V1beta1InferenceServiceSpec(predictor=V1beta1PredictorSpec(model=model, **predictor)))
    return ApiClient().sanitize_for_serialization(isvc)  # type: ignore[no-any-return]


def apply(client: httpx.Client, body: dict[str, Any]) -> dict[str, Any]:
    """Create (201), or replace at the current resourceVersion (200), as `kubectl replace` after a 409. A status
    update between the read and the replace (a replica became ready) makes that version stale: read again and
    retry, as client-go's RetryOnConflict does."""
    ns = body["metadata"].get("namespace", "default")
    reply = client.post(API.format(ns=ns), json=body)
    if reply.status_code == 409:
        path = API.format(ns=ns) + "/" + body["metadata"]["name"]
        for _ in range(5):
            version = client.get(path).json()["metadata"]["resourceVersion"]
            reply = client.put(path, json={**body, "metadata": {**body["metadata"], "resourceVersion": version}})
            if reply.status_code != 409:
                break
        assert reply.status_code == 200, reply.text
    else:
        assert reply.status_code == 201, reply.text
    return reply.json()  # type: ignore[no-any-return]


def delete(client: httpx.Client, name: str, namespace: str = "default") -> None:
    """Delete a service on a server other tests share: a service whose model fails to load is otherwise
    restarted (back-off up to 30 s, a kserve import each time) for the rest of that server's life."""
    reply = client.delete(API.format(ns=namespace) + f"/{name}")
    assert reply.status_code == 200, reply.text


def status(client: httpx.Client, name: str, namespace: str = "default") -> dict[str, Any]:
    reply = client.get(API.format(ns=namespace) + f"/{name}")
    assert reply.status_code == 200, reply.text
    return reply.json()["status"]  # type: ignore[no-any-return]


def ready(st: dict[str, Any]) -> dict[str, Any]:
    return next(c for c in st["conditions"] if c["type"] == "Ready")


def wait_for(check: Callable[[], Any], timeout: float = 60.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = check()
        if result:
            return result
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def wait_ready(client: httpx.Client, name: str, namespace: str = "default", timeout: float = 90.0) -> dict[str, Any]:
    def check() -> dict[str, Any] | None:
        st = status(client, name, namespace)
        return st if ready(st)["status"] == "True" else None
    return wait_for(check, timeout, f"{namespace}/{name} Ready")  # type: ignore[no-any-return]


def kfbox(*args: str, url: str) -> subprocess.CompletedProcess[str]:
    """Run the real CLI against the test server, in this process (tests.support.run_cli)."""
    return run_cli(*args, "--url", url)


def v1(client: httpx.Client, name: str, rows: list[list[float]] = ROWS, **kwargs: Any) -> httpx.Response:
    return client.post(f"/serving/default/{name}/v1/models/{name}:predict", json={"instances": rows}, **kwargs)
