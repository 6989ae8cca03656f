"""KFP conformance: upstream's own test pipelines through the unchanged ``kfp.Client`` against kfbox.

The pipelines are the ones kubeflow/pipelines runs against a cluster (a checkout given with
``--upstream``; they stay out of this repository):

* ``samples/v2``: every ``TestCase(pipeline_func=module.function)`` that ``sample_test.py`` runs
  (found by reading that file), each expected to end SUCCEEDED;
* ``sdk/python/test_data/pipelines``: every pipeline of ``test_data_config.yaml`` (its compiled
  YAML as upstream committed it), with its ``arguments`` and ``expected_state`` (default SUCCEEDED).

    .venv/bin/python benchmarks/kfp_conformance.py --upstream /work/upstream/kfp [--url URL]
        [--only NAME] [--concurrency 4] [--timeout 300] [--containers auto|docker|podman|host] [--json out.json]

Without ``--url`` a fresh ``kfbox up`` in a temporary home serves the runs; on a machine without
Docker or Podman, ``--containers host`` runs container components' commands here (their images
unused), else those runs fail at submit saying so. Prints one line per pipeline (expected, got,
why: for a refusal the server's message) and the count that ended as upstream expects. Entries with
``execute: false`` have no upstream expectation (the default SUCCEEDED stands in): some fail by
design (a task that exits 1), some need arguments the config does not give.
"""

from __future__ import annotations

import argparse
import ast
import concurrent.futures
import contextlib
import importlib
import json
import os
import subprocess
import sys
import tempfile
import time
import traceback
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml


@dataclass
class Case:
    name: str
    expected: str
    package: Path | None = None  # a compiled YAML
    sample: tuple[str, str] | None = None  # (module, attribute path) under samples/v2
    arguments: dict[str, Any] = field(default_factory=dict)
    executed_upstream: bool = True  # test_data entries with ``execute: false`` have no upstream expectation


def sample_cases(upstream: Path) -> list[Case]:
    """``TestCase(pipeline_func=a.b.c)`` calls in ``sample_test.py`` (only the active ones)."""
    tree = ast.parse((upstream / "samples/v2/sample_test.py").read_text())
    cases: list[Case] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "TestCase":
            for keyword in node.keywords:
                if keyword.arg == "pipeline_func":
                    dotted = ast.unparse(keyword.value).replace("\n", "").replace(" ", "")
                    module, _, attribute = dotted.rpartition(".")
                    cases.append(Case(name=f"samples/{dotted}", expected="SUCCEEDED", sample=(module, attribute)))
    return cases


def test_data_cases(upstream: Path) -> list[Case]:
    config = yaml.safe_load((upstream / "sdk/python/test_data/test_data_config.yaml").read_text())
    root = upstream / config["pipelines"]["test_data_dir"]
    return [Case(name=f"test_data/{t['module']}", expected=t.get("expected_state", "SUCCEEDED"),
                 package=root / f"{t['module']}.yaml", arguments=t.get("arguments") or {},
                 executed_upstream=bool(t.get("execute")))
            for t in config["pipelines"]["test_cases"]]


def compile_sample(upstream: Path, case: Case, out: Path) -> Path:
    """Import the sample module (as sample_test.py does, from samples/v2) and compile its pipeline."""
    from kfp import compiler

    assert case.sample is not None
    samples = str(upstream / "samples/v2")
    if samples not in sys.path:
        sys.path.insert(0, samples)
    module_name, attribute = case.sample
    # sample_test.py imports "from modelcar import modelcar": the first part names a module
    parts = module_name.split(".")
    obj: Any = None
    for cut in range(len(parts), 0, -1):
        with contextlib.suppress(ModuleNotFoundError):
            obj = importlib.import_module(".".join(parts[:cut]))
            for rest in parts[cut:]:
                obj = getattr(obj, rest)
            break
    if obj is None:
        obj = importlib.import_module(parts[-1])
    if not hasattr(obj, attribute.split(".")[0]):  # "from modelcar import modelcar": a module of a package
        obj = importlib.import_module(f"{module_name}.{parts[-1]}")
    for part in attribute.split("."):
        obj = getattr(obj, part)
    path = out / (case.name.replace("/", "_") + ".yaml")
    compiler.Compiler().compile(obj, str(path))
    return path


def prerequisites(url: str, upstream: Path) -> None:
    """What sample_test.py deploys first (samples/v2/pre-requisites): its secrets, as kfbox secrets."""
    import httpx

    for doc in yaml.safe_load_all((upstream / "samples/v2/pre-requisites/test-secrets.yaml").read_text()):
        if doc and doc.get("kind") == "Secret":
            httpx.put(f"{url}/kfbox/v1/secrets/{doc['metadata']['name']}",
                      json={"data": doc.get("stringData") or {}}, timeout=30).raise_for_status()


