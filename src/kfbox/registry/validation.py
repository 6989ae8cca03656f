"""Request-body validation for every kind, generated from :mod:`kfbox.registry.kinds`.

For each kind there are three shapes, as in the spec: ``create`` (``<Kind>Create``),
``update`` (``<Kind>Update``) and ``full`` (``<Kind>``, which two endpoints take as a
body). Unknown fields, wrong JSON types (no silent coercion: ``"5"`` is not a number),
ids that are not positive integers and names with control characters are refused with
one message listing every problem.

This is plain code rather than generated pydantic models on purpose: building ~50
models cost about a second of ``kfbox up`` start time.

Example::

    fields = validate(MODEL_VERSION, "create", {"name": "v1", "registeredModelId": "3"})
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable
from typing import Any, get_args

from kfbox.errors import InvalidInput
from kfbox.names import NAME_MAX, name_problem, normalize_name
from kfbox.parsing import load_json
from kfbox.registry import kinds
from kfbox.registry.kinds import Kind

ID_RE = re.compile(r"^[1-9][0-9]{0,8}$")
INT_VALUE_RE = re.compile(r"^-?([1-9][0-9]{0,8}|0)$")
ID_FIELDS = frozenset({"registeredModelId", "modelVersionId", "servingEnvironmentId", "experimentId",
                       "experimentRunId", "id"})
READ_ONLY = ("createTimeSinceEpoch", "lastUpdateTimeSinceEpoch")
METADATA_FIELDS: dict[str, dict[str, str]] = {
    "MetadataStringValue": {"string_value": "string"},
    "MetadataIntValue": {"int_value": "int-string"},
    "MetadataDoubleValue": {"double_value": "number"},
    "MetadataBoolValue": {"bool_value": "boolean"},
    "MetadataStructValue": {"struct_value": "string"},
    "MetadataProtoValue": {"type": "string", "proto_value": "string"},
}
STEP_RE = re.compile(r"^-?[0-9]{1,18}$")
Check = Callable[[Any], str | None]   # None when fine, else what is wrong


class MissingRequired(InvalidInput):
    """A required field is absent or empty: 422, as upstream's server answers."""

    status_code = 422


def check_text(value: Any) -> str | None:
    return None if isinstance(value, str) else f"must be a string, not {_json_type(value)}"


def check_name(value: Any) -> str | None:
    if not isinstance(value, str):
        return f"must be a string, not {_json_type(value)}"
    return name_problem(value)


def check_id(value: Any) -> str | None:
    if isinstance(value, str) and ID_RE.match(value):
        return None
    return f"must be an id: a string holding a positive whole number like \"1\" (got {json.dumps(value)[:40]})"


def check_number(value: Any) -> str | None:
    ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    return None if ok else f"must be a number, not {_json_type(value)}"


def check_step(value: Any) -> str | None:
    """An int64: a JSON integer (v1alpha3 clients) or a string holding one (v1 clients)."""
    if isinstance(value, int) and not isinstance(value, bool):
        ok = -(2**63) <= value < 2**63
    else:
        ok = isinstance(value, str) and STEP_RE.match(value) is not None
    return None if ok else f"must be a whole number (or a string holding one), not {json.dumps(value)[:40]}"


def check_string_list(value: Any) -> str | None:
    ok = isinstance(value, list) and all(isinstance(v, str) for v in value)
    return None if ok else "must be a list of strings"


def check_enum(choices: tuple[str, ...]) -> Check:
    def check(value: Any) -> str | None:
        return None if value in choices else f"must be one of {', '.join(choices)} (got {json.dumps(value)[:40]})"
    return check


def check_custom_properties(value: Any) -> str | None:
    if not isinstance(value, dict):
        return f"must be an object of property name -> value, not {_json_type(value)}"
    for key, item in value.items():
        problem = check_name(key)
        if problem:
            return f"key {key[:40]!r} {problem}"
        problem = _check_metadata(item)
        if problem:
            return f"{key!r}: {problem}"
    return None


def _check_metadata(item: Any) -> str | None:
    if not isinstance(item, dict) or item.get("metadataType") not in METADATA_FIELDS:
        return "must be an object with metadataType one of " + ", ".join(METADATA_FIELDS)
    expected = METADATA_FIELDS[item["metadataType"]]
    extra = set(item) - set(expected) - {"metadataType"}
    if extra:
        return f"unknown field(s) {', '.join(sorted(extra))} for {item['metadataType']}"
    for field, type_ in expected.items():
        if field not in item:
            return f"{item['metadataType']} needs {field}"
        value = item[field]
        if type_ == "number" and check_number(value):
            return f"{field} must be a number, not {_json_type(value)}"
        if type_ == "boolean" and not isinstance(value, bool):
            return f"{field} must be true or false, not {_json_type(value)}"
        if type_ == "string" and not isinstance(value, str):
            return f"{field} must be a string, not {_json_type(value)}"
        if type_ == "int-string" and not (isinstance(value, str) and INT_VALUE_RE.match(value)):
            return f"{field} must be a string holding an integer of up to 9 digits, like \"5\""
    return None


def _json_type(value: Any) -> str:
    names = {bool: "a boolean", int: "an integer", float: "a number", str: "a string", list: "a list",
             dict: "an object", type(None): "null"}
    return names.get(type(value), type(value).__name__)


