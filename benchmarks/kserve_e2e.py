"""KServe conformance: upstream's own ``test/e2e`` tests (``predictor`` by default) against kfbox.

The tests are the ones kserve/kserve runs against a cluster (a checkout given with ``--upstream``;
they stay out of this repository). They reach kfbox as they reach a cluster: ``KUBECONFIG`` from
``kfbox kubeconfig`` (KServeClient, the kubernetes client), ``KSERVE_INGRESS_HOST_PORT`` as the
ingress they send predictions to with the ``Host`` of ``status.url``, ``KSERVE_TEST_NAMESPACE``.
They need three test-only packages kfbox does not: install them apart and pass the folder::

    .venv/bin/pip install --target /work/upstream/site --no-deps httpx-retries pytest-asyncio portforward
    .venv/bin/python benchmarks/kserve_e2e.py --upstream /work/upstream/kserve --site /work/upstream/site
        [--url URL] [--tests predictor ...] [-k EXPR] [--workers 2] [--standin-iris]
        [--data-plane haproxy|handoff] [--json out.json]

Without ``--url`` a fresh ``kfbox up`` in a temporary home serves them; with ``--data-plane haproxy``
it also runs the HAProxy data plane and the gRPC gateway, and the tests' ingress is HAProxy's port,
which takes REST and gRPC as a cluster's Istio ingress does (the Python gateway's port is HTTP/1.1
only, so the gRPC tests fail there). Most tests load models
from ``gs://kfserving-examples`` (no network here), so they stop at create with a 422 naming the
scheme. ``--standin-iris`` probes what lies beyond that: in this harness only (kfbox has no such
mapping), ``gs://kfserving-examples/models/sklearn/1.0/model`` becomes a local iris SVC trained as
KServe's example was. Prints one line per test (outcome, class, first message) and the counts.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import re
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
STANDIN_ENV = "KFBOX_E2E_STANDIN_DIR"
IRIS_URI = "gs://kfserving-examples/models/sklearn/1.0/model"

# (class, pattern over the failure text): the first that matches names why a test did not pass here
CLASSES = [
    ("gRPC on the ingress port", r"Failed parsing HTTP/2|Trying to connect an http1"),
    ("Kubernetes-only API", r"No API at \w+ /apis?/(v1|apps|keda|serving\.knative|opentelemetry|autoscaling)"),
    ("unsupported runtime", r"[Mm]odel format '\w+' is not served"),
    ("unsupported feature", r"spec\.(transformer|explainer|canary|predictor\.containers)|scaleMetric|"
                            r"storageUri is required|model server argument"),
    ("needs network (gs://, hub)", r"Storage URI '(gs|https?|hf)://"),
]


def classify(text: str) -> str:
    return next((name for name, pattern in CLASSES if re.search(pattern, text)), "unclassified: look (kfbox?)")


def outcomes(junit: Path, why: Callable[[str], str] = classify) -> list[dict[str, str]]:
    """One row per test of a JUnit report: outcome, ``why(failure text)`` for a failure, its first message."""
    rows = []
    for case in ET.parse(junit).getroot().iter("testcase"):
        name = case.get("classname", "").rsplit(".", 1)[-1] + "::" + case.get("name", "")
        outcome, text = "passed", ""
        for tag in ("failure", "error", "skipped"):
            found = case.find(tag)
            if found is not None:
                outcome, text = tag, f"{found.get('message') or ''}\n{found.text or ''}"
                break
        message = re.search(r'"message":"((?:[^"\\]|\\.)*)"', text)
        first = message.group(1) if message else (text.strip().splitlines() or [""])[0]
        cause = "" if outcome == "passed" else "upstream skip" if outcome == "skipped" else why(text)
        rows.append({"test": name, "outcome": outcome, "class": cause, "message": first[:200]})
    return rows


def report(rows: list[dict[str, str]], json_path: Path | None) -> None:
    """One line per test, the counts by outcome and by cause; the rows as JSON when asked."""
    for row in rows:
        print(f"{row['outcome']:8} {row['test']:75} {row['class']:28} {row['message'][:120]}")
    counts = collections.Counter(row["outcome"] for row in rows)
    print(f"\n{len(rows)} tests: " + ", ".join(f"{n} {k}" for k, n in sorted(counts.items())))
    for name, n in sorted(collections.Counter(row["class"] for row in rows if row["class"]).items()):
        print(f"  {n:3}  {name}")
    if json_path:
        json_path.write_text(json.dumps(rows, indent=1))


def train_standin(folder: Path) -> None:
    """KServe's sklearn iris example (``svm.SVC(gamma='scale')`` on iris), from sklearn's bundled data."""
    import joblib
    from sklearn import datasets, svm

    features, labels = datasets.load_iris(return_X_y=True)
    folder.mkdir(parents=True, exist_ok=True)
    joblib.dump(svm.SVC(gamma="scale").fit(features, labels), folder / "model.joblib")


def pytest_configure(config: Any) -> None:
    """As a pytest plugin (``-p kserve_e2e``, with --standin-iris): swap the example URI in what tests create."""
    folder = os.environ.get(STANDIN_ENV)
    if not folder:
        return
    from kserve import KServeClient

    def rewrite(obj: Any) -> None:
        for attr in getattr(obj, "openapi_types", None) or ():
            value = getattr(obj, attr, None)
            if attr == "storage_uri" and value == IRIS_URI:
                setattr(obj, attr, Path(folder).as_uri())
            elif isinstance(value, list):
                for item in value:
                    rewrite(item)
            else:
                rewrite(value)

    for verb in ("create", "patch", "replace"):
        original = getattr(KServeClient, verb)

        def wrapped(self: Any, *args: Any, _original: Any = original, **kwargs: Any) -> Any:
            for value in (*args, *kwargs.values()):
                rewrite(value)
            return _original(self, *args, **kwargs)

        setattr(KServeClient, verb, wrapped)


def run(args: argparse.Namespace, url: str, work: Path, ingress: str | None = None) -> list[dict[str, str]]:
    e2e = args.upstream / "test" / "e2e"
    kubeconfig, junit = work / "kubeconfig", work / "junit.xml"
    subprocess.run([sys.executable, "-m", "kfbox", "kubeconfig", "-o", str(kubeconfig), "--url", url,
                    "-n", args.namespace], check=True, capture_output=True)
    env = {**os.environ, "KUBECONFIG": str(kubeconfig), "KSERVE_TEST_NAMESPACE": args.namespace,
           "KSERVE_INGRESS_HOST_PORT": (ingress or url).removeprefix("http://").rstrip("/"),
           "PYTHONPATH": os.pathsep.join(p for p in (str(args.site or ""), str(ROOT / "benchmarks")) if p)}
    plugins = []
    if args.standin_iris:
        train_standin(work / "standin-iris")
        env[STANDIN_ENV] = str(work / "standin-iris")
        plugins = ["-p", "kserve_e2e"]
    command = [sys.executable, "-m", "pytest", *args.tests, *plugins, "-p", "no:cacheprovider", "-o", "log_cli=false",
               "--timeout", str(args.timeout), f"--junitxml={junit}", "-q",
               *(["-n", str(args.workers)] if args.workers > 1 else ["-p", "no:xdist"]),
               *(["-k", args.k] if args.k else [])]
    subprocess.run(command, cwd=e2e, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return outcomes(junit)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--upstream", type=Path, required=True, help="a kserve/kserve checkout (with test/e2e)")
    parser.add_argument("--site", type=Path, help="folder holding httpx-retries, pytest-asyncio, portforward")
    parser.add_argument("--url", help="a running kfbox; default: a fresh one in a temporary home")
    parser.add_argument("--tests", nargs="+", default=["predictor"], help="folders, files or test ids under test/e2e")
    parser.add_argument("-k", help="pytest -k expression")
    parser.add_argument("--namespace", default="kserve-ci-e2e-test")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--timeout", type=int, default=300, help="seconds per test")
    parser.add_argument("--standin-iris", action="store_true", help=f"serve {IRIS_URI} from a local stand-in")
    parser.add_argument("--data-plane", choices=["python", "haproxy", "handoff"], default="python",
                        help="haproxy: the ingress is HAProxy's port, which also takes gRPC (the gRPC gateway on); "
                             "handoff: the ingress is the server's port, which hands plain connections to replicas")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="kserve-e2e-") as tmp:
        work = Path(tmp)
        if args.url:
            rows = run(args, args.url, work)
        else:
            sys.path.insert(0, str(ROOT))
            from tests.support import ServerProcess

            extra = {"haproxy": {"KFBOX_DATA_PLANE": "haproxy", "KFBOX_INGRESS_PORT": "0",
                                 "KFBOX_SERVING_GRPC_PORT": "0"},
                     "handoff": {"KFBOX_DATA_PLANE": "handoff"}}.get(args.data_plane, {})
            server = ServerProcess.start(work / "home", extra_env=extra)
            try:
                ingress = json.loads((work / "home" / "server.json").read_text()).get("ingress_url")
                rows = run(args, server.url, work, ingress)
            finally:
                server.stop()
    report(rows, args.json)


if __name__ == "__main__":
    main()
