"""Gateway hop benchmark (issue 15 item 4): iris KNN V1 predict through the kfbox gateway against
the same kserve replica straight, and beside a stock KServe sklearn server on the same model.

    .venv/bin/python benchmarks/gateway.py [--seconds 3] [--rounds 3] [--baseline-src DIR]
    .venv/bin/python benchmarks/gateway.py --model forest [--trees 40]   # two replicas against one
    .venv/bin/python benchmarks/gateway.py --handoff [--haproxy]   # the other data planes in the same rounds

* closed loop, ``wrk -t1 -cC`` (one client kind for every path), C = 1, 8, 64; the paths take
  turns in rotating order each round, after a warm-up; the CPU milliseconds per request of the
  kfbox server process (the gateway) and of the replica(s) from /proc;
* two replicas against one through the gateway at c=8 and c=64;
* open loop (:mod:`benchmarks.openloop`, fixed rate, latency from each request's due time): the
  gateway, the direct replica and the stock server from 100 to 2,000 req/s, then overload.

``--baseline-src DIR`` also starts a second ``kfbox up`` from another source tree (e.g. ``git
archive HEAD~3 src | tar -x -C /tmp/before``) with its own iris replica, measured in the same
rounds: before and after in one run. The stock server is ``tests.serving.stock_sklearn`` (upstream
sklearnserver's logic on the installed ``kserve.ModelServer``; the ``sklearnserver`` package is not
on PyPI), started with kserve's ``--log_config_file`` set to the logging kfbox's replicas use (no
per-request access or timing lines), so the two compare like for like. Every process here is one
Python process (one core at most); the machine's cores and its load are printed: compare ratios,
not absolute numbers.

Reading the CPU figures (why the full server's gateway CPU was ~2x :mod:`benchmarks.gateway_hop`'s).
The gateway's per-request *work* is the same in both: under callgrind (user-space instructions,
load-independent, idle background subtracted) the hop in front of a replica that answers at once
runs 373k instructions per request, in front of the same stand-in answering 2.5 ms later 372k,
in front of a kserve iris replica 374k, and ``kfbox up``'s gateway in front of its own replica
359k. Its CPU *time* is not: at c=1 on this 2-core VM (load 6-9) the same four cost 0.13, 0.29,
0.39 and 0.45-0.49 ms. What differs is how long the gateway sleeps between the request's events
and what runs meanwhile: after each sleep its caches are cold (a kserve replica, numpy, sklearn
and whatever else the machine runs have been through them), so each instruction costs 2-3x.
Hence the wake-ups per request printed beside the CPU (voluntary context switches, from /proc),
and hence figures that move with the machine's state more than with the code: the same hop
binary measured 0.50 ms on a quiet machine and 0.14 ms at load 10, HAProxy 0.20 and 0.034.
Syscalls are the same too: ~8.5 per request in both servers (strace -c). The server's own
background (the manager's 5 ticks a second, uvicorn's, the protocol's sweep) costs ~1.2M
instructions a second, about 1% of the gateway's CPU at 300 req/s; it is subtracted in the
"net" figure. The lever is therefore fewer wake-ups, not fewer Python lines: kfbox's replicas
write each reply's head and body in one write (:mod:`kfbox.server.coalesce`), so the gateway wakes
1.9 times per request at c=1 instead of 2.7 (2 is the floor: the request, then the reply).

The replica is where a request's CPU goes: 5.1M instructions per iris V1 request (callgrind),
~14x the gateway's, nearly all of it Python (FastAPI's request handling and sklearn's
``KNeighborsClassifier.predict`` with scipy's ``mode``). Swapping kserve's event loop for uvloop
changed it by under 1% (5.11M against 5.14M), so kfbox keeps kserve's asyncio loop. One replica is
one process: at 1.2-3 ms of CPU a request (it moves with the machine's state as the gateway's
does) it cannot pass 330-830 req/s even with a core to itself (~300 measured on the quiet
machine), so 500 req/s needs two replicas: 0.6-1.5 cores for them, 0.2-0.3 for the gateway and
about as much for the load generator, of the machine's 2. p99 under 10 ms at 500 req/s is within reach only on a
quiet machine with two replicas (``gateway 2 replicas`` in the open-loop table), and not with one.
Since then the replica skips sklearn's checks of its own internal arguments and kserve's timing
middleware: 4.65M instructions (README, "A replica's environment and threads"); and answers V1 predict
on a lean route with a lean KNN predict (:mod:`kfbox.serving.fastpath`, :mod:`kfbox.serving.sklearn_calls`):
1.31M, 0.38 ms of CPU, so one replica now serves 500 req/s open-loop with p99 18-67 ms at load 4-6
(README, "The replica's fast path").

Two replicas against one where the cores allow (``--model forest``). With iris one replica (0.4 ms
of CPU a request), the gateway (0.24 ms) and wrk already fill this machine's 2 cores, so two iris
replicas measure 0.89-1.01x one: the cores, not the gateway, are the limit, and that figure says
nothing about whether the gateway lets a second replica add throughput. For that the replicas must
be the bottleneck: ``--model forest`` serves a random forest trained here on iris (``--trees``, 40 by
default; the same request body) whose predict costs several ms of replica CPU a request, 10-30x the
gateway's; single-threaded (``n_jobs=1``, and a replica's OpenMP/BLAS pools have one thread,
:mod:`kfbox.serving.native_threads`). It runs the closed loop only: ``gateway`` (one replica),
``direct`` and ``gateway 2 replicas``, the same wrk, interleaved rounds after a warm-up, at c = 1,
2, 4, 8, and prints for each side its req/s, its replicas' CPU per request (summed) and the cores
they and the gateway kept busy, the ratio, and the load average after each level.

What the figures mean. ``2 replicas/1`` at c >= 2 is the one to read (at c=1 one request is in flight,
so the second replica has nothing to do: the gateway keeps sending to the same one and the ratio is
1 plus noise). Its ceiling on a quiet 2-core machine is about ``min(2, 2 r / (r + o))``, with r the
replica's CPU per request and o the gateway's plus wrk's (one replica is held to one core; two to the
machine's two, shared with the rest): ~1.8 with r = 4 ms and o = 0.45 ms. On a shared machine the
ratio says more about the scheduler than the gateway, either way: each runnable process gets a
share of the cores, so two replicas get up to two shares and the ratio can pass the ceiling, even 2;
the cores the replicas kept busy say how much CPU they got, and the split of CPU between ``replica 0``
and ``replica 1`` whether the gateway balanced. ``gateway/direct`` for this model weighs the hop's
fixed ~0.2-0.5 ms against a replica's several ms. On the quiet machine (load 0.1-1.4; ``--model forest
--seconds 5 --rounds 3``; 3.8-4.0 ms of replica CPU a request, the gateway's 0.28-0.31 ms): 2 replicas/1
1.55 (c=2), 1.85 (c=4), 1.86 (c=8), each replica taking half the CPU, one replica 0.99 cores and two 1.60-1.82;
gateway/direct 0.93 (c=1), 1.00, 0.98, 1.00. On a loaded machine (load 9-12) the ratio passed 2 (above).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.openloop import RateReport, fixed_rate
from benchmarks.serving import cpu_seconds, listening_pid

NAMESPACE = "kubeflow-user-example-com"
BODY = b'{"instances": [[6.8, 2.8, 4.8, 1.4], [6.0, 3.4, 4.5, 1.6]]}'
API = "/apis/serving.kserve.io/v1beta1/namespaces/" + NAMESPACE + "/inferenceservices"
ROOT = Path(__file__).resolve().parents[1]
CONCURRENCY = (1, 8, 64)
FOREST_CONCURRENCY = (1, 2, 4, 8)
FOREST_TREES = 40
RATES = (50, 100, 250, 500, 1000, 2000)
HAPROXY = """
global
    nbthread 1
    maxconn 4096
