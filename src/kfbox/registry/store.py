"""Registry storage: pure functions over a SQLAlchemy Core connection (reads and inserts) or an ORM
session (changes to a loaded row: :func:`get`, :func:`update`, :func:`attach`).

The routers and :class:`kfbox.registry.service.Registry` call these inside its transactions; a
registration is Core only, with no session: the session's unit of work, identity map and
transaction objects cost about as much CPU as the statements themselves. Uniqueness is left
to the database's constraints, and a violation becomes :class:`~kfbox.errors.Conflict` (409)
-- so two racing registrations of one version name give one 201 and one 409, never a 500.

Example::

    with db.write_core() as conn:
        model = create(conn, REGISTERED_MODEL, {"name": "iris"})
    to_wire(REGISTERED_MODEL, model)["id"]  # "1"
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Sequence
from typing import Any, Protocol, cast

from sqlalchemy import ColumnElement, Connection, Row, Select, Table, bindparam, insert, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from kfbox.clock import now_ms
from kfbox.errors import Conflict, InvalidInput, NotFound
from kfbox.names import NAME_MAX, normalize_name
from kfbox.registry.kinds import ARTIFACT_KINDS, BY_KIND, FAMILY_NAMES, Kind
from kfbox.registry.paging import Page, Paginator
from kfbox.registry.tables import Resource

_TABLE = cast(Table, Resource.__table__)
_COLUMNS = tuple(_TABLE.c)
# built once: the hot write path binds values to these instead of building (and coercing) a statement per call
_INSERT = insert(_TABLE)
_BY_ID = select(*_COLUMNS).where(_TABLE.c.id == bindparam("rid"))
# kinds upstream names with a UUID when created without a name (its converter's mapEntityNameWithUUIDGeneration)
GENERATED_NAMES = frozenset({*ARTIFACT_KINDS, "inference_service", "serve_model", "experiment_run"})
UUID_PREFIX = 37   # len("<uuid>:"), the prefix upstream gives a parentless artifact's name
MAX_ID = 2**31 - 1  # the id column is a 32-bit integer on PostgreSQL and MySQL
_COMMON = ("name", "externalId", "customProperties", "artifactType", "id", "createTimeSinceEpoch",
           "lastUpdateTimeSinceEpoch")


class Record(Protocol):
    """A stored entity as the API shows it: an ORM :class:`Resource`, a Core row, or a :class:`Created`."""

    @property
    def id(self) -> int: ...
    @property
    def family(self) -> str: ...
    @property
    def kind(self) -> str: ...
    @property
    def scope(self) -> int: ...
    @property
    def parent_id(self) -> int | None: ...
    @property
    def name(self) -> str | None: ...
    @property
    def external_id(self) -> str | None: ...
    @property
    def state(self) -> str | None: ...
    @property
    def created_ms(self) -> int: ...
    @property
    def updated_ms(self) -> int: ...
    @property
    def attrs(self) -> dict[str, Any]: ...
    @property
    def custom(self) -> dict[str, Any]: ...


@dataclasses.dataclass(frozen=True)
class Created:
    """The row :func:`create` inserted (a Core insert: no ORM object, no identity map, no unit of work)."""

    id: int
    family: str
    kind: str
    scope: int
    parent_id: int | None
    name: str | None
    external_id: str | None
    state: str | None
    created_ms: int
    updated_ms: int
    attrs: dict[str, Any]
    custom: dict[str, Any]


def to_wire(kind: Kind, row: Any) -> dict[str, Any]:
    """The JSON object the API returns for ``row`` (an ORM object or a Core row)."""
    out: dict[str, Any] = {"id": str(row.id)}
    if row.name is not None:
        out["name"] = row.name
    if row.external_id is not None:
        out["externalId"] = row.external_id
    out["createTimeSinceEpoch"] = str(row.created_ms)
    out["lastUpdateTimeSinceEpoch"] = str(row.updated_ms)
    if kind.is_artifact:
        out["artifactType"] = kind.kind
    if kind.state_field and row.state is not None:
        out[kind.state_field] = row.state
    if kind.parent_field and row.parent_id is not None:
        out[kind.parent_field] = str(row.parent_id)
    out.update(row.attrs)
    out["customProperties"] = {key: _custom_to_wire(value) for key, value in row.custom.items()}
    return out


def kind_of(row: Any) -> Kind:
    return BY_KIND[row.kind]


def _custom_to_wire(value: dict[str, Any]) -> dict[str, Any]:
    if value.get("metadataType") == "MetadataIntValue":
        return {**value, "int_value": str(value["int_value"])}
    return value


def _custom_from_wire(props: dict[str, Any] | None) -> dict[str, Any]:
    stored: dict[str, Any] = {}
    for key, value in (props or {}).items():
        if value.get("metadataType") == "MetadataIntValue":
            value = {**value, "int_value": int(value["int_value"])}
        stored[key] = value
    return stored


def describe(kind: Kind, row: Any) -> str:
    label = f"{kind.name} {row.id}"
    return f"{label} ({row.name!r})" if row.name is not None else label


def select_records() -> Select[Any]:
    """A Core select of whole rows (each a :class:`Record`), to narrow with ``.where()``."""
    return select(*_COLUMNS)


def get(session: Session, family: str, resource_id: int | str, kinds: Sequence[str] | None = None) -> Resource:
    """The entity with this id in ``family`` (and of one of ``kinds``), else NotFound; an ORM object, to change."""
    rid = parse_id(resource_id)
    row = session.get(Resource, rid)
    if row is None or row.family != family or (kinds is not None and row.kind not in kinds):
        raise _not_found(family, rid, kinds)
    return row


def read(conn: Connection, family: str, resource_id: int | str, kinds: Sequence[str] | None = None) -> Record:
    """As :func:`get`, read only: one Core select, no ORM object (what reads and parent lookups need)."""
    rid = parse_id(resource_id)
    row = conn.execute(_BY_ID, {"rid": rid}).first()
    if row is None or row.family != family or (kinds is not None and row.kind not in kinds):
        raise _not_found(family, rid, kinds)
    return cast(Record, row)  # a Row has the Record's attributes


def _not_found(family: str, rid: int, kinds: Sequence[str] | None) -> NotFound:
    what = FAMILY_NAMES[family] if kinds is None or len(kinds) != 1 else BY_KIND[kinds[0]].name
    # "not found" in the words, as upstream's server says it (its fuzz tests look for them in a 404)
    return NotFound(f"{what[0].upper()}{what[1:]} with id {rid} not found. List them with GET .../{family}s.")


def parse_id(raw: int | str, field: str = "id") -> int:
    """A resource id, 1..MAX_ID: any id in range is a lookup (404 when absent, as upstream answers its fuzz
    tests' random ten-digit ids); anything else is a 400."""
    text = str(raw)
    if not (text.isascii() and text.isdigit()) or text.startswith("0") or len(text) > 10 or int(text) > MAX_ID:
        raise InvalidInput(f"{field} {text[:40]!r} is not a valid id; ids are whole numbers from 1 to {MAX_ID}.")
    return int(text)


def find(conn: Connection, family: str, *, name: str | None = None, external_id: str | None = None,
         parent: str | None = None, kinds: Sequence[str] | None = None) -> Record:
    """``find_*`` lookup by name (+ parent id) or externalId; NotFound when absent."""
    if name is None and external_id is None:
        raise InvalidInput(f"Finding a {FAMILY_NAMES[family]} needs 'name' or 'externalId' as a query parameter.")
    stmt = select_records().where(Resource.family == family)
    if kinds is not None:
        stmt = stmt.where(Resource.kind.in_(kinds))
    if name is not None:
        stmt = stmt.where(Resource.name == normalize_name(name))
    if external_id is not None:
        stmt = stmt.where(Resource.external_id == external_id)
    if parent is not None:
        stmt = stmt.where(Resource.scope == parse_id(parent, "parentResourceId"))
    rows = conn.execute(stmt.order_by(Resource.id).limit(2)).all()
    if not rows:
        bits = [f"name {name!r}" if name is not None else "", f"externalId {external_id!r}" if external_id else "",
                f"under parent {parent}" if parent is not None else ""]
        raise NotFound(f"No {FAMILY_NAMES[family]} with " + " ".join(b for b in bits if b) + ".")
    if len(rows) > 1 and parent is not None:
        # artifacts of two types share the name (unique per type): upstream answers 404 "multiple artifacts
        # found" on GET /artifact rather than pick one; the typed finders (/model_artifact...) find one
        found = ", ".join(f"{row.kind} {row.id}" for row in rows)
        raise NotFound(f"More than one {FAMILY_NAMES[family]} is named {name!r} under parent {parent} ({found}). "
                       "Get the one you mean by its type's endpoint, e.g. GET .../model_artifact?name=..."
                       "&parentResourceId=..., or by id.")
    if len(rows) > 1:
        raise InvalidInput(f"More than one {FAMILY_NAMES[family]} is named {name!r}; pass parentResourceId too.")
    return cast(Record, rows[0])


def list_page(conn: Connection, family: str, page: Page, paginator: Paginator, *,
              where: Sequence[ColumnElement[bool] | None] = (), kinds: Sequence[str] | None = None,
              parent: int | None = None) -> dict[str, Any]:
    """One page of ``family`` in the list shape the client expects."""
    stmt = select_records().where(Resource.family == family)
    if kinds is not None:
        stmt = stmt.where(Resource.kind.in_(kinds))
    if parent is not None:
        stmt = stmt.where(Resource.scope == parent)
    for clause in where:
        if clause is not None:
            stmt = stmt.where(clause)
    rows = conn.execute(paginator.apply(stmt, page)).all()
    more = len(rows) > page.size
    rows = rows[:page.size]
    items = [to_wire(BY_KIND[row.kind], row) for row in rows]
    token = paginator.next_token(page, rows[-1]) if more else ""
    return {"items": items, "nextPageToken": token, "pageSize": page.size, "size": len(items)}


def create(conn: Connection, kind: Kind, fields: dict[str, Any], *, parent: Record | None = None) -> Created:
    """Insert one entity (one Core INSERT); the parent comes from ``parent`` or the kind's parent field."""
    fields = dict(fields)
    for wire in ("id", "createTimeSinceEpoch", "lastUpdateTimeSinceEpoch"):
        fields.pop(wire, None)
    if kind.parent_field and fields.get(kind.parent_field) is not None:
        given = read(conn, kind.parent_family or "", fields.pop(kind.parent_field))
        if parent is not None and given.id != parent.id:
            raise InvalidInput(f"{kind.parent_field} {given.id} does not match the parent {parent.id} in the path.")
        parent = given
    fields.pop(kind.parent_field or "", None)
    if kind.is_artifact and parent is None and fields.get("experimentRunId"):
        parent = read(conn, "experiment_run", fields["experimentRunId"])
    if parent is None and kind.parent_family and kind.parent_field:
        raise InvalidInput(f"A {kind.name} needs {kind.parent_field}.")
    if kind.is_artifact and parent is not None and parent.family == "experiment_run":
        # as upstream's setExperimentPropertiesOnArtifact: filterQuery "experimentRunId IN (...)" finds them
        fields["experimentRunId"] = str(parent.id)
        if parent.parent_id is not None:
            fields["experimentId"] = str(parent.parent_id)
    if fields.get("name") is None and kind.kind in GENERATED_NAMES:
        fields["name"] = str(uuid.uuid4())   # upstream names these itself when the client does not
    _check_name_length(kind, fields.get("name"), parent)
    _check_refs(conn, kind, fields)
    stamp = now_ms()
    values: dict[str, Any] = {
        "family": kind.family, "kind": kind.kind, "scope": parent.id if parent else 0,
        "parent_id": parent.id if parent else None, "name": fields.get("name"),
        "external_id": fields.get("externalId"), "state": fields.get(kind.state_field or "") or kind.default_state,
        "created_ms": stamp, "updated_ms": stamp, "attrs": _attrs(kind, fields, {}),
        "custom": _custom_from_wire(fields.get("customProperties"))}
    try:
        result = conn.execute(_INSERT, values)
    except IntegrityError as exc:
        raise _conflict(kind, exc, values["name"], values["external_id"], values["scope"]) from exc
    return Created(id=int(cast(Row[Any], result.inserted_primary_key)[0]), **values)


def update(session: Session, row: Resource, fields: dict[str, Any]) -> Resource:
    """Apply a PATCH: only the fields sent change; ``customProperties`` is replaced whole."""
    kind = kind_of(row)
    if fields.get("artifactType") not in (None, kind.kind):
        raise InvalidInput(f"artifactType {fields['artifactType']!r} does not match {describe(kind, row)}, "
                           f"which is a {kind.kind}; the type of an artifact cannot change.")
    _check_refs(session.connection(), kind, fields)
    if "externalId" in fields:
        row.external_id = fields["externalId"]
    if "customProperties" in fields:
        row.custom = _custom_from_wire(fields["customProperties"])
    if kind.state_field and fields.get(kind.state_field) is not None:
        row.state = fields[kind.state_field]
    row.attrs = _attrs(kind, fields, row.attrs)
    row.updated_ms = max(now_ms(), row.updated_ms)
    _flush(session, kind, row)
    return row


def attach(session: Session, row: Resource, parent: Record) -> Resource:
    """Put an unattached artifact under ``parent`` (the upsert endpoints' "existing" case).

    An artifact another parent owns is refused: moving it would take it from its version
    (its model loses its model file), and rewriting it would change another owner's data.
    """
    if row.parent_id is not None and row.parent_id != parent.id:
        owner = session.get(Resource, row.parent_id)
        whose = f"{FAMILY_NAMES[owner.family]} {owner.id}" if owner is not None else f"parent {row.parent_id}"
        raise Conflict(f"{describe(kind_of(row), row)} belongs to {whose}; it cannot be attached to "
                       f"{FAMILY_NAMES[parent.family]} {parent.id}. Create a new artifact there (POST without "
                       "an id), or change this one with PATCH .../artifacts/{id}.")
    _check_name_length(kind_of(row), row.name, parent)
    row.parent_id = parent.id
    row.scope = parent.id
    row.updated_ms = now_ms()
    _flush(session, kind_of(row), row)
    return row


def _attrs(kind: Kind, fields: dict[str, Any], current: dict[str, Any]) -> dict[str, Any]:
    attrs = dict(current)
    allowed = {f.wire: f for f in kind.fields}
    allowed_names = set(allowed) | {"description"}
    for wire, value in fields.items():
        if wire in _COMMON or wire == kind.state_field or wire not in allowed_names:
            continue
        if value is None:
            attrs.pop(wire, None)
        else:
            attrs[wire] = str(value) if wire == "step" else value
    if not current:
        for field in kind.fields:
            if field.default is not None and field.wire not in attrs:
                attrs[field.wire] = field.default
    return attrs


def _check_name_length(kind: Kind, name: str | None, parent: Record | None) -> None:
    """Upstream stores an owned entity's name as ``<parentId>:<name>`` (a UUID for a parentless artifact)
    in 255 characters; the same names fit here and there, so a model moves between the two."""
    if name is None or not (kind.parent_family or kind.is_artifact):
        return
    prefix = len(str(parent.id)) + 1 if parent is not None else (UUID_PREFIX if kind.is_artifact else 0)
    limit = NAME_MAX - prefix
    if len(name) > limit:
        where = f"under {FAMILY_NAMES[parent.family]} {parent.id}" if parent is not None else "without a parent"
        raise InvalidInput(f"{kind.name} name is {len(name)} characters; {where} the limit is {limit} (the registry "
                           f"stores '<parentId>:<name>' in {NAME_MAX} characters, as upstream). Use a shorter name.")


def _check_refs(conn: Connection, kind: Kind, fields: dict[str, Any]) -> None:
    for wire, family in kind.refs:
        if fields.get(wire) is not None:
            read(conn, family, fields[wire])


def _flush(session: Session, kind: Kind, row: Resource) -> None:
    try:
        session.flush()
    except IntegrityError as exc:
        raise _conflict(kind, exc, row.name, row.external_id, row.scope) from exc


def _conflict(kind: Kind, exc: IntegrityError, name: str | None, external_id: str | None, scope: int) -> Conflict:
    what = "externalId " + repr(external_id) if "external_id" in str(exc.orig) else "name " + repr(name)
    where = f" under parent {scope}" if scope else ""
    return Conflict(f"A {FAMILY_NAMES[kind.family]} with {what}{where} already exists. "
                    "Pick another name, or update the existing one with PATCH.")
