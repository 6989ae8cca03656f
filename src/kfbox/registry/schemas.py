"""Pydantic request schemas, generated from :mod:`kfbox.registry.kinds`.

For each kind there is ``<Kind>Create`` (POST), ``<Kind>Update`` (PATCH) and ``<Kind>``
(the full entity, which two upstream endpoints take as a body). All forbid unknown
fields and use strict types, so a wrong type or a typo is a 400 instead of a silent
coercion. Names refuse control characters; everything else in a string is kept exactly.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StrictBool, StringConstraints, create_model

from kfbox.registry import kinds
from kfbox.registry.kinds import Kind, Number, Text
from kfbox.registry.tables import NAME_MAX

ID_PATTERN = r"^[1-9][0-9]{0,8}$"
INT_VALUE_PATTERN = r"^-?([1-9][0-9]{0,8}|0)$"


def _no_control_chars(value: str) -> str:
    bad = next((ch for ch in value if ord(ch) < 0x20 or 0x7F <= ord(ch) < 0xA0), None)
    if bad is not None:
        raise ValueError(f"must not contain control characters (found U+{ord(bad):04X})")
    return value


Name = Annotated[str, StringConstraints(strict=True, min_length=1, max_length=NAME_MAX),
                 AfterValidator(_no_control_chars)]
ExternalId = Annotated[str, StringConstraints(strict=True, min_length=1, max_length=NAME_MAX),
                       AfterValidator(_no_control_chars)]
IdRef = Annotated[str, StringConstraints(strict=True, pattern=ID_PATTERN)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class MetadataStringValue(_Strict):
    metadataType: Literal["MetadataStringValue"]
    string_value: Text


class MetadataIntValue(_Strict):
    metadataType: Literal["MetadataIntValue"]
    int_value: Annotated[str, StringConstraints(strict=True, pattern=INT_VALUE_PATTERN)]


class MetadataDoubleValue(_Strict):
    metadataType: Literal["MetadataDoubleValue"]
    double_value: Number


class MetadataBoolValue(_Strict):
    metadataType: Literal["MetadataBoolValue"]
    bool_value: StrictBool


class MetadataStructValue(_Strict):
    metadataType: Literal["MetadataStructValue"]
    struct_value: Text


class MetadataProtoValue(_Strict):
    metadataType: Literal["MetadataProtoValue"]
    type: Text
    proto_value: Text


MetadataValue = Annotated[
    MetadataStringValue | MetadataIntValue | MetadataDoubleValue | MetadataBoolValue | MetadataStructValue
    | MetadataProtoValue,
    Field(discriminator="metadataType"),
]
CustomProperties = dict[Name, MetadataValue]

_ID_FIELDS = {"registeredModelId", "modelVersionId", "servingEnvironmentId", "experimentId", "experimentRunId"}


def _field_type(field: kinds.Field) -> Any:
    return IdRef if field.wire in _ID_FIELDS else field.type


def _build(kind: Kind, variant: str) -> type[BaseModel]:
    """``variant`` is ``create``, ``update`` or ``full``."""
    spec: dict[str, Any] = {}

    def add(wire: str, annotation: Any, required: bool = False) -> None:
        default = ... if required else None
        spec["f_" + wire] = (annotation if required else annotation | None, Field(default, alias=wire))

    if variant != "update":
        add("name", Name, required=kind.name_required)
    add("description", Text)
    add("externalId", ExternalId)
    add("customProperties", CustomProperties)
    if kind.state_field:
        add(kind.state_field, kind.state_type)
    if kind.is_artifact:
        add("artifactType", Literal[kind.kind], required=False)
    if kind.parent_field and variant != "update":
        add(kind.parent_field, IdRef, required=variant == "create")
    for field in kind.fields:
        if variant == "update" and not field.update:
            continue
        add(field.wire, _field_type(field), required=field.required and variant == "create")
    if variant == "full":
        add("id", IdRef)
        add("createTimeSinceEpoch", Text)
        add("lastUpdateTimeSinceEpoch", Text)
    suffix = {"create": "Create", "update": "Update", "full": ""}[variant]
    model: type[BaseModel] = create_model(
        kind.name + suffix, __config__=ConfigDict(extra="forbid", populate_by_name=False), **spec)
    return model


CREATE: dict[str, type[BaseModel]] = {k.kind: _build(k, "create") for k in kinds.ALL_KINDS}
UPDATE: dict[str, type[BaseModel]] = {k.kind: _build(k, "update") for k in kinds.ALL_KINDS}
FULL: dict[str, type[BaseModel]] = {k.kind: _build(k, "full") for k in kinds.ALL_KINDS}


def _artifact_union(models: dict[str, type[BaseModel]]) -> Any:
    """``Artifact`` oneOf, discriminated by ``artifactType`` (which must then be present)."""
    members = []
    for kind in kinds.ARTIFACT_KINDS.values():
        base = models[kind.kind]
        tag: Any = Literal[kind.kind]
        tagged = create_model(base.__name__, __base__=base, f_artifactType=(tag, Field(..., alias="artifactType")))
        members.append(tagged)
    union: Any = members[0]
    for member in members[1:]:
        union = union | member
    return Annotated[union, Field(discriminator="f_artifactType")]


ArtifactCreate = _artifact_union(CREATE)
ArtifactUpdate = _artifact_union(UPDATE)
Artifact = _artifact_union(FULL)


def to_fields(body: BaseModel) -> dict[str, Any]:
    """The fields a client actually sent, by wire name (PATCH never nulls what it omitted)."""
    return {name[2:]: value for name, value in body.model_dump(exclude_unset=True).items()}
