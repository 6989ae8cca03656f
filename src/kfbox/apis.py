"""What the server and its clients agree on: where each API is mounted, and when a run is over.

The server mounts its routes at these paths and every client (the CLI, workflows, the
dashboard's links, remote targets) builds URLs from them, so a path is written once.

Example::

    api.get(f"{KFP}/runs/{run_id}")
    if body["state"] in FINAL_STATES: ...
"""

from __future__ import annotations

# KFP v2beta1, also under /pipeline (kfp.Client(host=".../pipeline"), the cluster gateway's path)
KFP = "/apis/v2beta1"
KFP_PREFIXES = (KFP, "/pipeline" + KFP)

# Model Registry REST: v1alpha3 is what the upstream client and Kubeflow 26.03 clusters use
REGISTRY = "/api/model_registry/v1alpha3"
REGISTRY_V1 = "/api/model_registry/v1"

# KServe InferenceServices with the Kubernetes API's conventions
SERVING_GROUP = "serving.kserve.io"
SERVING_VERSION = "v1beta1"
SERVING_API_VERSION = f"{SERVING_GROUP}/{SERVING_VERSION}"
SERVING = f"/apis/{SERVING_API_VERSION}"

# a run (or task) in one of these states changes no more (KFP's runtime states)
FINAL_STATES = ("SUCCEEDED", "FAILED", "CANCELED", "SKIPPED")
