"""Property-based fuzz of every public endpoint: no 500, no response that breaks its schema.

Two documents drive schemathesis against one real ``kfbox up``:

* kfbox's own ``/openapi.json`` -- every operation it declares (KFP, the InferenceService
  and platform routes), except the ``/pipeline/apis`` twin of ``/apis``, and serving's
  create/replace/patch and notebook starts, which launch processes (model replicas, JupyterLab):
  a fuzzed body is mostly refused, but a valid one would leave processes running for the rest
  of the run; serving and notebooks have their own tests;
* the upstream Model Registry document the registry serves at ``/api/model_registry/v1alpha3/
  openapi.json`` (upstream's file as shipped) and ``/api/model_registry/v1/openapi.json`` (the
  same, at that prefix), as upstream's ``clients/python/tests/fuzz_api`` does.

Examples per operation are bounded (:data:`MAX_EXAMPLES`) so the module stays within about a
minute on a shared 2-core machine. The ``/v1`` prefix gets :data:`V1_EXAMPLES`: its operations
reach the same handlers and body checks as ``v1alpha3``'s (kfbox.registry.service mounts one
route set per prefix), which the full budget fuzzes; one example each still calls every ``/v1``
operation and checks its answer against the ``/v1`` document, which is what differs there
(paths, ``Metric.step``, no Experiment paths). Each run prints how many examples every
operation got (``pytest -s``). A 5xx or a response that does not match the schema declared
for its status fails the test with the request that caused it.
"""

from __future__ import annotations

import json
import os
import re
from collections import Counter
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from tests.support import ServerProcess

# schemathesis and hypothesis are imported where used: every pytest worker imports this module, one runs it.
if TYPE_CHECKING:
    import schemathesis
    from schemathesis.schemas import BaseSchema

MAX_EXAMPLES = int(os.environ.get("KFBOX_FUZZ_EXAMPLES", "3"))
V1_EXAMPLES = max(1, MAX_EXAMPLES // 3)
SKIPPED = (r"^/pipeline/apis/|^/docs|^/redoc|^/openapi")
STARTS_PROCESSES = r"^/apis/serving\.kserve\.io/|^/kfbox/v1/notebooks"
EXAMPLES: Counter[str] = Counter()


@pytest.fixture(scope="module")
def fuzz_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """A server of its own: the fuzzer writes whatever it generates, which no other module should meet."""
    server = ServerProcess.start(tmp_path_factory.mktemp("home"))
    yield server
    server.stop()
    report = tmp_path_factory.getbasetemp() / "fuzz-examples.json"
    report.write_text(json.dumps(dict(sorted(EXAMPLES.items())), indent=1))
    print(f"\nfuzz: {sum(EXAMPLES.values())} examples over {len(EXAMPLES)} operations (per operation: {report})")
    for operation, count in sorted(EXAMPLES.items()):
        print(f"  {count:3d}  {operation}")


@pytest.fixture(scope="module")
def kfbox_schema(fuzz_server: ServerProcess) -> BaseSchema:
    import schemathesis

    return schemathesis.openapi.from_url(f"{fuzz_server.url}/openapi.json")


@pytest.fixture(scope="module", params=[("v1alpha3", MAX_EXAMPLES), ("v1", V1_EXAMPLES)], ids=lambda p: p[0])
def upstream_schema(request: pytest.FixtureRequest, fuzz_server: ServerProcess) -> tuple[BaseSchema, int]:
    """The registry's document at one prefix, and how many examples each of its operations gets."""
    import schemathesis

    prefix, examples = request.param
    document = httpx.get(f"{fuzz_server.url}/api/model_registry/{prefix}/openapi.json").json()
    return schemathesis.openapi.from_dict(discriminated_as_any_of(document)), examples


def discriminated_as_any_of(spec: dict[str, Any]) -> dict[str, Any]:
    """JSON Schema has no ``discriminator``: a ModelArtifact with only the common fields matches
    every branch of the spec's ``Artifact`` ``oneOf`` and "violates" it. The discriminator picks
    exactly one branch, so ``anyOf`` is the faithful reading for a validator (upstream's own fuzz
    turns response checks off instead)."""
    for schema in spec.get("components", {}).get("schemas", {}).values():
        if isinstance(schema, dict) and "discriminator" in schema and "oneOf" in schema:
            schema["anyOf"] = schema.pop("oneOf")
    return spec


def fuzz(schema: BaseSchema, base_url: str, *, skip: Callable[[str, str], bool] = lambda _m, _p: False,
         examples: int = MAX_EXAMPLES) -> None:
    """Run every operation of ``schema`` with valid and invalid data (at most ``examples`` each); fail listing
    each broken operation.

    (schemathesis' own pytest plugin does not load under pytest 9, so the operations are
    walked here, one hypothesis run each.)
    """
    from hypothesis import HealthCheck, Phase, given, settings
    from hypothesis import strategies as st
    from schemathesis import GenerationMode
    from schemathesis.core.result import Err

    failures: list[str] = []
    budget = settings(max_examples=examples, deadline=None, derandomize=True, database=None,
                      phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck))
    for result in schema.get_all_operations():
        if isinstance(result, Err):
            failures.append(f"unreadable operation: {result.err()}")
            continue
        operation = result.ok()
        if skip(operation.method.upper(), operation.path):
            continue
        label = f"{operation.method.upper()} {operation.path}"
        strategy = st.one_of(operation.as_strategy(GenerationMode.POSITIVE),
                             operation.as_strategy(GenerationMode.NEGATIVE))

        try:
            budget(given(case=strategy)(_call(label, base_url)))()
        except Exception as exc:  # noqa: BLE001 - any failure of one operation is reported, then the next runs
            failures.append(f"{label}: {str(exc).strip()[:1500]}")
    assert not failures, f"{len(failures)} operations failed:\n\n" + "\n\n".join(failures)


def _call(label: str, base_url: str) -> Callable[[schemathesis.Case], None]:
    from schemathesis.checks import not_a_server_error
    from schemathesis.specs.openapi.checks import response_schema_conformance

    checks = [not_a_server_error, response_schema_conformance]

    def call(case: schemathesis.Case) -> None:
        EXAMPLES[label] += 1
        case.call_and_validate(base_url=base_url, checks=checks, timeout=30)
    return call


def kfbox_skip(method: str, path: str) -> bool:
    return bool(re.match(SKIPPED, path)) or (bool(re.match(STARTS_PROCESSES, path))
                                            and method in ("POST", "PUT", "PATCH"))


def test_kfbox_openapi(kfbox_schema: BaseSchema, fuzz_server: ServerProcess) -> None:
    fuzz(kfbox_schema, fuzz_server.url, skip=kfbox_skip)


def test_upstream_model_registry_spec(upstream_schema: tuple[BaseSchema, int], fuzz_server: ServerProcess) -> None:
    schema, examples = upstream_schema
    fuzz(schema, fuzz_server.url, examples=examples)
