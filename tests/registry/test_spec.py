"""Upstream's document and kfbox's kinds agree, and bodies are checked against the document.

In-process unit tests: no server. The store keeps only the fields a kind declares
(:mod:`kfbox.registry.kinds`), so a field upstream's schema accepts but the kind lacks would be
accepted and silently dropped; the first test makes that impossible to ship.
"""

from __future__ import annotations

import pytest

from kfbox.errors import InvalidInput
from kfbox.registry import kinds, spec
from kfbox.registry.validation import MissingRequired, validate

COMMON = {"name", "description", "externalId", "customProperties", "id", "createTimeSinceEpoch",
          "lastUpdateTimeSinceEpoch", "artifactType"}


@pytest.mark.parametrize("kind", kinds.ALL_KINDS, ids=[k.name for k in kinds.ALL_KINDS])
def test_every_field_the_document_accepts_is_stored(kind: kinds.Kind) -> None:
    stored = COMMON | {f.wire for f in kind.fields} | {kind.state_field, kind.parent_field} - {None}
    for suffix in ("Create", "Update", ""):
        accepted = set(spec.body_schema(kind.name + suffix)["properties"])
        assert accepted <= stored, f"{kind.name}{suffix}: {sorted(accepted - stored)} would be dropped"


def test_v1alpha3_document_is_upstreams_file_and_v1_moves_its_paths() -> None:
    upstream = spec.document()
    assert spec.served("/api/model_registry/v1alpha3") is upstream
    v1 = spec.served("/api/model_registry/v1")
    assert {p.replace("/v1/", "/v1alpha3/") for p in v1["paths"]} == {
        p for p in upstream["paths"] if "/experiment" not in p}
    assert upstream["components"]["schemas"]["MetricUpdate"]["allOf"][1]["properties"]["step"]["type"] == "integer"


def test_go_server_answers_for_required_and_unknown_fields() -> None:
    with pytest.raises(MissingRequired, match="required field 'registeredModelId' is zero value"):
        validate(kinds.MODEL_VERSION, "create", {"name": "v1", "registeredModelId": ""})
    with pytest.raises(InvalidInput, match='json: unknown field "colour"'):
        validate(kinds.REGISTERED_MODEL, "create", {"name": "m", "colour": "red"})


def test_metric_step_as_integer_or_string_and_nulls_dropped() -> None:
    for step in (3, "3"):
        assert validate(kinds.METRIC, "create", {"name": "loss", "value": 0.5, "step": step})["step"] == step
    assert validate(kinds.REGISTERED_MODEL, "create", {"name": "m", "description": None}) == {"name": "m"}
    with pytest.raises(InvalidInput, match="step"):
        validate(kinds.METRIC, "create", {"name": "loss", "step": "three"})
