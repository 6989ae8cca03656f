"""A replica's native thread pools: one thread (kfbox's default) against the libraries' default, one per core.

    .venv/bin/python benchmarks/replica_threads.py [--seconds 4] [--rounds 3] [--baseline-src DIR]

Two iris KNN models, the one the examples train (``algorithm="auto"``: a KD-tree, no OpenMP) and
``algorithm="brute"`` (scikit-learn's OpenMP ``ArgKmin`` in every predict). For each model and each
setting two replicas run (``python -m kfbox.serving.replica``, started cold), as two replicas of one
InferenceService share the machine. ``one thread`` is this tree; ``pools per core`` is this tree
with ``OMP_NUM_THREADS``, ``OPENBLAS_NUM_THREADS`` and ``MKL_NUM_THREADS`` set to the core count (the
libraries' own default), or with ``--baseline-src DIR`` the replica of another source tree as it
was. Each round, in rotating order: ``wrk -t1 -c1`` on one replica, then ``wrk -t1 -c4`` on both
replicas at once (two clients, one per replica). Figures: requests per second and CPU milliseconds
per request of the replicas (all their threads, from /proc). The machine's load moves absolute numbers:
compare the settings within a round.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import joblib
from sklearn.datasets import load_iris
from sklearn.neighbors import KNeighborsClassifier

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.gateway import BODY, ROOT, child, free_port, post_script, wait_for, wrk
from benchmarks.serving import cpu_seconds

THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


def train(folder: Path, algorithm: str) -> Path:
    features, labels = load_iris(return_X_y=True)
    folder.mkdir(parents=True, exist_ok=True)
    joblib.dump(KNeighborsClassifier(n_neighbors=3, algorithm=algorithm).fit(features, labels),
                folder / "model.joblib")
    return folder


@contextlib.contextmanager
def replicas(model: Path, src: Path, env: dict[str, str], work: Path, label: str) -> Iterator[list[dict[str, Any]]]:
    """Two replicas of ``model`` from source tree ``src`` with ``env`` over this process's environment."""
    base = {k: v for k, v in os.environ.items() if k not in THREAD_VARIABLES and not k.startswith("KFBOX_")}
    full_env = {**base, **env, "PYTHONPATH": str(src)}
    with contextlib.ExitStack() as stack:
        started = []
        for index in range(2):
            port = free_port()
            argv = [sys.executable, "-m", "kfbox.serving.replica", "--name", "iris", "--format", "sklearn",
                    "--model-path", str(model), "--port", str(port)]
            proc = stack.enter_context(child(argv, work / f"{label}-{index}.log", full_env))
            started.append({"pid": proc.pid, "url": f"http://127.0.0.1:{port}/v1/models/iris:predict"})
        for replica in started:
            wait_for(lambda r=replica: httpx.post(r["url"], content=BODY).status_code == 200, f"{label} replica")
            for _ in range(200):  # warm: the first predictions load code paths and caches
                httpx.post(replica["url"], content=BODY)
        yield started


def measure(pair: list[dict[str, Any]], concurrency: int, both: bool, seconds: float, script: Path) -> dict[str, float]:
    targets = pair if both else pair[:1]
    results: list[dict[str, float]] = [{} for _ in targets]
    before = sum(cpu_seconds(r["pid"]) for r in pair)

    def drive(index: int) -> None:
        results[index] = wrk(targets[index]["url"], concurrency, seconds, script)

    threads = [threading.Thread(target=drive, args=(i,)) for i in range(len(targets))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    cpu = sum(cpu_seconds(r["pid"]) for r in pair) - before
    requests = sum(r["requests"] for r in results)
    return {"rps": sum(r["rps"] for r in results), "cpu_ms": cpu * 1000 / max(requests, 1),
            "p99_ms": max(r["p99_ms"] for r in results)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--baseline-src", type=Path, default=None)
    args = parser.parse_args()
    cores = str(os.cpu_count() or 1)
    settings: dict[str, tuple[Path, dict[str, str]]] = {"one thread": (ROOT / "src", {})}
    if args.baseline_src is not None:
        settings["before (baseline)"] = (args.baseline_src.resolve() / "src", {})
    else:
        settings["pools per core"] = (ROOT / "src", dict.fromkeys(THREAD_VARIABLES, cores))
    print(f"cores {cores}, load {os.getloadavg()[0]:.1f}; {args.rounds} rounds of {args.seconds:g} s per figure")
    with tempfile.TemporaryDirectory(prefix="kfbox-threads-") as folder:
        work = Path(folder)
        script = post_script(work, BODY)
        for algorithm in ("auto", "brute"):
            model = train(work / algorithm, algorithm)
            with contextlib.ExitStack() as stack:
                pairs = {label: stack.enter_context(replicas(model, src, env, work, f"{algorithm}-{i}"))
                         for i, (label, (src, env)) in enumerate(settings.items())}
                rows: dict[tuple[str, str], list[dict[str, float]]] = {}
                labels = list(pairs)
                for round_ in range(args.rounds):
                    for label in labels[round_ % len(labels):] + labels[:round_ % len(labels)]:
                        for case, (concurrency, both) in {"c=1, one replica": (1, False),
                                                          "c=4 x 2 replicas": (4, True)}.items():
                            rows.setdefault((case, label), []).append(
                                measure(pairs[label], concurrency, both, args.seconds, script))
            print(f"\nKNeighborsClassifier(algorithm={algorithm!r}), medians of {args.rounds} rounds")
            print(f"{'case':<20} {'setting':<18} {'req/s':>8} {'CPU ms/req':>11} {'p99 ms':>8}")
            for (case, label), runs in rows.items():
                def median(key: str, runs: list[dict[str, float]] = runs) -> float:
                    return sorted(r[key] for r in runs)[len(runs) // 2]
                print(f"{case:<20} {label:<18} {median('rps'):>8.0f} {median('cpu_ms'):>11.3f} "
                      f"{median('p99_ms'):>8.1f}")
    subprocess.run(["uptime"], check=False)


if __name__ == "__main__":
    main()
