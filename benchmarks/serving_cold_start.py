"""How long a scaled-to-zero InferenceService takes to answer its first request (cold start).

Starts a real ``kfbox up``, serves an iris model with ``minReplicas: 0`` and a 1s idle window,
then repeatedly waits for zero replicas (and ``--settle`` seconds) and times the first request: a
replica forked from the replica fork server (``KFBOX_SERVING_WARM_STANDBY=false``: a fresh
interpreter). Prints the request's wall time and the server's ``kfbox_serving_replica_start_seconds`` (spawn to ready).

    .venv/bin/python benchmarks/serving_cold_start.py --repeat 3
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.serving.helpers import apply, manifest, status, train_iris, v1, wait_for
from tests.support import ServerProcess


def metric(text: str, name: str) -> float:
    line = next(line for line in text.splitlines() if line.startswith(name))
    return float(line.rsplit(" ", 1)[1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--settle", type=float, default=10.0,
                        help="seconds to wait at zero replicas, so the last replica's exit is over")
    args = parser.parse_args()
    home = Path(tempfile.mkdtemp(prefix="kfbox-cold-"))
    train_iris(home / "pvc" / "models" / "iris")
    server = ServerProcess.start(home, extra_env={k: v for k, v in os.environ.items() if k.startswith("KFBOX_")})
    try:
        with server.client() as client:
            apply(client, manifest("iris", "pvc://models/iris", min_replicas=0, max_replicas=1,
                                   annotations={"autoscaling.knative.dev/window": "1s"}))
            times = []
            for _ in range(args.repeat):
                wait_for(lambda: status(client, "iris")["revisions"]["iris-predictor-00001"]["replicas"] == 0
                         and status(client, "iris")["revisions"]["iris-predictor-00001"]["desired"] == 0, 120,
                         "scale to zero")
                time.sleep(args.settle)
                started = time.perf_counter()
                assert v1(client, "iris").status_code == 200
                times.append(time.perf_counter() - started)
                print(f"cold start {len(times)}: {times[-1]:.2f}s", flush=True)
            text = client.get("/metrics").text
            label = '{name="iris",namespace="default"}'
            starts = metric(text, f"kfbox_serving_replica_start_seconds_sum{label}") / metric(
                text, f"kfbox_serving_replica_start_seconds_count{label}")
        print(f"first request after scale to zero: mean {statistics.mean(times):.2f}s "
              f"(min {min(times):.2f}s, max {max(times):.2f}s, n={len(times)})")
        print(f"replica spawn to ready (server metric): mean {starts:.2f}s")
    finally:
        server.stop()


if __name__ == "__main__":
    main()
