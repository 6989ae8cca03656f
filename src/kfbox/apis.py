"""What the server and its clients agree on: where each API is mounted, and when a run is over.

The server mounts its routes at these paths and every client (the CLI, workflows, the
dashboard's links, remote targets) builds URLs from them, so a path is written once.

Example::

    api.get(f"{KFP}/runs/{run_id}")
    if body["state"] in FINAL_STATES: ...
"""

from __future__ import annotations

from typing import Any

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

# the Knative Service KServe makes for each InferenceService's predictor (read-only in kfbox)
KNATIVE_GROUP = "serving.knative.dev"
KNATIVE_VERSION = "v1"
KNATIVE_API_VERSION = f"{KNATIVE_GROUP}/{KNATIVE_VERSION}"
KNATIVE = f"/apis/{KNATIVE_API_VERSION}"

MODEL_NAME_ARG = "--model_name"  # the kserve ModelServer's argument naming the model in V1/V2 paths


def served_model(isvc: dict[str, Any]) -> str:
    """The model name in an InferenceService's ``/v1/models/NAME`` and ``/v2/models/NAME`` paths: the
    ``--model_name`` of its predictor's args (the server has checked them), else the service's name."""
    name = str((isvc.get("metadata") or {}).get("name") or "")
    predictor = (isvc.get("spec") or {}).get("predictor") or {}
    model: dict[str, Any] = next((predictor[key] for key in ("model", "sklearn", "xgboost", "lightgbm")
                                   if isinstance(predictor.get(key), dict)), {})
    args = [str(a) for a in model.get("args") or []]
    for i, arg in enumerate(args):
        if arg.startswith(MODEL_NAME_ARG + "="):
            name = arg.split("=", 1)[1]
        elif arg == MODEL_NAME_ARG and i + 1 < len(args):
            name = args[i + 1]
    return name


# a run (or task) in one of these states changes no more (KFP's runtime states)
FINAL_STATES = ("SUCCEEDED", "FAILED", "CANCELED", "SKIPPED")
