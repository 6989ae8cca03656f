"""Dashboard server time per page on a big store, and the runs list beside a KFP-UI-style N+1 fetch.

One ``kfbox up`` (SQLite), seeded straight into its database with 10,000 runs (each with a
system.Metrics artifact, in 20 experiments), one 600-task run, and 100 models x 10 versions
(1,000 versions with metrics and model artifacts). Each page is warmed, then fetched in rounds
that rotate the page order; printed: p50/p95 milliseconds per page (client wall time over
loopback: server time plus a loopback hop). Goal: p95 < 150 ms.

Peer: the KFP UI's runs list shows metrics by asking for each run separately (one request per
row); the same 50 rows are fetched that way through the KFP API (1 list + 50 GETs) and compared
with the dashboard's one request (``/runs?metrics=...``, three queries in total).

    .venv/bin/python benchmarks/dashboard_pages.py [--rounds 30]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).parent))
from serving import kfbox_server

RUNS, EXPERIMENTS, MODELS, VERSIONS, WIDE_TASKS = 10_000, 20, 100, 10, 600


def seed(home: Path) -> dict[str, str]:
    from sqlalchemy import insert

    from kfbox.db import Database
    from kfbox.pipelines.tables import Artifact, Experiment, Run, Task
    from kfbox.registry.tables import Resource

    db = Database(f"sqlite:///{home / 'kfbox.db'}")
    spec = {"pipelineInfo": {"name": "bench"}, "root": {"dag": {"tasks": {
        f"step-{i}": {"taskInfo": {"name": f"step-{i}"}, "componentRef": {"name": "comp-step"},
                      **({"dependentTasks": [f"step-{i - 20}"]} if i >= 20 else {})} for i in range(WIDE_TASKS)}}},
            "components": {"comp-step": {"executorLabel": "exec-step"}}, "deploymentSpec": {"executors": {}}}
    small = {"pipelineInfo": {"name": "bench-small"}, "root": {"dag": {"tasks": {}}}, "components": {},
             "deploymentSpec": {"executors": {}}}
    now = int(time.time() * 1000)
    experiments = [str(uuid.uuid4()) for _ in range(EXPERIMENTS)]
    runs = [str(uuid.uuid4()) for _ in range(RUNS)]
    states = ["SUCCEEDED", "SUCCEEDED", "FAILED", "SUCCEEDED", "CANCELED"]
    with db.write() as s:
        s.execute(insert(Experiment), [{"id": e, "display_name": f"exp-{i}", "description": "", "namespace": "",
                                        "storage_state": "AVAILABLE", "created_ms": now - 10_000_000,
                                        "last_run_ms": now} for i, e in enumerate(experiments)])
        s.execute(insert(Run), [{"id": r, "experiment_id": experiments[i % EXPERIMENTS], "display_name": f"run-{i}",
                                 "description": "", "pipeline_spec": spec if i == 0 else small,
                                 "parameters": {"lr": i % 7 / 10}, "pipeline_root": "", "service_account": "",
                                 "storage_state": "AVAILABLE", "state": states[i % 5], "state_history": [],
                                 "created_ms": now - i * 1000, "scheduled_ms": now - i * 1000,
                                 "finished_ms": now - i * 1000 + 5000 + i % 97 * 100} for i, r in enumerate(runs)])
        s.execute(insert(Artifact), [{"run_id": r, "task_id": "t", "direction": "output", "key": "metrics",
                                      "name": "metrics", "uri": "", "schema_title": "system.Metrics",
                                      "artifact_metadata": {"accuracy": (i % 100) / 100, "loss": 1 - (i % 100) / 100},
                                      "created_ms": now} for i, r in enumerate(runs)])
        s.execute(insert(Task), [{"id": str(uuid.uuid4()), "run_id": runs[0], "parent_id": None, "name": f"step-{i}",
                                  "path": f"step-{i}", "kind": "container", "state": "SUCCEEDED", "cache_hit": False,
                                  "parameters": {}, "log_path": None, "created_ms": now, "started_ms": now,
                                  "finished_ms": now + 10} for i in range(WIDE_TASKS)])
    model_ids = []
    with db.write() as s:
        for m in range(MODELS):
            model = Resource(family="registered_model", kind="registered_model", scope=0, name=f"model-{m}",
                             state="LIVE", created_ms=now, updated_ms=now, attrs={"description": "bench"}, custom={})
            s.add(model)
            s.flush()
            model_ids.append(model.id)
            for v in range(VERSIONS):
                version = Resource(family="model_version", kind="model_version", scope=model.id, parent_id=model.id,
                                   name=f"v{v}", state="LIVE", created_ms=now + v, updated_ms=now, attrs={},
                                   custom={"accuracy": {"metadataType": "MetadataDoubleValue",
                                                        "double_value": 0.8 + v / 100}})
                s.add(version)
                s.flush()
                s.add(Resource(family="artifact", kind="model-artifact", scope=version.id, parent_id=version.id,
                               name=f"m{m}v{v}", state="LIVE", created_ms=now, updated_ms=now,
                               attrs={"uri": f"file:///models/{m}/{v}", "modelFormatName": "sklearn"}, custom={}))
    db.engine.dispose()
    return {"wide": runs[0], "run": runs[1], "other": runs[2], "model": str(model_ids[0])}


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=30)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, kfbox_server(Path(tmp)) as (url, _pid):
        ids = seed(Path(tmp))
        pages = ["/", "/runs", "/runs?sort=duration", "/runs?metrics=accuracy&metrics=loss&state=SUCCEEDED",
                 "/runs?q=run-99", "/runs?page_token=eyJvZmZzZXQiOiA5MDAwfQ==",
                 "/runs?metrics=accuracy&sort=metric:accuracy", "/runs?metrics=loss&sort=metric:loss&order=asc",
                 f"/runs/{ids['wide']}", f"/runs/{ids['wide']}?open=*", f"/runs/{ids['wide']}/states.json",
                 f"/runs/{ids['run']}", "/experiments", f"/compare?runs={ids['run']}&runs={ids['other']}",
                 "/models", f"/models/{ids['model']}", "/pipelines", "/artifacts", "/deployments", "/runs.json"]
        times: dict[str, list[float]] = {p: [] for p in pages}
        with httpx.Client(base_url=url, timeout=60, headers={"Accept": "text/html"}) as http:
            for p in pages:
                for _ in range(3):
                    assert http.get(p).status_code == 200, p
            for r in range(args.rounds):
                order = pages[r % len(pages):] + pages[:r % len(pages)]
                for p in order:
                    started = time.perf_counter()
                    http.get(p)
                    times[p].append((time.perf_counter() - started) * 1000)
            print(f"{RUNS} runs, {MODELS * VERSIONS} model versions, {WIDE_TASKS}-task run; {args.rounds} rounds")
            print(f"{'page':<64} {'p50 ms':>8} {'p95 ms':>8}")
            for p in pages:
                print(f"{p[:64]:<64} {statistics.median(times[p]):8.1f} {percentile(times[p], 0.95):8.1f}")
            worst = max(percentile(t, 0.95) for t in times.values())
            print(f"worst p95: {worst:.1f} ms (goal < 150 ms)")
            ours, peer = [], []
            for _ in range(10):
                started = time.perf_counter()
                http.get("/runs?metrics=accuracy&page_size=50")
                ours.append(time.perf_counter() - started)
                started = time.perf_counter()
                listed = http.get("/apis/v2beta1/runs", params={"page_size": 50}).json()["runs"]
                for run in listed:
                    http.get(f"/apis/v2beta1/runs/{run['run_id']}")
                peer.append(time.perf_counter() - started)
            a, b = statistics.median(ours) * 1000, statistics.median(peer) * 1000
            print(f"runs list with metrics, 50 rows: dashboard {a:.1f} ms (1 request) vs KFP-UI-style "
                  f"{b:.1f} ms (51 requests): {b / a:.1f}x")


if __name__ == "__main__":
    main()
