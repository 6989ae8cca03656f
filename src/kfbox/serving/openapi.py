"""OpenAPI documents for ``kubectl explain`` and apply: the InferenceService schema, per group-version.

The schema describes the fields kfbox acts on and keeps every other field
(``x-kubernetes-preserve-unknown-fields``), as KServe's CRD accepts the whole KServe spec.
The PATCH operations list merge, JSON and apply patches but not strategic merge, which tells
client-side ``kubectl apply`` to send a JSON merge patch (what it does for any CRD).
"""

from __future__ import annotations

from typing import Any

KIND_SCHEMA_NAME = "io.kserve.serving.v1beta1.InferenceService"
LIST_SCHEMA_NAME = "io.kserve.serving.v1beta1.InferenceServiceList"
GVK = [{"group": "serving.kserve.io", "version": "v1beta1", "kind": "InferenceService"}]
QUERY = [{"name": n, "in": "query", "schema": {"type": "string"}, "uniqueItems": True}
         for n in ("dryRun", "fieldManager", "fieldValidation", "force")]
"""kubectl checks the PATCH operation for ``fieldValidation`` (server-side validation) and ``dryRun``."""
PATCH_CONTENT = ("application/json-patch+json", "application/merge-patch+json", "application/apply-patch+yaml")


def _obj(description: str, properties: dict[str, Any] | None = None, open_: bool = True) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "object", "description": description}
    if properties:
        schema["properties"] = properties
    if open_:
        schema["x-kubernetes-preserve-unknown-fields"] = True
    return schema


def _field(kind: str, description: str) -> dict[str, Any]:
    return {"type": kind, "description": description}


def inference_service_schema() -> dict[str, Any]:
    model = _obj("The model to serve.", {
        "modelFormat": _obj("The model's format.", {"name": _field("string", "sklearn, xgboost, lightgbm or "
                                                                             "custom.")}),
        "storageUri": _field("string", "Where the model is: file://, pvc://NAME/path, s3://..., "
                                       "model-registry://MODEL/VERSION."),
    })
    predictor = _obj("The predictor: the model and how it scales.", {
        "model": model,
        "minReplicas": _field("integer", "Fewest replicas; 0 scales to zero when idle."),
        "maxReplicas": _field("integer", "Most replicas the autoscaler starts."),
        "scaleTarget": _field("integer", "What the autoscaler aims for per replica: in-flight requests "
                                         "(concurrency, default 100) or requests per second (rps, default 200)."),
        "scaleMetric": _field("string", "concurrency (default) or rps, as Knative's KPA."),
        "canaryTrafficPercent": _field("integer", "Percent of traffic for the latest revision while the "
                                                  "previous one keeps the rest."),
    })
    return {
        "type": "object",
        "description": "InferenceService serves a model over KServe's V1/V2 inference protocols.",
        "properties": {
            "apiVersion": _field("string", "serving.kserve.io/v1beta1"),
            "kind": _field("string", "InferenceService"),
            "metadata": _obj("Standard object metadata: name, namespace, labels, annotations."),
            "spec": _obj("The desired state.", {"predictor": predictor}),
            "status": _obj("The observed state: conditions (Ready), url, traffic per revision."),
        },
        "x-kubernetes-group-version-kind": GVK,
    }


def _operations(with_body: bool) -> dict[str, Any]:
    ref = {"$ref": f"#/components/schemas/{KIND_SCHEMA_NAME}"}
    ok = {"200": {"description": "OK", "content": {"application/json": {"schema": ref}}}}
    ops: dict[str, Any] = {"get": {"responses": ok, "x-kubernetes-group-version-kind": GVK[0],
                                   "x-kubernetes-action": "get"}}
    if with_body:
        ops["put"] = {"parameters": QUERY, "requestBody": {"content": {"application/json": {"schema": ref}}},
                      "responses": ok,
                      "x-kubernetes-group-version-kind": GVK[0], "x-kubernetes-action": "put"}
        ops["patch"] = {"parameters": QUERY,
                        "requestBody": {"content": {c: {"schema": {"type": "object"}} for c in PATCH_CONTENT}},
                        "responses": ok, "x-kubernetes-group-version-kind": GVK[0],
                        "x-kubernetes-action": "patch"}
        ops["delete"] = {"responses": {"200": {"description": "OK"}}, "x-kubernetes-group-version-kind": GVK[0],
                         "x-kubernetes-action": "delete"}
    return ops


def serving_document() -> dict[str, Any]:
    base = "/apis/serving.kserve.io/v1beta1/namespaces/{namespace}/inferenceservices"
    list_ref = {"$ref": f"#/components/schemas/{LIST_SCHEMA_NAME}"}
    return {
        "openapi": "3.0.0",
        "info": {"title": "kfbox", "version": "v1beta1"},
        "paths": {
            base: {"get": {"responses": {"200": {"description": "OK",
                                                 "content": {"application/json": {"schema": list_ref}}}},
                           "x-kubernetes-group-version-kind": GVK[0], "x-kubernetes-action": "list"},
                   "post": {"parameters": QUERY, "requestBody": {"content": {"application/json": {"schema": {
                       "$ref": f"#/components/schemas/{KIND_SCHEMA_NAME}"}}}},
                            "responses": {"201": {"description": "Created"}},
                            "x-kubernetes-group-version-kind": GVK[0], "x-kubernetes-action": "post"}},
            base + "/{name}": _operations(True),
            base + "/{name}/status": _operations(True),
        },
        "components": {"schemas": {
            KIND_SCHEMA_NAME: inference_service_schema(),
            LIST_SCHEMA_NAME: {"type": "object", "description": "A list of InferenceServices.",
                               "properties": {"items": {"type": "array", "items": {
                                   "$ref": f"#/components/schemas/{KIND_SCHEMA_NAME}"}}},
                               "x-kubernetes-group-version-kind": [{**GVK[0], "kind": "InferenceServiceList"}]},
        }},
    }


def core_document() -> dict[str, Any]:
    gvk = [{"group": "", "version": "v1", "kind": "Namespace"}]
    return {"openapi": "3.0.0", "info": {"title": "kfbox", "version": "v1"},
            "paths": {"/api/v1/namespaces/{name}": {"get": {"responses": {"200": {"description": "OK"}},
                                                            "x-kubernetes-group-version-kind": gvk[0]}}},
            "components": {"schemas": {"io.k8s.api.core.v1.Namespace": {
                "type": "object", "description": "Namespace groups InferenceServices.",
                "properties": {"metadata": _obj("Standard object metadata."),
                               "spec": _obj("Finalizers."), "status": _obj("phase: Active.")},
                "x-kubernetes-group-version-kind": gvk}}}}


def swagger_v2() -> dict[str, Any]:
    """A minimal Swagger 2.0 document (no InferenceService definition: apply then uses a merge patch)."""
    return {"swagger": "2.0", "info": {"title": "kfbox", "version": "v1.32.0"}, "paths": {}, "definitions": {}}
