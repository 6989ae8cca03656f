"""The schemas ``kubectl explain`` shows for the read-only kinds use Kubernetes' own field names and types: each
field is checked against the model of the official ``kubernetes`` client (generated from the API server's
OpenAPI), so a misspelt or invented field fails here. Knative's Service has no model there; its fields are
checked against what kfbox serves in tests/serving/test_kubectl.py."""

from __future__ import annotations

import re
from typing import Any

import kubernetes.client
import pytest

from kfbox.serving.kube_openapi import document

TYPES = {"str": "string", "datetime": "string", "object": "string", "int": "integer", "bool": "boolean"}
"""The client's Python types as OpenAPI types (``object`` is an int-or-string such as maxSurge, shown as string)."""


def _mismatches(schema: dict[str, Any], model: str, at: str) -> list[str]:
    """Where ``schema`` departs from the client's ``model`` (a type name such as ``V1PodSpec``)."""
    if model.startswith("list["):
        return _mismatches(schema.get("items", {}), model[5:-1], at + "[]") if schema["type"] == "array" \
            else [f"{at}: {schema['type']}, upstream {model}"]
    if model.startswith("dict("):
        return [] if "additionalProperties" in schema else [f"{at}: not a map"]
    if model in TYPES:
        return [] if schema["type"] == TYPES[model] else [f"{at}: {schema['type']}, upstream {model}"]
    cls = getattr(kubernetes.client, model)
    by_json = {json: cls.openapi_types[py] for py, json in cls.attribute_map.items()}
    found = []
    for name, child in schema.get("properties", {}).items():
        if name not in by_json:
            found.append(f"{at}.{name}: not a field of {model}")
        else:
            found += _mismatches(child, by_json[name], f"{at}.{name}")
    return found


@pytest.mark.parametrize(("path", "model"), [
    ("api/v1", "V1Pod"), ("api/v1", "CoreV1Event"), ("apis/apps/v1", "V1Deployment"), ("apis/apps/v1", "V1ReplicaSet"),
    ("apis/autoscaling/v2", "V2HorizontalPodAutoscaler"), ("apis/autoscaling/v1", "V1HorizontalPodAutoscaler"),
])
def test_read_only_kinds_use_kubernetes_field_names_and_types(path: str, model: str) -> None:
    kind = re.sub(r"^(Core)?V\d+", "", model)
    (schema,) = [s for s in document(path)["components"]["schemas"].values()
                 if s["x-kubernetes-group-version-kind"][0]["kind"] == kind]
    assert _mismatches(schema, model, kind) == []
