"""Benchmark the main job: ``kfbox example iris`` wall time and the platform's peak memory.

The peer is the setup kfbox replaces: a Kind cluster with Kubeflow, which requests about
12 GiB of memory and takes tens of minutes to install before its first run (not
measurable here: no Docker, no Kubernetes; the figures are the published ones).

    .venv/bin/python benchmarks/iris.py [--runs 2]

Each run starts a fresh platform (own home, free port), runs the workflow through the CLI
and samples the resident memory of the server and every process under it (pipeline
workers, tasks, model replicas) every 100 ms. The first run pays the cold caches; later
runs are the "warm install" figure.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

KUBEFLOW_ON_KIND_MEMORY_GIB = 12.0
KUBEFLOW_ON_KIND_INSTALL = "tens of minutes"


def descendants(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(entry.name))
    found, stack = [], [pid]
    while stack:
        current = stack.pop()
        found.append(current)
        stack.extend(children.get(current, []))
    return found


def rss_bytes(pids: list[int]) -> int:
    total = 0
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) * 1024
        except OSError:
            continue
    return total


class MemorySampler(threading.Thread):
    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid = pid
        self.peak = 0
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.is_set():
            self.peak = max(self.peak, rss_bytes(descendants(self.pid)))
            time.sleep(0.1)


def one_run(kfbox: str) -> tuple[float, int]:
    with tempfile.TemporaryDirectory(prefix="kfbox-bench-iris-") as home:
        env = {k: v for k, v in os.environ.items() if not k.startswith("KFBOX_")}
        env["KFBOX_HOME"] = home
        subprocess.run([kfbox, "up", "--detach", "--port", "0"], env=env, check=True, capture_output=True)
        record = json.loads((Path(home) / "server.json").read_text())
        sampler = MemorySampler(int(record["pid"]))
        sampler.start()
        try:
            started = time.perf_counter()
            subprocess.run([kfbox, "example", "iris"], env=env, check=True, capture_output=True)
            wall = time.perf_counter() - started
        finally:
            sampler.done.set()
            sampler.join()
            subprocess.run([kfbox, "down"], env=env, capture_output=True)
        return wall, sampler.peak


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=2)
    args = parser.parse_args()
    kfbox = str(Path(sys.executable).with_name("kfbox"))
    results = []
    for i in range(args.runs):
        wall, peak = one_run(kfbox)
        results.append((wall, peak))
        print(f"run {i + 1}: kfbox example iris {wall:.1f} s, platform peak memory {peak / 2**20:.0f} MiB")
    warm = results[1:] or results
    wall = statistics.median(w for w, _ in warm)
    peak = max(p for _, p in results)
    print(f"\nwarm wall time (median of {len(warm)}): {wall:.1f} s (goal < 30 s)")
    print(f"peak memory of the whole platform: {peak / 2**20:.0f} MiB (goal < 1024 MiB)")
    print(f"Kubeflow on Kind requests about {KUBEFLOW_ON_KIND_MEMORY_GIB:.0f} GiB and installs in "
          f"{KUBEFLOW_ON_KIND_INSTALL}: kfbox uses {peak / (KUBEFLOW_ON_KIND_MEMORY_GIB * 2**30):.1%} of that memory")


if __name__ == "__main__":
    main()
