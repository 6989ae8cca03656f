"""The upstream Model Registry OpenAPI document: what the registry serves and checks bodies against.

kfbox does not describe the registry API itself: it ships upstream's document
(``model-registry.yaml`` beside this module, Apache-2.0, see its header) and

* serves it at ``<prefix>/openapi.json`` -- unchanged under ``/api/model_registry/v1alpha3``;
  under ``/v1`` (the prefix of clients 0.3.15+) with the paths moved to that prefix, without
  the Experiment paths that prefix does not have, and with :data:`V1_STEP` (below);
* turns its component schemas into plain JSON Schema (:func:`body_schema`) for
  :mod:`kfbox.registry.validation` to compile.

Everything is read on first use, never at ``kfbox up``: YAML parsing and schema building
cost ~40 ms that start-up does not pay.
"""

from __future__ import annotations

import copy
import functools
from pathlib import Path
from typing import Any

from kfbox.apis import REGISTRY, REGISTRY_V1

SPEC_FILE = Path(__file__).with_name("model-registry.yaml")
UPSTREAM_PREFIX = REGISTRY
V1_STEP: dict[str, Any] = {"anyOf": [{"type": "integer", "format": "int64"},
                                     {"type": "string", "format": "int64", "pattern": "^-?[0-9]{1,18}$"}]}
"""``Metric.step``: an integer in the v1alpha3 document, a string holding one in what clients
0.3.15+ send and read (their generated ``mr_openapi`` models say ``StrictStr``). Both are accepted
on both prefixes; the ``/v1`` document says so."""
# keywords that describe rather than constrain; ``default`` would make fastjsonschema fill bodies in
_DROPPED = frozenset({"description", "example", "examples", "readOnly", "writeOnly", "default", "format",
                      "discriminator", "externalDocs", "xml", "deprecated", "title"})


@functools.cache
def document() -> dict[str, Any]:
    """Upstream's document as parsed (shared: copy before changing it)."""
    import yaml

    loaded: dict[str, Any] = yaml.load(SPEC_FILE.read_text(encoding="utf-8"), Loader=yaml.CSafeLoader)
    return loaded


@functools.cache
def served(prefix: str) -> dict[str, Any]:
    """The document served at ``prefix``/openapi.json."""
    doc = document()
    if prefix == UPSTREAM_PREFIX:
        return doc
    if prefix != REGISTRY_V1:
        raise KeyError(prefix)
    out = copy.deepcopy(doc)
    out["paths"] = {REGISTRY_V1 + path.removeprefix(UPSTREAM_PREFIX): item for path, item in doc["paths"].items()
                    if "/experiment" not in path}
    out["components"]["schemas"]["MetricUpdate"]["allOf"][1]["properties"]["step"] = V1_STEP
    return out


@functools.cache
def body_schema(name: str) -> dict[str, Any]:
    """Component ``name`` as self-contained JSON Schema (draft 7), as upstream's Go server applies it.

    * ``allOf`` is merged into one object (the properties and required fields of all parts);
      other ``$ref``s point into ``definitions``, so a shared schema (``MetadataValue``) is
      compiled once, not at every place it is used;
    * every object with declared properties refuses others: the Go server decodes bodies with
      ``DisallowUnknownFields``, so ``{"colour": "red"}`` is a 400 there too;
    * a ``discriminator`` picks the branch its property names (``metadataType``, ``artifactType``),
      written as ``if``/``then`` so one compiled check does it, with the property's values as an enum;
    * ``Metric.step`` is :data:`V1_STEP`.
    """
    schemas = copy.deepcopy(document()["components"]["schemas"])
    schemas["MetricUpdate"]["allOf"][1]["properties"]["step"] = V1_STEP
    definitions: dict[str, Any] = {}
    out = _Flattener(schemas, definitions).flatten(schemas[name])
    return {**out, "definitions": definitions} if definitions else out


class _Flattener:
    def __init__(self, schemas: dict[str, Any], definitions: dict[str, Any]) -> None:
        self.schemas, self.definitions = schemas, definitions

    def ref(self, node: dict[str, Any]) -> dict[str, Any]:
        """A schema used in place: a ``$ref`` stays one (into ``definitions``), the rest is flattened."""
        if "$ref" not in node:
            return self.flatten(node)
        name = node["$ref"].rsplit("/", 1)[1]
        if name not in self.definitions:
            self.definitions[name] = {}  # a recursive reference finds it while it is built
            self.definitions[name] = self.flatten(self.schemas[name])
        return {"$ref": f"#/definitions/{name}"}

    def flatten(self, node: dict[str, Any]) -> dict[str, Any]:
        if "$ref" in node:
            return self.flatten(self.schemas[node["$ref"].rsplit("/", 1)[1]])
        if "discriminator" in node:
            return self.discriminated(node)
        out: dict[str, Any] = {}
        for part in node.get("allOf", []):
            _merge(out, self.flatten(part))
        own = {key: value for key, value in node.items() if key not in _DROPPED and key != "allOf"}
        if "properties" in own:
            own["properties"] = {name: self.ref(prop) for name, prop in own["properties"].items()}
        for key in ("items", "additionalProperties"):
            if isinstance(own.get(key), dict):
                own[key] = self.ref(own[key])
        for key in ("oneOf", "anyOf"):
            if key in own:
                own[key] = [self.ref(branch) for branch in own[key]]
        if own.pop("nullable", False) and "type" in own:
            own["type"] = [own["type"], "null"]
        _merge(out, own)
        if "properties" in out:
            out["type"] = "object"
            out.setdefault("additionalProperties", False)
        return out

    def discriminated(self, node: dict[str, Any]) -> dict[str, Any]:
        prop = node["discriminator"]["propertyName"]
        mapping = node["discriminator"].get("mapping") or {
            ref["$ref"].rsplit("/", 1)[1]: ref["$ref"] for ref in node["oneOf"]}
        branches = [{"if": {"properties": {prop: {"const": value}}, "required": [prop]},
                     "then": self.ref({"$ref": ref})} for value, ref in mapping.items()]
        return {"type": "object", "required": [prop],
                "properties": {prop: {"type": "string", "enum": list(mapping)}}, "allOf": branches}


def _merge(into: dict[str, Any], part: dict[str, Any]) -> None:
    for key, value in part.items():
        if key == "properties":
            into.setdefault("properties", {}).update(value)
        elif key == "required":
            into["required"] = sorted({*into.get("required", ()), *value})
        else:
            into[key] = value