defaults
    mode http
    timeout connect 2s
    timeout client 30s
    timeout server 300s
    http-reuse always
frontend gateway
    bind 127.0.0.1:{port}
    default_backend replica
backend replica
    server r1 127.0.0.1:{replica}
"""


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def source_tree(folder: Path) -> Path:
    """The folder holding the ``kfbox`` package: ``DIR/src`` of a checkout or archive, else ``DIR`` itself."""
    return folder / "src" if (folder / "src" / "kfbox").is_dir() else folder


def train(folder: Path) -> None:
    import joblib
    from sklearn.datasets import load_iris
    from sklearn.neighbors import KNeighborsClassifier

    folder.mkdir(parents=True, exist_ok=True)
    data = load_iris()
    joblib.dump(KNeighborsClassifier(n_neighbors=3).fit(data.data, data.target), folder / "model.joblib")


def train_forest(folder: Path, trees: int) -> None:
    """A random forest on iris: the same request body as the KNN, several ms of replica CPU per request
    (scikit-learn predicts tree by tree, one thread: ``n_jobs=1``, and a replica's OpenMP/BLAS pools
    have one thread, :mod:`kfbox.serving.native_threads`)."""
    import joblib
    from sklearn.datasets import load_iris
    from sklearn.ensemble import RandomForestClassifier

    folder.mkdir(parents=True, exist_ok=True)
    data = load_iris()
    forest = RandomForestClassifier(n_estimators=trees, n_jobs=1, random_state=0).fit(data.data, data.target)
    joblib.dump(forest, folder / "model.joblib")


def wait_for(check: Any, what: str, timeout: float = 120.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(httpx.HTTPError, OSError, ValueError, KeyError):
            if value := check():
                return value
        time.sleep(0.2)
    raise RuntimeError(f"timed out waiting for {what}")


@contextlib.contextmanager
def child(argv: list[str], log: Path, env: dict[str, str] | None = None) -> Iterator[subprocess.Popen[bytes]]:
    with open(log, "ab") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, start_new_session=True, cwd=ROOT,
                                env=env or dict(os.environ))
    try:
        yield proc
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, 15)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, 9)
            proc.wait()


@contextlib.contextmanager
def kfbox_server(home: Path, src: Path | None = None, data_plane: str = "python") -> Iterator[tuple[str, int]]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KFBOX_")}
    env.update(KFBOX_PIPELINES_SPARE_WORKER="0", KFBOX_SERVING_WARM_STANDBY="0", KFBOX_DATA_PLANE=data_plane)
    if src is not None:
        env["PYTHONPATH"] = str(src)
    argv = [sys.executable, "-m", "kfbox", "up", "--port", "0", "--home", str(home)]
    with child(argv, home.parent / f"{home.name}-server.log", env) as proc:
        def ready() -> tuple[str, int] | None:
            record = json.loads((home / "server.json").read_text())
            ok = record["pid"] == proc.pid and httpx.get(record["url"] + "/healthz").status_code == 200
            return (str(record["url"]), proc.pid) if ok else None

        yield wait_for(ready, "kfbox up")


def apply_iris(url: str, name: str, replicas: int, model: str = "iris") -> list[str]:
    """Serve pvc://models/``model`` with ``replicas`` replicas; the replicas' own URLs."""
    manifest = {"apiVersion": "serving.kserve.io/v1beta1", "kind": "InferenceService",
                "metadata": {"name": name, "namespace": NAMESPACE},
                "spec": {"predictor": {"minReplicas": replicas, "maxReplicas": replicas,
                                       "model": {"modelFormat": {"name": "sklearn"},
                                                 "storageUri": f"pvc://models/{model}"}}}}
    httpx.post(url + API, json=manifest, timeout=30).raise_for_status()

    def ready() -> dict[str, Any] | None:
        status = httpx.get(f"{url}{API}/{name}", timeout=10).json()["status"]
        return status if status.get("replicas") == replicas else None

    status = wait_for(ready, f"{replicas} ready replica(s) of {name}")
    return [e for revision in status["revisions"].values() for e in revision.get("endpoints", [])]


