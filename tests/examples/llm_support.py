"""Shared by the LLM modules of this package and their conftest: the namespace, and waiting on a service."""

from __future__ import annotations

import time

import httpx

NAMESPACE = "kubeflow-user-example-com"
SERVICES = f"/apis/serving.kserve.io/v1beta1/namespaces/{NAMESPACE}/inferenceservices"


def ready_condition(http: httpx.Client, name: str, timeout: float) -> dict[str, str]:
    """The InferenceService's Ready condition once it is True or the model failed to load."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = http.get(f"{SERVICES}/{name}").json().get("status", {})
        ready = {c["type"]: c for c in status.get("conditions", [])}.get("Ready")
        if ready and (ready["status"] == "True" or ready.get("reason") == "ModelLoadFailed"):
            return dict(ready)
        time.sleep(0.2)
    raise AssertionError(f"{name} was neither Ready nor failed in {timeout}s")
