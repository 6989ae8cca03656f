"""Model Registry conformance: upstream's Python client tests (``pytest --e2e``) against kfbox.

The tests are the ones kubeflow/model-registry runs against a registry server in a cluster (a
checkout given with ``--upstream``; they stay out of this repository). They reach kfbox as they
reach that server: ``MR_URL``, no token on loopback. Three test-only packages kfbox does not need
go in a folder apart::

    .venv/bin/pip install --target /work/upstream/mr-site --no-deps pytest-asyncio pytest-mock olot
    .venv/bin/python benchmarks/model_registry_e2e.py --upstream /work/upstream/model-registry \\
        --site /work/upstream/mr-site [--client-src] [--fuzz] [--db URL] [-k EXPR] [--json out.json]

A fresh ``kfbox up`` in a temporary home serves them, with moto's S3 server on loopback for the
tests that upload to S3 (upstream uses MinIO). What this harness stands in for, and nothing more:

* after each test upstream's fixtures run ``<checkout>/scripts/cleanup.sh``, which empties the
  registry's database in the cluster; here pytest's rootdir points into a temporary folder whose
  ``scripts/cleanup.sh`` empties kfbox's registry table (``--wipe``);
* before each test they wait up to 10 s for a 404 at ``/`` (the upstream server's root); kfbox
  serves its dashboard there and is ready before pytest starts, so the wait is skipped.

``--client-src`` imports upstream's client from the checkout (``clients/python/src``) instead of
the installed ``model-registry``: the checkout's tests use its newest API (experiments). Prints one
line per test (outcome, why, first message) and the counts.
"""

from __future__ import annotations

import argparse
import logging
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from kserve_e2e import outcomes, report

ROOT = Path(__file__).resolve().parent.parent

# (class, pattern over the failure text): the first that matches names why a test did not pass here
CLASSES = [
    ("needs network (Hugging Face, quay.io)", r"Name or service not known|Temporary failure in name resolution"),
    ("needs skopeo and an OCI registry", r"Backend 'skopeo' is selected, but not available"),
    ("schemathesis's pytest plugin vs pytest 9 (Function._nodeid)", r"has no attribute '_nodeid'"),
    ("client lacks the test's API (try --client-src)",
     r"'ModelRegistry' object has no attribute|module 'model_registry[.\w]*' has no attribute"),
]


def classify(text: str) -> str:
    return next((name for name, pattern in CLASSES if re.search(pattern, text)), "unclassified: look (kfbox?)")


def wipe(url: str) -> None:
    """Empty kfbox's registry (upstream's cleanup.sh deletes every MLMD table's rows)."""
    from sqlalchemy import text

    from kfbox.db import Database

    database = Database(url)
    with database.write() as session:  # MySQL checks the parent key row by row: unlink the children first
        session.execute(text("UPDATE registry_resources SET parent_id = NULL"))
        session.execute(text("DELETE FROM registry_resources"))
    database.dispose()


def pytest_collection_modifyitems(session: Any, config: Any, items: Any) -> None:
    """As a pytest plugin (``-p model_registry_e2e``): no wait for a 404 at ``/`` before each test."""
    conftest = sys.modules.get("tests.conftest")
    if conftest is not None:
        conftest.MAX_POLL_TIME = 0


def run(args: argparse.Namespace, url: str, db: str, s3: str, work: Path) -> list[dict[str, str]]:
    client = args.upstream / "clients" / "python"
    scripts = work / "root" / "scripts"
    scripts.mkdir(parents=True)
    (scripts / "cleanup.sh").write_text(
        f"#!/bin/sh\nexec {sys.executable} {Path(__file__).resolve()} --wipe '{db}'\n")
    (scripts / "cleanup.sh").chmod(0o755)
    rootdir = work / "root" / "clients" / "python"  # the fixtures' repository root is rootdir/../..
    rootdir.mkdir(parents=True)
    if args.fuzz:  # the fuzz fixtures read rootdir/schemathesis.toml and rootdir/../../api/openapi/*.yaml
        shutil.copy(client / "schemathesis.toml", rootdir)
        shutil.copytree(args.upstream / "api" / "openapi", work / "root" / "api" / "openapi")
    junit = work / "junit.xml"
    path = [str(client / "src")] if args.client_src else []
    path += [str(p) for p in (args.site, ROOT / "benchmarks", ROOT / "src") if p]
    env = {**os.environ, "MR_URL": url, "PYTHONPATH": os.pathsep.join(path),
           "KF_MR_TEST_S3_ENDPOINT": s3, "KF_MR_TEST_ACCESS_KEY_ID": "test",
           "KF_MR_TEST_SECRET_ACCESS_KEY": "test", "KF_MR_TEST_BUCKET_NAME": "default"}
    # test_signing and test_token import model_signing (not installed) and hold no e2e test
    suite = ["tests/fuzz_api/model_registry", "--fuzz"] if args.fuzz else ["tests", "--e2e", "--ignore",
                                                                          "tests/fuzz_api"]
    command = [sys.executable, "-m", "pytest", *suite, "-p", "model_registry_e2e",
               "--ignore", "tests/test_signing.py", "--ignore", "tests/test_token.py",
               "-p", "no:cacheprovider", "-p", "no:xdist", "--rootdir", str(rootdir), f"--junitxml={junit}", "-q",
               *(["-k", args.k] if args.k else [])]
    subprocess.run(command, cwd=client, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    # upstream's conftest skips every test without the e2e (fuzz) mark under --e2e (--fuzz): not this suite
    return [row for row in outcomes(junit, classify) if not row["message"].startswith("skipping non-e2e")]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--upstream", type=Path, help="a kubeflow/model-registry checkout (with clients/python)")
    parser.add_argument("--site", type=Path, help="folder holding pytest-asyncio, pytest-mock, olot")
    parser.add_argument("--client-src", action="store_true", help="upstream's client from the checkout")
    parser.add_argument("--fuzz", action="store_true",
                        help="upstream's schemathesis tests of the registry API (tests/fuzz_api) instead of --e2e")
    parser.add_argument("--db", help="kfbox's metadata database URL (default: SQLite in the temporary home)")
    parser.add_argument("-k", help="pytest -k expression")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--wipe", metavar="DB_URL", help=argparse.SUPPRESS)  # the cleanup.sh stand-in
    args = parser.parse_args()
    if args.wipe:
        wipe(args.wipe)
        return
    if args.upstream is None:
        parser.error("--upstream is required")
    sys.path.insert(0, str(ROOT))
    from tests.support import ServerProcess, moto_s3

    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # moto's server logs every request
    with tempfile.TemporaryDirectory(prefix="mr-e2e-") as tmp, moto_s3("default") as (s3, _):
        work = Path(tmp)
        db = args.db or f"sqlite:///{work / 'home' / 'kfbox.db'}"
        server = ServerProcess.start(work / "home", db=args.db)
        try:
            rows = run(args, server.url, db, s3, work)
        finally:
            server.stop()
    report(rows, args.json)


if __name__ == "__main__":
    main()
