"""The OpenAPI description of the registry routes, merged into the server's ``/openapi.json``.

Schemas come from the same field tables the validator uses (:data:`validation.SHAPES`),
so the document describes exactly what the server accepts.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from fastapi import FastAPI

from kfbox.registry import kinds
from kfbox.registry.validation import INT_VALUE_RE, METADATA_FIELDS, SHAPES

TAG = "ModelRegistryService"
LIST_PARAMS = ("filterQuery", "pageSize", "orderBy", "sortOrder", "nextPageToken")
_PARAM_SCHEMAS: dict[str, dict[str, Any]] = {
    "orderBy": {"type": "string", "enum": ["CREATE_TIME", "LAST_UPDATE_TIME", "ID"]},
    "sortOrder": {"type": "string", "enum": ["ASC", "DESC"]},
    "artifactType": {"type": "string", "enum": list(kinds.ARTIFACT_KINDS)},
}


@dataclasses.dataclass(frozen=True)
class Operation:
    method: str
    path: str
    summary: str
    response: str                 # schema name of the success body
    status: int = 200
    body: str | None = None       # schema name of the request body
    query: tuple[str, ...] = ()


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def components() -> dict[str, Any]:
    schemas: dict[str, Any] = {
        "Error": {"type": "object", "required": ["code", "message"],
                  "properties": {"code": {"type": "string"}, "message": {"type": "string"}}},
    }
    value_types = {"string": {"type": "string"}, "number": {"type": "number"}, "boolean": {"type": "boolean"},
                   "int-string": {"type": "string", "pattern": INT_VALUE_RE.pattern}}
    for name, fields in METADATA_FIELDS.items():
        props: dict[str, Any] = {field: value_types[type_] for field, type_ in fields.items()}
        props["metadataType"] = {"type": "string", "enum": [name]}
        schemas[name] = {"type": "object", "required": [*fields, "metadataType"], "properties": props,
                         "additionalProperties": False}
    schemas["MetadataValue"] = {"oneOf": [_ref(n) for n in METADATA_FIELDS],
                                "discriminator": {"propertyName": "metadataType"}}
    for kind in kinds.ALL_KINDS:
        for variant, suffix in (("create", "Create"), ("update", "Update"), ("full", "")):
            spec = SHAPES[(kind.kind, variant)]
            schemas[kind.name + suffix] = {
                "type": "object", "additionalProperties": False,
                "required": [name for name, (_, required, _) in spec.items() if required],
                "properties": {name: schema for name, (_, _, schema) in spec.items()}}
        schemas[kind.name + "List"] = {
            "type": "object", "required": ["items", "nextPageToken", "pageSize", "size"],
            "properties": {"items": {"type": "array", "items": _ref(kind.name)},
                           "nextPageToken": {"type": "string"}, "pageSize": {"type": "integer"},
                           "size": {"type": "integer"}}}
    for suffix in ("", "Create", "Update"):
        schemas["Artifact" + suffix] = {
            "oneOf": [_ref(k.name + suffix) for k in kinds.ARTIFACT_KINDS.values()],
            "discriminator": {"propertyName": "artifactType",
                              "mapping": {k.kind: f"#/components/schemas/{k.name}{suffix}"
                                          for k in kinds.ARTIFACT_KINDS.values()}}}
    schemas["ArtifactList"] = {**schemas["ModelArtifactList"],
                               "properties": {**schemas["ModelArtifactList"]["properties"],
                                              "items": {"type": "array", "items": _ref("Artifact")}}}
    return schemas


def paths(prefix: str, operations: list[Operation]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    errors = {str(code): {"description": text, "content": {"application/json": {"schema": _ref("Error")}}}
              for code, text in ((400, "Bad request"), (401, "Unauthorized"), (404, "Not found"),
                                 (409, "Conflict"))}
    for op in operations:
        full = prefix + op.path
        params = [{"name": "id", "in": "path", "required": True, "schema": {"type": "string"}}] if "{id}" in op.path \
            else []
        params += [{"name": q, "in": "query", "required": False, "schema": _PARAM_SCHEMAS.get(q, {"type": "string"})}
                   for q in op.query]
        entry: dict[str, Any] = {
            "tags": [TAG], "summary": op.summary, "parameters": params,
            "operationId": (op.method + full).replace("/", "_").replace("{", "").replace("}", ""),
            "responses": {str(op.status): {"description": "OK",
                                           "content": {"application/json": {"schema": _ref(op.response)}}},
                          **errors}}
        if op.body:
            entry["requestBody"] = {"required": True, "content": {"application/json": {"schema": _ref(op.body)}}}
        out.setdefault(full, {})[op.method.lower()] = entry
    return out


def publish(app: FastAPI, documents: list[tuple[str, list[Operation]]]) -> None:
    """Wrap ``app.openapi`` so the generated document also lists the registry routes."""
    previous = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        schema = previous()
        for prefix, operations in documents:
            schema.setdefault("paths", {}).update(paths(prefix, operations))
        schema.setdefault("components", {}).setdefault("schemas", {}).update(components())
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
