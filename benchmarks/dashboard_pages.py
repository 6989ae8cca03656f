"""Dashboard server time per page on a big store, the runs list and the 600-task run page beside a
KFP-UI-style fetch (one request per row), and the 600-task DAG's render time in Chromium.

One ``kfbox up`` (SQLite), seeded straight into its database with 10,000 runs (each with a
system.Metrics artifact, in 20 experiments), one 600-task run (each task with a log file), and
100 models x 10 versions (1,000 versions with metrics and model artifacts). Each page is warmed,
then fetched in rounds that rotate the page order. Printed per page: p50/p95 milliseconds (client
wall time over loopback: server time plus a loopback hop) and the server process's mean CPU
milliseconds per request (from /proc, summed over the rounds: what a loaded machine does not
distort). Goal: p95 < 150 ms.

Peers for the KFP UI's way (one request per row):

* runs list with metrics: the KFP UI asks for each run separately; the same 50 rows are fetched as
  1 list + 50 GETs through the KFP API, beside the dashboard's one request (``/runs?metrics=...``);
* the 600-task run page: the KFP UI reads the run, then one lookup per node (MLMD executions and
  artifacts); here GET /apis/v2beta1/runs/{id} then one request per task row (its log, standing in
  for the per-node lookup), beside the dashboard's one request.

DAG render (``--browser``, default when Playwright and Debian's chromium are there): the run page
loaded in headless Chromium N times; from the navigation timing, server (request start to first
byte), transfer, and render = last byte to the second animation frame after the load event (parse,
style, layout and first paint of 602 nodes and their edges), and the CPU time of Chromium's
processes per load (from /proc: what a loaded machine does not distort).

    .venv/bin/python benchmarks/dashboard_pages.py [--rounds 30] [--browser-loads 10]

Before/after a change, interleaved (machine load moves both sides alike)::

    git worktree add /tmp/dash-peer <rev>
    .venv/bin/python benchmarks/dashboard_pages.py --peer-src /tmp/dash-peer/src
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
from serving import cpu_seconds, kfbox_server

RUNS, EXPERIMENTS, MODELS, VERSIONS, WIDE_TASKS = 10_000, 20, 100, 10, 600
CHROMIUM = "/usr/bin/chromium"


def seed(home: Path) -> dict[str, str]:
    from sqlalchemy import MetaData, insert

    from kfbox.db import Database
    from kfbox.registry.tables import Resource

    db = Database(f"sqlite:///{home / 'kfbox.db'}")
    # the server's own schema, reflected: an older peer's tables lack columns this tree added
    schema = MetaData()
    schema.reflect(db.engine, only=["pipelines_experiments", "pipelines_runs", "pipelines_artifacts",
                                    "pipelines_tasks"])
    Experiment, Run, Artifact, Task = (schema.tables[f"pipelines_{n}"]
                                       for n in ("experiments", "runs", "artifacts", "tasks"))
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
                                      "metadata": {"accuracy": (i % 100) / 100, "loss": 1 - (i % 100) / 100},
                                      "created_ms": now} for i, r in enumerate(runs)])
        logs = home / "bench-logs"
        logs.mkdir(exist_ok=True)
        for i in range(WIDE_TASKS):
            (logs / f"step-{i}.log").write_text(f"step {i}: done\n")
        s.execute(insert(Task), [{"id": str(uuid.uuid4()), "run_id": runs[0], "parent_id": None, "name": f"step-{i}",
                                  "path": f"step-{i}", "kind": "container", "state": "SUCCEEDED", "cache_hit": False,
                                  "parameters": {}, "log_path": str(logs / f"step-{i}.log"), "created_ms": now + i,
                                  "started_ms": now, "finished_ms": now + 10} for i in range(WIDE_TASKS)])
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


def deep_page_token(http: httpx.Client, offset: int, step: int = 500) -> str:
    """The runs list's token for the page at ``offset``, walked to as a client would (tokens are the
    server's own, signed in newer trees: a hand-made one is refused)."""
    token = ""
    for _ in range(offset // step):
        token = http.get("/runs.json", params={"page_size": step, "page_token": token}).json()["next_page_token"]
    return token


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


PAGES = {"/": "/", "/runs": "/runs", "/runs?sort=duration": "/runs?sort=duration",
         "/runs?metrics=accuracy&metrics=loss&state=SUCCEEDED": "/runs?metrics=accuracy&metrics=loss&state=SUCCEEDED",
         "/runs?q=run-99": "/runs?q=run-99",
         "/runs?page_token=(offset 9000)": "/runs?page_token={deep}",
         "/runs?metrics=accuracy&sort=metric:accuracy": "/runs?metrics=accuracy&sort=metric:accuracy",
         "/runs?metrics=loss&sort=metric:loss&order=asc": "/runs?metrics=loss&sort=metric:loss&order=asc",
         "/runs/WIDE (600 tasks)": "/runs/{wide}", "/runs/WIDE?open=*": "/runs/{wide}?open=*",
         "/runs/WIDE/states.json (whole state)": "/runs/{wide}/states.json",
         "/runs/WIDE/states.json?since=V (a quiet poll)": "/runs/{wide}/states.json?since={version}",
         "/runs/RUN": "/runs/{run}",
         "/experiments": "/experiments", "/compare?runs=RUN&runs=OTHER": "/compare?runs={run}&runs={other}",
         "/models": "/models", "/models/MODEL": "/models/{model}", "/pipelines": "/pipelines",
         "/artifacts": "/artifacts", "/deployments": "/deployments", "/runs.json": "/runs.json"}


def timed(client: httpx.Client, pid: int, path: str) -> tuple[float, float]:
    """(wall ms, server CPU ms) of one GET; CPU from /proc in clock ticks, so only sums mean much."""
    cpu, started = cpu_seconds(pid), time.perf_counter()
    reply = client.get(path)
    wall = (time.perf_counter() - started) * 1000
    assert reply.status_code == 200, (path, reply.status_code)
    return wall, (cpu_seconds(pid) - cpu) * 1000


def per_row_peers(http: httpx.Client, pid: int, found: dict[str, str]) -> None:
    """The dashboard's one request beside the KFP UI's one request per row: medians of 10 for the runs
    list; for the run page, 5 of ours against one pass of 601 requests."""
    ours, kfp = [], []
    for _ in range(10):
        ours.append(timed(http, pid, "/runs?metrics=accuracy&page_size=50"))
        cpu, started = cpu_seconds(pid), time.perf_counter()
        listed = http.get("/apis/v2beta1/runs", params={"page_size": 50}).json()["runs"]
        for run in listed:
            http.get(f"/apis/v2beta1/runs/{run['run_id']}")
        kfp.append(((time.perf_counter() - started) * 1000, (cpu_seconds(pid) - cpu) * 1000))
    a, b = statistics.median(w for w, _ in ours), statistics.median(w for w, _ in kfp)
    print(f"runs list with metrics, 50 rows: dashboard {a:.1f} ms (1 request, {statistics.mean(c for _, c in ours):.1f}"
          f" CPU-ms) vs KFP-UI-style {b:.1f} ms (51 requests, {statistics.mean(c for _, c in kfp):.1f} CPU-ms): "
          f"{b / a:.1f}x")
    ours, kfp = [timed(http, pid, f"/runs/{found['wide']}") for _ in range(5)], []
    for _ in range(1):  # 601 requests: one pass is long enough to be steady
        cpu, started = cpu_seconds(pid), time.perf_counter()
        run = http.get(f"/apis/v2beta1/runs/{found['wide']}").json()
        tasks = [t for t in run["run_details"]["task_details"] if t.get("display_name", "").startswith("step-")]
        for task in tasks:
            assert http.get(f"/apis/v2beta1/runs/{found['wide']}/tasks/{task['display_name']}/logs").status_code == 200
        kfp.append(((time.perf_counter() - started) * 1000, (cpu_seconds(pid) - cpu) * 1000))
    a, b = statistics.median(w for w, _ in ours), statistics.median(w for w, _ in kfp)
    print(f"600-task run page: dashboard {a:.1f} ms (1 request, {statistics.mean(c for _, c in ours):.1f} CPU-ms) vs "
          f"KFP-UI-style {b:.1f} ms (1 + {len(tasks)} requests, {statistics.mean(c for _, c in kfp):.1f} CPU-ms): "
          f"{b / a:.1f}x")


RENDER_JS = """async () => {
    await new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)));
    const painted = performance.now();
    const nav = performance.getEntriesByType('navigation')[0];
    return {server: nav.responseStart - nav.requestStart, transfer: nav.responseEnd - nav.responseStart,
            render: painted - nav.responseEnd, nodes: document.querySelectorAll('#dag [data-node]').length};
}"""


def chromium_cpu() -> float:
    """CPU seconds of this process's Chromium processes (browser, renderer, GPU...), from /proc."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            children.setdefault(int(stat.read_text().rsplit(")", 1)[1].split()[1]), []).append(int(stat.parent.name))
    total, stack = 0.0, list(children.get(os.getpid(), []))
    while stack:
        pid = stack.pop()
        stack.extend(children.get(pid, []))
        with contextlib.suppress(OSError):
            if "chrom" in Path(f"/proc/{pid}/comm").read_text():
                total += cpu_seconds(pid)
    return total


def browser_render(url: str, found: dict[str, str], loads: int) -> None:
    """The 600-task run page in headless Chromium: server, transfer and render milliseconds per load."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--headless", "--no-sandbox", "--disable-gpu"])
        page = browser.new_context(viewport={"width": 1400, "height": 1000}).new_page()
        wide = f"/runs/{found['wide']}"
        for label, path in (("closed groups", wide), ("every group open", wide + "?open=*")):
            page.goto(url + path, wait_until="load")  # warm: fonts, static files, the layout cache
            got = []
            cpu = chromium_cpu()
            for _ in range(loads):
                page.goto(url + path, wait_until="load")
                got.append(page.evaluate(RENDER_JS))
            cpu_ms = (chromium_cpu() - cpu) * 1000 / loads
            assert all(g["nodes"] >= WIDE_TASKS for g in got), got[0]
            cols = {k: [g[k] for g in got] for k in ("server", "transfer", "render")}
            print(f"DAG of {got[0]['nodes']} nodes in Chromium ({label}, {loads} loads): " + ", ".join(
                f"{k} p50 {statistics.median(v):.0f} ms / p95 {percentile(v, 0.95):.0f} ms" for k, v in cols.items())
                + f"; Chromium CPU {cpu_ms:.0f} ms per load (all its processes)")
        browser.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=30, help="0: the browser figures only")
    parser.add_argument("--peer-src", type=Path, default=None,
                        help="an older kfbox's src folder (git worktree add DIR REV; DIR/src): served beside "
                             "this one with the same seed, rounds interleaved, ratios printed")
    parser.add_argument("--browser-loads", type=int, default=10,
                        help="loads of the 600-task run page in Chromium (0: skip; needs Playwright and "
                             f"{CHROMIUM})")
    args = parser.parse_args()
    with contextlib.ExitStack() as stack:
        sides: dict[str, tuple[httpx.Client, int, dict[str, str]]] = {}
        urls: dict[str, str] = {}
        for side, src in (("this", None), ("peer", args.peer_src)):
            if side == "peer" and src is None:
                continue
            home = Path(stack.enter_context(tempfile.TemporaryDirectory()))
            saved = os.environ.pop("PYTHONPATH", None)
            if src is not None:
                os.environ["PYTHONPATH"] = str(src.resolve())
            try:
                url, pid = stack.enter_context(kfbox_server(home))
            finally:
                os.environ.pop("PYTHONPATH", None)
                if saved is not None:
                    os.environ["PYTHONPATH"] = saved
            http = stack.enter_context(httpx.Client(base_url=url, timeout=60, headers={"Accept": "text/html"}))
            found = seed(home)
            found["version"] = str(http.get(f"/runs/{found['wide']}.json").json().get("version", ""))
            found["deep"] = deep_page_token(http, 9000)
            sides[side], urls[side] = (http, pid, found), url
        times: dict[tuple[str, str], list[tuple[float, float]]] = {}
        usable: dict[str, list[str]] = {}
        for side, (client, _pid, found) in sides.items():
            usable[side] = []
            for name, path in PAGES.items():
                replies = [client.get(path.format(**found)).status_code for _ in range(3)]
                if replies == [200] * 3:
                    usable[side].append(name)
                else:
                    assert side == "peer", (name, replies)  # a page the older version lacks
        names = list(PAGES)
        for r in range(args.rounds):
            for name in names[r % len(names):] + names[:r % len(names)]:
                for side in sorted(sides, reverse=r % 2 == 1):  # who goes first alternates
                    if name in usable[side]:
                        client, pid, found = sides[side]
                        times.setdefault((side, name), []).append(timed(client, pid, PAGES[name].format(**found)))
        if args.rounds:
            report(times, names, "peer" in sides, args.rounds)
            per_row_peers(*sides["this"])
        if args.browser_loads and Path(CHROMIUM).exists():
            browser_render(urls["this"], sides["this"][2], args.browser_loads)