@contextlib.contextmanager
def kfbox_server(containers: str) -> Iterator[str]:
    home = Path(tempfile.mkdtemp(prefix="kfbox-conformance-"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("KFBOX_")}
    env["KFBOX_CONTAINER_RUNTIME"] = containers
    server = subprocess.Popen([sys.executable, "-m", "kfbox", "up", "--port", "0", "--home", str(home)], env=env,
                              stdout=open(home / "server.log", "ab"), stderr=subprocess.STDOUT,  # noqa: SIM115
                              start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError, ValueError, KeyError):
                record = json.loads((home / "server.json").read_text())
                if record["pid"] == server.pid:
                    yield str(record["url"])
                    return
            time.sleep(0.1)
        raise RuntimeError(f"kfbox up not ready; see {home / 'server.log'}")
    finally:
        server.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            server.wait(20)
        print(f"(server home: {home})", file=sys.stderr)


def run_case(client: Any, case: Case, package: Path, timeout: float) -> tuple[str, str]:
    """(final state, short reason) of one run."""
    # the run named as kfp.Client names a pipeline function's run ("<pipeline> <time>"), which upstream's
    # placeholder sample asserts
    name = next(yaml.safe_load_all(package.read_text()))["pipelineInfo"]["name"]
    result = client.create_run_from_pipeline_package(str(package), arguments=case.arguments,
                                                     run_name=f"{name} {time.strftime('%Y-%m-%d %H-%M-%S')}",
                                                     experiment_name="conformance")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        run = client.get_run(result.run_id)
        if run.state in ("SUCCEEDED", "FAILED", "CANCELED", "SKIPPED"):
            reason = run.error.message if run.error and run.error.message else ""
            return run.state, reason
        time.sleep(0.5)
    client.terminate_run(result.run_id)
    return "TIMEOUT", f"still {client.get_run(result.run_id).state} after {timeout:.0f}s"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--upstream", type=Path, required=True, help="a kubeflow/pipelines checkout")
    parser.add_argument("--url", help="a running kfbox (default: start one in a temporary home)")
    parser.add_argument("--only", action="append", default=[], help="run only cases whose name contains this")
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--timeout", type=float, default=300)
    parser.add_argument("--json", type=Path, help="write the table as JSON here")
    parser.add_argument("--containers", default="auto", choices=["auto", "docker", "podman", "host"],
                        help="the started server's container runtime (host: container commands run here)")
    args = parser.parse_args()

    cases = sample_cases(args.upstream) + test_data_cases(args.upstream)
    if args.only:
        cases = [c for c in cases if any(o in c.name for o in args.only)]
    out = Path(tempfile.mkdtemp(prefix="kfbox-conformance-pkg-"))
    packages: dict[str, Path | str] = {}
    for case in cases:
        try:
            packages[case.name] = case.package if case.package else compile_sample(args.upstream, case, out)
        except Exception as exc:  # noqa: BLE001 - a sample that does not compile is a row of the table
            packages[case.name] = f"does not compile here: {type(exc).__name__}: {exc}"

    def table(url: str) -> list[dict[str, Any]]:
        from kfp import Client

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            client = Client(host=f"{url}/pipeline")
        with contextlib.suppress(Exception):  # created once, before the runs race to create it
            client.create_experiment("conformance")

        def one(case: Case) -> dict[str, Any]:
            package = packages[case.name]
            if isinstance(package, str):
                got, why = "NOT RUN", package
            else:
                try:
                    got, why = run_case(client, case, package, args.timeout)
                except Exception as exc:  # noqa: BLE001 - a refusal at submit is a result too
                    # kfp's ApiException: the server's message is in the body, after a page of headers
                    body = getattr(exc, "body", None)
                    status = getattr(exc, "status", "")
                    got, why = "REFUSED", f"{status} {body}" if body else f"{type(exc).__name__}: {exc}"
                    if os.environ.get("KFBOX_CONFORMANCE_DEBUG"):
                        traceback.print_exc()
            row = {"name": case.name, "expected": case.expected, "got": got, "ok": got == case.expected,
                   "executed_upstream": case.executed_upstream, "why": " ".join(why.split())[:300]}
            print(f"{'ok ' if row['ok'] else 'BAD'} {case.name:70} expected {case.expected:9} got {got:9} "
                  f"{row['why'] if not row['ok'] else ''}", flush=True)
            return row

        with concurrent.futures.ThreadPoolExecutor(args.concurrency) as pool:
            return list(pool.map(one, cases))

    if args.url:
        prerequisites(args.url, args.upstream)
        rows = table(args.url)
    else:
        with kfbox_server(args.containers) as url:
            prerequisites(url, args.upstream)
            rows = table(url)
    passed = sum(r["ok"] for r in rows)
    executed = [r for r in rows if r["executed_upstream"]]
    print(f"\n{passed}/{len(rows)} pipelines ended in the state upstream expects (SUCCEEDED unless the config "
          f"says otherwise); of those upstream executes: {sum(r['ok'] for r in executed)}/{len(executed)}")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