def post_script(work: Path, body: bytes) -> Path:
    """wrk's Lua script for a JSON POST of ``body`` (wrk sends GETs otherwise)."""
    script = work / "post.lua"
    script.write_text(f'wrk.method = "POST"\nwrk.body = \'{body.decode()}\'\n'
                      'wrk.headers["Content-Type"] = "application/json"\n')
    return script


def wrk(url: str, concurrency: int, seconds: float, script: Path) -> dict[str, float]:
    out = subprocess.run(["wrk", "-t1", f"-c{concurrency}", f"-d{max(1, round(seconds))}s", "--latency",
                          "--timeout", "10s", "-s", str(script), url], capture_output=True, text=True).stdout
    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    total = re.search(r"(\d+) requests in", out)
    if rps is None or total is None or "Non-2xx" in out or re.search(r"connect [1-9]|read [1-9]|write [1-9]", out):
        raise RuntimeError(f"wrk did not report a clean run on {url}:\n{out}")
    timeouts = re.search(r"timeout (\d+)", out)

    def pct(label: str) -> float:
        match = re.search(rf"\s{label}%\s+([\d.]+)(us|ms|s)", out)
        assert match is not None, out
        return float(match.group(1)) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[match.group(2)]

    return {"rps": float(rps.group(1)), "requests": int(total.group(1)), "p50_ms": pct("50"), "p99_ms": pct("99"),
            "timeouts": int(timeouts.group(1)) if timeouts else 0}


