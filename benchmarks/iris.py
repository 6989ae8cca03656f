"""Benchmark the main job: ``kfbox example iris`` warm, submit to first prediction, and the platform's peak memory.

The peer is the setup kfbox replaces: a Kind cluster with Kubeflow, which requests about
12 GiB of memory and takes tens of minutes to install before its first run (not
measurable here: no Docker, no Kubernetes; the figures are the published ones).

    .venv/bin/python benchmarks/iris.py [--runs 3] [--peer-src /tmp/before/src]

Each side gets its own platform (own home, free port). One unmeasured run warms it (the
spare worker, the venv and page caches, the task server's remembered imports); then the
measured runs, ``--loadtest-seconds 0`` (the load test is a phase after the first
prediction), interleaved with the peer's when ``--peer-src`` names another source tree
(``git archive <commit> src examples | tar -x -C /tmp/before``: the peer runs its own
examples/iris), so machine load falls on both
alike. Every run runs every task: the home's KFP cache is emptied before each (both sides
alike; a warm run would otherwise answer loading and scaling from the cache, which is not the
honest figure). Per run: wall time of the command (submit to first prediction, plus the summary),
the phase times the summary prints (when it prints them), and CPU seconds of the client
and of the whole platform process tree (load-independent, unlike wall time on a busy box).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

KUBEFLOW_ON_KIND_MEMORY_GIB = 12.0
KUBEFLOW_ON_KIND_INSTALL = "tens of minutes"
TICK = os.sysconf("SC_CLK_TCK")


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


def tree_cpu(pid: int) -> float:
    """CPU seconds of the live tree, each with its reaped children's (utime, stime, cutime, cstime)."""
    total = 0
    for child in descendants(pid):
        try:
            fields = Path(f"/proc/{child}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += sum(int(f) for f in fields[11:15])
    return total / TICK


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


class Side:
    """One platform under test: started from ``src`` (None: this checkout), its runs' figures."""

    def __init__(self, name: str, src: Path | None, root: Path) -> None:
        self.name = name
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("KFBOX_")}
        self.env["KFBOX_HOME"] = str(root / name)
        if src is not None:
            self.env["PYTHONPATH"] = str(src)
        self.kfbox = [sys.executable, "-m", "kfbox"]
        examples = src.parent / "examples" / "iris" if src is not None else None
        self.examples = ["--examples-dir", str(examples)] if examples is not None and examples.is_dir() else []
        self.walls: list[float] = []
        self.firsts: list[float] = []
        self.client_cpu: list[float] = []
        self.server_cpu: list[float] = []
        self.phases: list[str] = []
        self.peak = 0

    def up(self) -> None:
        subprocess.run([*self.kfbox, "up", "--detach", "--port", "0"], env=self.env, check=True, capture_output=True)
        self.pid = int(json.loads((Path(self.env["KFBOX_HOME"]) / "server.json").read_text())["pid"])

    def down(self) -> None:
        subprocess.run([*self.kfbox, "down"], env=self.env, capture_output=True)

    def run(self, measured: bool = True) -> None:
        sampler = MemorySampler(self.pid)
        sampler.start()
        shutil.rmtree(Path(self.env["KFBOX_HOME"]) / "cache", ignore_errors=True)  # every task runs
        before_children = resource.getrusage(resource.RUSAGE_CHILDREN)
        before_server = tree_cpu(self.pid)
        started = time.perf_counter()
        done = subprocess.run([*self.kfbox, "example", "iris", "--loadtest-seconds", "0", *self.examples], env=self.env,
                              capture_output=True, text=True, cwd=Path(__file__).resolve().parents[1])
        wall = time.perf_counter() - started
        sampler.done.set()
        sampler.join()
        if done.returncode != 0:
            raise RuntimeError(f"{self.name}: kfbox example iris failed:\n{done.stdout}\n{done.stderr}")
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        self.peak = max(self.peak, sampler.peak)
        if not measured:
            return
        self.walls.append(wall)
        self.client_cpu.append(after.ru_utime + after.ru_stime - before_children.ru_utime - before_children.ru_stime)
        self.server_cpu.append(tree_cpu(self.pid) - before_server)
        text = " ".join(re.sub(r"[│|]", " ", done.stdout).split())  # the summary table's cells, unwrapped
        first = re.search(r"first prediction after ([\d.]+)s", text)
        if first:
            self.firsts.append(float(first.group(1)))
        phases = re.search(r"timings (.*?); first prediction", text)
        if phases:
            self.phases.append(phases.group(1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3, help="measured runs per side, after one warm-up run")
    parser.add_argument("--peer-src", type=Path, help="another kfbox source tree (its src/) to compare against")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="kfbox-bench-iris-") as tmp:
        sides = [Side("this", None, Path(tmp))]
        if args.peer_src:
            sides.append(Side("peer", args.peer_src.resolve(), Path(tmp)))
        for side in sides:
            side.up()
        try:
            for side in sides:
                side.run(measured=False)
            for i in range(args.runs):
                for side in sides if i % 2 == 0 else sides[::-1]:
                    side.run()
        finally:
            for side in sides:
                side.down()
    med = statistics.median
    for side in sides:
        label = "this checkout" if side.name == "this" else f"peer {args.peer_src}"
        print(f"\n{label}: kfbox example iris --loadtest-seconds 0, warm, median of {len(side.walls)} runs")
        print(f"  command wall time (submit to first prediction + summary): {med(side.walls):.1f} s "
              f"(runs: {', '.join(f'{w:.1f}' for w in side.walls)})")
        if side.firsts:
            print(f"  first prediction after (the summary's own clock): {med(side.firsts):.1f} s")
        print(f"  CPU: client {med(side.client_cpu):.1f} s, platform tree {med(side.server_cpu):.1f} s")
        for phases in side.phases:
            print(f"  phases: {phases}")
        print(f"  platform peak memory: {side.peak / 2**20:.0f} MiB")
    if len(sides) == 2:
        this, peer = sides
        print(f"\nratio peer/this: wall {med(peer.walls) / med(this.walls):.2f}x, client CPU "
              f"{med(peer.client_cpu) / med(this.client_cpu):.2f}x, platform CPU "
              f"{med(peer.server_cpu) / med(this.server_cpu):.2f}x")
    peak = max(side.peak for side in sides)
    print(f"\ngoal: first prediction < 6 s warm. Kubeflow on Kind requests about {KUBEFLOW_ON_KIND_MEMORY_GIB:.0f} GiB "
          f"and installs in {KUBEFLOW_ON_KIND_INSTALL}: kfbox peaked at {peak / 2**20:.0f} MiB, "
          f"{peak / (KUBEFLOW_ON_KIND_MEMORY_GIB * 2**30):.1%} of that")


if __name__ == "__main__":
    main()
