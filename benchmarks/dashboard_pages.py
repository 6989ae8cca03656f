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

Before/after a change, interleaved (machine load moves both sides alike)::

    git archive <rev> src | tar -x -C /tmp/before
    .venv/bin/python benchmarks/dashboard_pages.py --peer-src /tmp/before/src
"""

from __future__ import annotations

import argparse
import contextlib
import os
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
    parser.add_argument("--peer-src", type=Path, default=None,
                        help="an older kfbox's src folder (git archive REV src | tar -x -C DIR): served beside "
                             "this one with the same seed, rounds interleaved, ratios printed")
    args = parser.parse_args()
    with contextlib.ExitStack() as stack:
        sides: dict[str, tuple[httpx.Client, dict[str, str]]] = {}
        for side, src in (("this", None), ("peer", args.peer_src)):
            if side == "peer" and src is None:
                continue
            home = Path(stack.enter_context(tempfile.TemporaryDirectory()))
            saved = os.environ.pop("PYTHONPATH", None)
            if src is not None:
                os.environ["PYTHONPATH"] = str(src.resolve())
            try:
                url, _pid = stack.enter_context(kfbox_server(home))
            finally:
                os.environ.pop("PYTHONPATH", None)
                if saved is not None:
                    os.environ["PYTHONPATH"] = saved
            http = stack.enter_context(httpx.Client(base_url=url, timeout=60, headers={"Accept": "text/html"}))
            sides[side] = (http, seed(home))
        http = sides["this"][0]
        pages = {"/": "/", "/runs": "/runs", "/runs?sort=duration": "/runs?sort=duration",
                 "/runs?metrics=accuracy&metrics=loss&state=SUCCEEDED":
                     "/runs?metrics=accuracy&metrics=loss&state=SUCCEEDED",
                 "/runs?q=run-99": "/runs?q=run-99",
                 "/runs?page_token=eyJvZmZzZXQiOiA5MDAwfQ==": "/runs?page_token=eyJvZmZzZXQiOiA5MDAwfQ==",
                 "/runs?metrics=accuracy&sort=metric:accuracy": "/runs?metrics=accuracy&sort=metric:accuracy",
                 "/runs?metrics=loss&sort=metric:loss&order=asc": "/runs?metrics=loss&sort=metric:loss&order=asc",
                 "/runs/WIDE (600 tasks)": "/runs/{wide}", "/runs/WIDE?open=*": "/runs/{wide}?open=*",
                 "/runs/WIDE/states.json (a poll)": "/runs/{wide}/states.json", "/runs/RUN": "/runs/{run}",
                 "/experiments": "/experiments", "/compare?runs=RUN&runs=OTHER": "/compare?runs={run}&runs={other}",
                 "/models": "/models", "/models/MODEL": "/models/{model}", "/pipelines": "/pipelines",
                 "/artifacts": "/artifacts", "/deployments": "/deployments", "/runs.json": "/runs.json"}
        times: dict[tuple[str, str], list[float]] = {}
        usable: dict[str, list[str]] = {}
        for side, (client, found) in sides.items():
            usable[side] = []
            for name, path in pages.items():
                replies = [client.get(path.format(**found)).status_code for _ in range(3)]
                if replies == [200] * 3:
                    usable[side].append(name)
                else:
                    assert side == "peer", (name, replies)  # a page the older version lacks
        names = list(pages)
        for r in range(args.rounds):
            for name in names[r % len(names):] + names[:r % len(names)]:
                for side in sorted(sides, reverse=r % 2 == 1):  # who goes first alternates
                    if name not in usable[side]:
                        continue
                    client, found = sides[side]
                    started = time.perf_counter()
                    client.get(pages[name].format(**found))
                    times.setdefault((side, name), []).append((time.perf_counter() - started) * 1000)
        print(f"{RUNS} runs, {MODELS * VERSIONS} model versions, {WIDE_TASKS}-task run; {args.rounds} rounds; "
              f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs; one server process each")
        peer_cols = f" {'peer p50':>9} {'peer p95':>9} {'p95 peer/this':>14}" if "peer" in sides else ""
        print(f"{'page':<52} {'p50 ms':>8} {'p95 ms':>8}{peer_cols}")
        for name in names:
            ours_t = times[("this", name)]
            line = f"{name[:52]:<52} {statistics.median(ours_t):8.1f} {percentile(ours_t, 0.95):8.1f}"
            if ("peer", name) in times:
                theirs = times[("peer", name)]
                line += (f" {statistics.median(theirs):9.1f} {percentile(theirs, 0.95):9.1f}"
                         f" {percentile(theirs, 0.95) / percentile(ours_t, 0.95):13.2f}x")
            print(line)
        worst = max(percentile(t, 0.95) for (side, _), t in times.items() if side == "this")
        print(f"worst p95: {worst:.1f} ms (goal < 150 ms)")
        ours, kfp = [], []
        for _ in range(10):
            started = time.perf_counter()
            http.get("/runs?metrics=accuracy&page_size=50")
            ours.append(time.perf_counter() - started)
            started = time.perf_counter()
            listed = http.get("/apis/v2beta1/runs", params={"page_size": 50}).json()["runs"]
            for run in listed:
                http.get(f"/apis/v2beta1/runs/{run['run_id']}")
            kfp.append(time.perf_counter() - started)
        a, b = statistics.median(ours) * 1000, statistics.median(kfp) * 1000
        print(f"runs list with metrics, 50 rows: dashboard {a:.1f} ms (1 request) vs KFP-UI-style "
              f"{b:.1f} ms (51 requests): {b / a:.1f}x")


if __name__ == "__main__":
    main()