def wakeups(pid: int) -> int:
    """How often the process's threads went to sleep and had to be woken (voluntary context switches), from /proc.

    A hop's CPU per request follows these more than its instructions: see the module docstring.
    """
    total = 0
    for task in Path(f"/proc/{pid}/task").glob("*"):
        with contextlib.suppress(OSError):  # a thread that ended in between
            found = re.search(r"\nvoluntary_ctxt_switches:\s+(\d+)", (task / "status").read_text())
            total += int(found.group(1)) if found else 0
    return total


def closed_loop(paths: dict[str, str], watch: dict[str, dict[str, int]], concurrency: int, seconds: float,
                rounds: int, script: Path) -> dict[str, dict[str, Any]]:
    for url in paths.values():
        wrk(url, concurrency, 1, script)  # warm-up: connections, caches, lazy imports
    labels = list(paths)
    runs: dict[str, list[dict[str, float]]] = {label: [] for label in labels}
    cpu: dict[str, dict[str, float]] = {label: {} for label in labels}
    wakes: dict[str, dict[str, int]] = {label: {} for label in labels}
    wall = dict.fromkeys(labels, 0.0)
    for turn in range(rounds):
        for label in labels[turn % len(labels):] + labels[:turn % len(labels)]:
            before = {name: cpu_seconds(pid) for name, pid in watch[label].items()}
            slept = {name: wakeups(pid) for name, pid in watch[label].items()}
            started = time.monotonic()
            runs[label].append(wrk(paths[label], concurrency, seconds / rounds, script))
            wall[label] += time.monotonic() - started
            for name, pid in watch[label].items():
                cpu[label][name] = cpu[label].get(name, 0.0) + cpu_seconds(pid) - before[name]
                wakes[label][name] = wakes[label].get(name, 0) + wakeups(pid) - slept[name]
    cells = {}
    for label in labels:
        requests = sum(r["requests"] for r in runs[label])
        ordered = sorted(r["rps"] for r in runs[label])
        cells[label] = {"rps": ordered[len(ordered) // 2], "rps_runs": [r["rps"] for r in runs[label]],
                        "p50_ms": sorted(r["p50_ms"] for r in runs[label])[len(ordered) // 2],
                        "p99_ms": sorted(r["p99_ms"] for r in runs[label])[len(ordered) // 2],
                        "cpu_ms_per_request": {n: v * 1000 / requests for n, v in cpu[label].items()},
                        "wakeups_per_request": {n: v / requests for n, v in wakes[label].items()},
                        "requests": requests, "wall_s": wall[label], "cpu_s": cpu[label],
                        "timeouts": sum(r["timeouts"] for r in runs[label])}
    # the kfbox server's own background (the manager's tick, probes) while the direct path runs, which it
    # does not serve: subtracted from the gateway's figures to give the CPU the hop itself costs
    idle = cells["direct"]["cpu_s"]["gateway"] / cells["direct"]["wall_s"]
    for label in labels:
        if "gateway" in cells[label]["cpu_s"] and label != "direct":
            net = cells[label]["cpu_s"]["gateway"] - idle * cells[label]["wall_s"]
            cells[label]["gateway_net_ms_per_request"] = net * 1000 / cells[label]["requests"]
    return cells


def open_loop(paths: dict[str, str], rates: tuple[int, ...], seconds: float,
              rounds: int = 1) -> dict[str, dict[int, Any]]:
    """Each rate ``rounds`` times, the paths taking turns in rotating order; a path's rounds pooled."""
    results: dict[str, dict[int, Any]] = {label: {} for label in paths}
    labels = list(paths)
    for rate in rates:
        runs: dict[str, list[RateReport]] = {label: [] for label in labels}
        for turn in range(rounds):
            for label in labels[turn % len(labels):] + labels[:turn % len(labels)]:
                asyncio.run(fixed_rate(paths[label], BODY, rate=min(rate, 200), seconds=0.5))  # warm-up
                runs[label].append(asyncio.run(fixed_rate(paths[label], BODY, rate=rate, seconds=seconds)))
        for label in labels:
            report = _pooled(runs[label])
            ok = report.statuses.get(200, 0)
            results[label][rate] = {"sent": report.sent, "ok": ok, "p50_ms": report.percentile(50) * 1000,
                                    "p99_ms": report.percentile(99) * 1000, "timeouts": report.timeouts,
                                    "others_p99_ms": report.percentile(99, others=True) * 1000,
                                    "errors": report.errors, "unsent": report.unsent,
                                    "statuses": {str(k): v for k, v in report.statuses.items()}}
    return results


def _pooled(reports: list[RateReport]) -> RateReport:
    """One report of several runs at the same rate: their requests and latencies together."""
    pooled = RateReport(reports[0].rate, 0, [], Counter(), 0, 0)
    for report in reports:
        pooled.sent += report.sent
        pooled.latencies += report.latencies
        pooled.other_latencies += report.other_latencies
        pooled.statuses += report.statuses
        pooled.timeouts += report.timeouts
        pooled.errors += report.errors
        pooled.unsent += report.unsent
    return pooled


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=6.0, help="measured seconds per path and concurrency")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--rate-seconds", type=float, default=4.0, help="seconds per open-loop rate")
    parser.add_argument("--rates", default=",".join(map(str, RATES)))
    parser.add_argument("--rate-rounds", type=int, default=1,
                        help="open-loop rounds per rate, the paths interleaved; percentiles over all rounds")
    parser.add_argument("--concurrency", default=None,
                        help="closed-loop connections, e.g. 1 for the c=1 goal alone (default: "
                             f"{','.join(map(str, CONCURRENCY))}; "
                             f"with --model forest {','.join(map(str, FOREST_CONCURRENCY))})")
    parser.add_argument("--model", choices=("iris", "forest"), default="iris",
                        help="iris: the examples' KNN (all of the above); forest: a random forest on iris costing "
                             "several ms of replica CPU per request, closed loop only (two replicas against one "
                             "where the cores allow: see the docstring)")
    parser.add_argument("--trees", type=int, default=FOREST_TREES, help="--model forest: its number of trees")
    parser.add_argument("--baseline-src", type=Path, default=None, help="a second kfbox source tree, e.g. before")
    parser.add_argument("--haproxy", action="store_true", help="also HAProxy (Debian) in front of the same replica")
    parser.add_argument("--handoff", action="store_true",
                        help="also a kfbox up --data-plane handoff with its own iris replica, through its port "
                             "('handoff') and straight ('handoff direct'): the ratio is against its own replica")
    parser.add_argument("--skip-closed", action="store_true")
    parser.add_argument("--skip-open", action="store_true")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        print("wrk is not installed: apt-get install -y wrk")
        return 2
    forest = args.model == "forest"
    if forest:
        args.skip_open = True  # the open-loop curve is iris's (its rates are far past one forest replica)
    name = args.model
    concurrency = args.concurrency or ",".join(map(str, FOREST_CONCURRENCY if forest else CONCURRENCY))
    results: dict[str, Any] = {"cpus": os.cpu_count(), "load_before": os.getloadavg(), "model": name,
                               **({"trees": args.trees} if forest else {})}
    print(f"cores {os.cpu_count()}, load average {os.getloadavg()[0]:.1f}; every server here is one process; "
          f"model {name}" + (f" ({args.trees} trees)" if forest else ""))
    with tempfile.TemporaryDirectory(prefix="kfbox-gw-") as tmp, contextlib.ExitStack() as stack:
        work = Path(tmp)
        script = post_script(work, BODY)
        # this tree's src, not the editable install's (a worktree's checkout runs its own code)
        homes = {"": ROOT / "src"}
        if args.baseline_src is not None:
            homes["before"] = source_tree(args.baseline_src.resolve())
        paths: dict[str, str] = {}
        watch: dict[str, dict[str, int]] = {}
        for tag, src in homes.items():
            home = work / (tag or "home")
            model = home / "pvc" / "models" / name
            if forest:
                train_forest(model, args.trees)
            else:
                train(model)
            url, pid = stack.enter_context(kfbox_server(home, src))
            one = apply_iris(url, name, 1, name)[0]
            replica = {"replica": rp} if (rp := listening_pid(urlsplit(one).port or 80)) else {}
            label = f"gateway {tag}".strip()
            paths[label] = f"{url}/serving/{NAMESPACE}/{name}/v1/models/{name}:predict"
            watch[label] = {"gateway": pid, **replica}
            if not tag:
                paths["direct"] = f"{one}/v1/models/{name}:predict"
                watch["direct"] = {"gateway": pid, **replica}
                two = apply_iris(url, f"{name}-2", 2, name)
                paths["gateway 2 replicas"] = f"{url}/serving/{NAMESPACE}/{name}-2/v1/models/{name}-2:predict"
                watch["gateway 2 replicas"] = {"gateway": pid, **{
                    f"replica {i}": p for i, e in enumerate(two) if (p := listening_pid(urlsplit(e).port or 80))}}
                if args.haproxy:
                    port = free_port()
                    config = work / "haproxy.cfg"
                    config.write_text(HAPROXY.format(port=port, replica=urlsplit(one).port))
                    proxy = stack.enter_context(child(["haproxy", "-db", "-f", str(config)], work / "haproxy.log"))
                    paths["haproxy"] = f"http://127.0.0.1:{port}/v1/models/{name}:predict"
                    watch["haproxy"] = {"haproxy": proxy.pid, **replica}
                    wait_for(lambda url=paths["haproxy"]: httpx.post(url, content=BODY).status_code == 200, "haproxy")
                if not args.skip_open:  # the stock server is on the open-loop curve only
                    stock_port = free_port()
                    # like for like: kserve's own --log_config_file with the configuration kfbox's replicas use
                    # (no per-request access or timing lines)
                    log_config = work / "kserve-logging.json"
                    from kfbox.serving.replica import log_config as replica_log_config  # this tree's

                    log_config.write_text(json.dumps(replica_log_config()))
                    stack.enter_context(child([sys.executable, "-m", "tests.serving.stock_sklearn", str(model),
                                               name, str(stock_port), "--log_config_file", str(log_config)],
                                              work / "stock.log"))
                    stock = f"http://127.0.0.1:{stock_port}/v1/models/{name}:predict"
                    wait_for(lambda url=stock: httpx.post(url, content=BODY).status_code == 200, "the stock server")
        if args.handoff:
            home = work / "handoff"
            (train_forest(home / "pvc" / "models" / name, args.trees) if forest
             else train(home / "pvc" / "models" / name))
            url, pid = stack.enter_context(kfbox_server(home, ROOT / "src", "handoff"))
            one = apply_iris(url, name, 1, name)[0]
            replica = {"replica": rp} if (rp := listening_pid(urlsplit(one).port or 80)) else {}
            paths["handoff"] = f"{url}/serving/{NAMESPACE}/{name}/v1/models/{name}:predict"
            paths["handoff direct"] = f"{one}/v1/models/{name}:predict"
            watch["handoff"] = watch["handoff direct"] = {"server": pid, **replica}
        if not args.skip_closed:
            levels = tuple(int(c) for c in concurrency.split(","))
            by_c, load = {}, {}
            for c in levels:
                by_c[c] = closed_loop(paths, watch, c, args.seconds, args.rounds, script)
                load[c] = os.getloadavg()[0]  # the last minute's, so mostly this level's run
            results["closed"] = {str(c): cells for c, cells in by_c.items()}
            results["load_after_level"] = {str(c): v for c, v in load.items()}
            print(f"\n{'path':<22}{'c':>4}{'req/s':>9}{'p50 ms':>9}{'p99 ms':>9}   CPU ms per request")
            for label in paths:
                for c in levels:
                    m = by_c[c][label]
                    cpu = "  ".join(f"{n} {ms:.3f} ({m['wakeups_per_request'][n]:.1f} wake-ups)"
                                    for n, ms in m["cpu_ms_per_request"].items())
                    if "gateway_net_ms_per_request" in m:
                        cpu += f"  (gateway net of its idle background {m['gateway_net_ms_per_request']:.3f})"
                    print(f"{label:<22}{c:>4}{m['rps']:>9.0f}{m['p50_ms']:>9.2f}{m['p99_ms']:>9.2f}   {cpu}")
            print("\nratios (median req/s of the rounds; goal: gateway/direct >= 0.9 at every c)")
            for c in levels:
                cells = by_c[c]
                if not all(cell["rps"] for cell in cells.values()):
                    print(f"  c={c:<3} a path served nothing in a round (the machine is starved): no ratios")
                    continue
                line = f"  c={c:<3} gateway/direct {cells['gateway']['rps'] / cells['direct']['rps']:.2f}"
                for other in ("gateway before", "haproxy"):
                    if other in cells:
                        line += f"  ({other} {cells[other]['rps'] / cells['direct']['rps']:.2f})"
                if "handoff" in cells:
                    line += f"  (handoff/its direct {cells['handoff']['rps'] / cells['handoff direct']['rps']:.2f})"
                line += f"  2 replicas/1 {cells['gateway 2 replicas']['rps'] / cells['gateway']['rps']:.2f}"
                print(line + f"  (load {load[c]:.1f})")
            print("\ntwo replicas against one through the gateway: the replicas' CPU ms per request (summed) and "
                  "the cores each side kept busy (CPU seconds / wall seconds)")
            for c in levels:
                cells = by_c[c]
                sides = []
                for label in ("gateway", "gateway 2 replicas"):
                    cell = cells[label]
                    replicas = [n for n in cell["cpu_s"] if n.startswith("replica")]
                    per_request = sum(cell["cpu_ms_per_request"][n] for n in replicas)
                    busy = sum(cell["cpu_s"][n] for n in replicas) / cell["wall_s"]
                    gateway = cell["cpu_s"]["gateway"] / cell["wall_s"]
                    sides.append(f"{len(replicas)}: {cell['rps']:.0f} req/s, replicas {per_request:.2f} ms/request, "
                                 f"{busy:.2f} cores, gateway {gateway:.2f} cores")
                ratio = cells["gateway 2 replicas"]["rps"] / cells["gateway"]["rps"] if cells["gateway"]["rps"] else 0
                print(f"  c={c:<3} " + "; ".join(sides) + f"; ratio {ratio:.2f} (load {load[c]:.1f})")
        if not args.skip_open:
            rated = paths | {"stock sklearn": stock}  # two replicas too: what 500 req/s takes on two cores
            rates = tuple(int(r) for r in args.rates.split(","))
            curve = open_loop(rated, rates, args.rate_seconds, args.rate_rounds)
            results["open"] = {k: {str(r): v for r, v in cells.items()} for k, cells in curve.items()}
            print(f"\nopen loop, {args.rate_rounds} x {args.rate_seconds:g} s per rate and path (interleaved): "
                  "p50 / p99 ms of the 200s, then 503s / "
                  "timeouts+errors / unsent (the client had no free connection)")
            print(f"{'req/s':>7}" + "".join(f"  {label:<28}" for label in rated))
            for rate in rates:
                row = ""
                for label in rated:
                    m = curve[label][rate]
                    bad = f"{m['statuses'].get('503', 0)}/{m['timeouts'] + m['errors']}/{m['unsent']}"
                    row += f"{m['p50_ms']:>8.1f} /{m['p99_ms']:>7.1f} {bad:<12}"
                print(f"{rate:>7}" + row)
            if 500 in rates:
                p99 = {label: curve[label][500]["p99_ms"] for label in rated}
                print("  p99 at 500 req/s (goal: gateway under 10 ms): "
                      + ", ".join(f"{label} {ms:.1f} ms" for label, ms in p99.items()))
    results["load_after"] = os.getloadavg()
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