TEXT: dict[str, Any] = {"type": "string"}
NAME: dict[str, Any] = {"type": "string", "minLength": 1, "maxLength": NAME_MAX}
ID: dict[str, Any] = {"type": "string", "pattern": ID_RE.pattern}
CUSTOM: dict[str, Any] = {"type": "object", "additionalProperties": {"$ref": "#/components/schemas/MetadataValue"}}


def _enum(choices: tuple[str, ...]) -> tuple[Check, dict[str, Any]]:
    return check_enum(choices), {"type": "string", "enum": list(choices)}


def _check_for(field: kinds.Field) -> tuple[Check, dict[str, Any]]:
    if field.wire in ID_FIELDS:
        return check_id, ID
    if field.type is kinds.Number:
        return check_number, {"type": "number"}
    if field.wire == "step":
        return check_step, {"oneOf": [{"type": "string", "pattern": STEP_RE.pattern}, {"type": "integer"}]}
    if field.type == list[str]:
        return check_string_list, {"type": "array", "items": TEXT}
    choices = get_args(field.type)
    if choices and all(isinstance(c, str) for c in choices):
        return _enum(choices)
    return check_text, TEXT


Spec = tuple[Check, bool, dict[str, Any]]   # check, required, JSON schema


def shape(kind: Kind, variant: str) -> dict[str, Spec]:
    """Field name -> (check, required, schema) for ``variant`` in create, update, full."""
    out: dict[str, Spec] = {}
    if variant != "update":
        out["name"] = (check_name, kind.name_required, NAME)
    out["description"] = (check_text, False, TEXT)
    out["externalId"] = (check_name, False, NAME)
    out["customProperties"] = (check_custom_properties, False, CUSTOM)
    if kind.state_field:
        check, schema = _enum(get_args(kind.state_type))
        out[kind.state_field] = (check, False, {**schema, "default": kind.default_state})
    if kind.is_artifact:
        check, schema = _enum((kind.kind,))
        out["artifactType"] = (check, False, {**schema, "default": kind.kind})
    if kind.parent_field and variant != "update":
        out[kind.parent_field] = (check_id, variant == "create", ID)
    for field in kind.fields:
        if variant == "update" and not field.update:
            continue
        check, schema = _check_for(field)
        out[field.wire] = (check, field.required and variant == "create", schema)
    if variant == "full":
        out["id"] = (check_id, False, {**ID, "readOnly": True})
        for wire in READ_ONLY:
            out[wire] = (check_text, False, {**TEXT, "readOnly": True})
    return out


SHAPES: dict[tuple[str, str], dict[str, Spec]] = {
    (k.kind, variant): shape(k, variant) for k in kinds.ALL_KINDS for variant in ("create", "update", "full")}


def validate(kind: Kind, variant: str, body: Any) -> dict[str, Any]:
    """The body's fields by wire name, or InvalidInput listing every problem."""
    if not isinstance(body, dict):
        raise InvalidInput(f"Invalid {kind.name}: the body must be a JSON object, not {_json_type(body)}.")
    fields = SHAPES[(kind.kind, variant)]
    unknown = next((key for key in body if key not in fields), None)
    if unknown is not None:
        # upstream's Go decoder (DisallowUnknownFields) words it so, and its client tests compare the text
        raise InvalidInput(f"json: unknown field {json.dumps(unknown[:60])}")
    problems = []
    for key, (check, required, _) in fields.items():
        if required and body.get(key) in (None, ""):
            # upstream: 422 with this exact wording, for a missing field and for an empty one alike
            raise MissingRequired(f"required field '{key}' is zero value.")
        if body.get(key) is None:
            continue
        problem = check(body[key])
        if problem:
            problems.append(f"{key}: {problem}")
    if problems:
        suffix = {"create": "Create", "update": "Update", "full": ""}[variant]
        raise InvalidInput(f"Invalid {kind.name}{suffix}: " + "; ".join(problems[:10]) + ".")
    fields_given = {key: value for key, value in body.items() if value is not None}
    if isinstance(fields_given.get("name"), str):
        fields_given["name"] = normalize_name(fields_given["name"])
    return fields_given


def artifact_kind(body: Any, default: Kind | None = None) -> Kind:
    """The artifact kind a polymorphic ``Artifact`` body names with ``artifactType``."""
    artifact_type = body.get("artifactType") if isinstance(body, dict) else None
    if artifact_type is None and default is not None:
        return default
    if artifact_type not in kinds.ARTIFACT_KINDS:
        raise InvalidInput(f"artifactType {json.dumps(artifact_type)[:40]} is missing or unknown; use one of "
                           + ", ".join(kinds.ARTIFACT_KINDS) + ".")
    return kinds.ARTIFACT_KINDS[artifact_type]


def parse_json(body: bytes, content_type: str | None) -> Any:
    """Decode a JSON request body; other content types and malformed JSON are 400s."""
    media = (content_type or "").split(";")[0].strip().lower()
    if media != "application/json" and not media.endswith("+json"):
        raise InvalidInput(f"Content-Type {media or '(none)'!r} is not accepted; send the body as JSON with "
                           "'Content-Type: application/json'.")
    value = load_json(body)
    if b"\\ud" in body.lower():  # escaped lone surrogates decode, but no database can store them
        try:
            json.dumps(value, ensure_ascii=False).encode("utf-8")
        except UnicodeError as exc:
            raise InvalidInput(f"The request body is not valid JSON text: {exc}.") from exc
    return value
