"""Waiting for an InferenceService to serve its newest revision, as the CLI and the workflows do.

Ready alone is not enough on a cluster: while a new revision starts, the old one keeps the service
Ready, so a caller that just applied a change also wants ``latestReadyRevision`` to have caught up with
``latestCreatedRevision``. A model that failed to load is an error at once, with its reason, rather
than a wait until the timeout.

Example::

    isvc = wait_ready(ApiClient.connect(), "default", "iris", timeout=120)
"""

from __future__ import annotations

import time
from typing import Any

from kfbox.apis import SERVING
from kfbox.client.api import ApiClient
from kfbox.errors import KfboxError, NotFound, Unavailable


def wait_ready(api: ApiClient, namespace: str, name: str, timeout: float, poll: float = 0.2) -> dict[str, Any]:
    """The InferenceService once its newest revision is Ready; :class:`KfboxError` when its model failed to
    load, :class:`Unavailable` after ``timeout`` seconds (it may not exist yet: a pipeline may deploy it)."""
    deadline = time.monotonic() + timeout
    status: dict[str, Any] = {}
    while True:
        try:
            isvc: dict[str, Any] = api.get(f"{SERVING}/namespaces/{namespace}/inferenceservices/{name}")
        except NotFound:
            isvc = {}
        status = isvc.get("status") or {}
        conditions = {c.get("type"): c for c in status.get("conditions") or []}
        predictor = (status.get("components") or {}).get("predictor") or {}
        if (isvc and conditions.get("Ready", {}).get("status") == "True"
                and predictor.get("latestReadyRevision") == predictor.get("latestCreatedRevision")):
            return isvc
        failed = next((c for c in (conditions.get("LatestDeploymentReady"), conditions.get("Ready"))
                       if c and c.get("reason") == "ModelLoadFailed"), None)
        if failed is not None:
            raise KfboxError(f"InferenceService {namespace}/{name} failed to load its model: {failed.get('message')}. "
                             f"See: kfbox serve logs {name} -n {namespace}")
        if time.monotonic() > deadline:
            break
        time.sleep(poll)
    raise Unavailable(f"InferenceService {namespace}/{name} was not Ready within {timeout:.0f}s: "
                      f"{status or 'not found'}. See why with: kfbox serve get {name} -n {namespace}")
