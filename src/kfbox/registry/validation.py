"""Request bodies checked against upstream's schemas (:mod:`kfbox.registry.spec`), compiled.

A body of kind ``ModelVersion`` sent to a create route is checked against the document's
``ModelVersionCreate`` (``update``: ``ModelVersionUpdate``, ``full``: ``ModelVersion``) with a
validator ``fastjsonschema`` compiled on first use and kept. The answers are upstream's Go
server's, which is as strict as the document says and stricter where noted:

* a required field missing or empty: 422 ``required field 'name' is zero value.`` (Go's
  ``AssertXRequired``, whose wording upstream's client tests compare);
* a field the schema does not declare: 400 ``json: unknown field "colour"`` (Go decodes with
  ``DisallowUnknownFields``);
* any other mismatch -- a wrong JSON type (no coercion: ``"5"`` is not a number), a value
  outside an enum, an id that is not a positive number, a custom property without its
  ``metadataType`` -- one 400 that lists every problem (a compiled validator stops at the
  first, so a refused body is checked again property by property to name them all).

kfbox adds what no database could store: names, externalIds and custom property keys
follow :func:`kfbox.names.name_problem` (NUL cannot be stored in PostgreSQL, a name longer
than the column fails on PostgreSQL and MySQL), and ``NaN``/``Infinity`` -- not JSON, a 400
from Go's decoder too -- are refused naming their field. An artifact body's ``artifactType``
must name its own kind (the discriminator upstream's client reads back).

Example::

    fields = validate(MODEL_VERSION, "create", {"name": "v1", "registeredModelId": "3"})
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from kfbox.errors import InvalidInput
from kfbox.names import name_problem, normalize_name
from kfbox.parsing import load_json
from kfbox.registry import kinds, loop, spec
from kfbox.registry.kinds import Kind

if TYPE_CHECKING:
    import fastjsonschema

SUFFIX = {"create": "Create", "update": "Update", "full": ""}
Validator = Callable[[Any], Any]


class MissingRequired(InvalidInput):
    """A required field is absent or empty: 422, as upstream's server answers."""

    status_code = 422


class _NotJson:
    """What ``NaN``/``Infinity`` decode to: no JSON type, so the schema names the field it is in."""

    def __repr__(self) -> str:
        return "NaN"


class Shape:
    """One body schema: its fields, its required fields and its compiled validators."""

    def __init__(self, name: str) -> None:
        import fastjsonschema  # on the first body of this kind, not at start

        self.name = name
        self.schema = spec.body_schema(name)
        self.fields = frozenset(self.schema.get("properties", ()))
        self.required = tuple(self.schema.get("required", ()))
        self.check: Validator = fastjsonschema.compile(self.schema)
        self._field_checks: dict[str, Validator] = {}

    def field_check(self, field: str) -> Validator:
        """A validator of one property alone, to list every problem of a refused body."""
        import fastjsonschema

        if field not in self._field_checks:
            loop.decline("compiling a validator")
            self._field_checks[field] = fastjsonschema.compile({
                "type": "object", "properties": {field: self.schema["properties"][field]},
                "definitions": self.schema.get("definitions", {})})
        return self._field_checks[field]

    def problems(self, body: dict[str, Any]) -> list[str]:
        import fastjsonschema

        try:
            self.check(body)
            return []
        except fastjsonschema.JsonSchemaValueException as first:
            found = []
            for field in body:
                try:
                    self.field_check(field)({field: body[field]})
                except fastjsonschema.JsonSchemaValueException as exc:
                    found.append(_message(exc))
            return found or [_message(first)]


_SHAPES: dict[str, Shape] = {}


def shape(schema_name: str) -> Shape:
    """The compiled shape, compiled on first use (in a worker thread: ~0.1-0.8 s, not on the event loop)."""
    found = _SHAPES.get(schema_name)
    if found is None:
        loop.decline(f"compiling {schema_name}")
        found = _SHAPES[schema_name] = Shape(schema_name)
    return found


def validate(kind: Kind, variant: str, body: Any) -> dict[str, Any]:
    """The body's fields by wire name (nulls dropped, names in NFC), or InvalidInput listing every problem."""
    schema_name = kind.name + SUFFIX[variant]
    if not isinstance(body, dict):
        raise InvalidInput(f"Invalid {schema_name}: the body must be a JSON object, not {_json_type(body)}.")
    given = {key: value for key, value in body.items() if value is not None}
    body_shape = shape(schema_name)
    # Go's decoder refuses an unknown field before AssertXRequired runs, so that check comes first
    unknown = next((key for key in body if key not in body_shape.fields), None)
    if unknown is not None:
        raise InvalidInput(f"json: unknown field {json.dumps(unknown[:60])}")
    for key in body_shape.required:
        if given.get(key) in (None, ""):
            raise MissingRequired(f"required field '{key}' is zero value.")
    problems = body_shape.problems(given) + _storable(kind, given)
    if problems:
        raise InvalidInput(f"Invalid {schema_name}: " + "; ".join(problems[:10]) + ".")
    if isinstance(given.get("name"), str):
        given["name"] = normalize_name(given["name"])
    return given


def _storable(kind: Kind, body: dict[str, Any]) -> list[str]:
    """kfbox's additions to the schema (module docstring): what no database could store."""
    out = []
    for field in ("name", "externalId"):
        problem = name_problem(body[field]) if isinstance(body.get(field), str) else None
        if problem:
            out.append(f"{field} {problem}")
    custom = body.get("customProperties")
    for key in custom if isinstance(custom, dict) else ():
        problem = name_problem(key)
        if problem:
            out.append(f"customProperties key {key[:40]!r} {problem}")
    if kind.is_artifact and body.get("artifactType", kind.kind) != kind.kind:
        out.append(f"artifactType must be {kind.kind!r} here")
    return out


def _message(exc: fastjsonschema.JsonSchemaValueException) -> str:
    text = exc.message.removeprefix("data.").removeprefix("data ")
    return text.replace("must not contain {", "must not contain the unknown field(s) {")[:300]


def _json_type(value: Any) -> str:
    names = {bool: "a boolean", int: "an integer", float: "a number", str: "a string", list: "a list",
             dict: "an object", type(None): "null"}
    return names.get(type(value), type(value).__name__)


def artifact_kind(body: Any, default: Kind | None = None) -> Kind:
    """The artifact kind a polymorphic ``Artifact`` body names with ``artifactType`` (its discriminator)."""
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
    if b"NaN" in body or b"Infinity" in body:  # Python reads them; JSON has no such numbers
        value = json.loads(body, parse_constant=lambda _: _NotJson())
    if b"\\ud" in body.lower():  # escaped lone surrogates decode, but no database can store them
        try:
            json.dumps(value, ensure_ascii=False).encode("utf-8")
        except UnicodeError as exc:
            raise InvalidInput(f"The request body is not valid JSON text: {exc}.") from exc
    return value