def report(times: dict[tuple[str, str], list[tuple[float, float]]], names: list[str], peer: bool, rounds: int) -> None:
    print(f"{RUNS} runs, {MODELS * VERSIONS} model versions, {WIDE_TASKS}-task run; {rounds} rounds; "
          f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs; one server process each")
    peer_cols = f" {'peer p95':>9} {'peer CPU':>9} {'p95 peer/this':>14}" if peer else ""
    print(f"{'page':<52} {'p50 ms':>8} {'p95 ms':>8} {'CPU ms':>7}{peer_cols}")
    for name in names:
        wall, cpu = zip(*times[("this", name)], strict=True)
        line = (f"{name[:52]:<52} {statistics.median(wall):8.1f} {percentile(list(wall), 0.95):8.1f}"
                f" {statistics.mean(cpu):7.1f}")
        if ("peer", name) in times:
            their_wall, their_cpu = zip(*times[("peer", name)], strict=True)
            line += (f" {percentile(list(their_wall), 0.95):9.1f} {statistics.mean(their_cpu):9.1f}"
                     f" {percentile(list(their_wall), 0.95) / percentile(list(wall), 0.95):13.2f}x")
        print(line)
    worst = max(percentile([w for w, _ in t], 0.95) for (side, _), t in times.items() if side == "this")
    print(f"worst p95: {worst:.1f} ms (goal < 150 ms)")


if __name__ == "__main__":
    main()
