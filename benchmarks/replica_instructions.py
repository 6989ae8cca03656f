"""Instructions per iris V1 request inside one model replica, under callgrind (load-independent).

    .venv/bin/python benchmarks/replica_instructions.py [--requests 300] [--baseline-src DIR]

A replica (``python -m kfbox.serving.replica``, the examples' KD-tree KNN) runs under
``valgrind --tool=callgrind --instr-atstart=no``: it starts and takes a warm-up uninstrumented, then
``callgrind_control -i on`` counts the user-space instructions of ``--requests`` sequential V1
predictions (one keep-alive client in this process, not counted). ``--baseline-src DIR`` measures
another source tree's replica the same way, after this one. Wall-clock time plays no part: the
figure holds on a loaded machine, unlike CPU milliseconds.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.gateway import BODY, ROOT, child, free_port, source_tree, train, wait_for


def instructions_per_request(src: Path, model: Path, requests: int, work: Path) -> float:
    port = free_port()
    out = work / f"callgrind-{port}.out"
    env = {k: v for k, v in os.environ.items() if not k.startswith("KFBOX_")} | {"PYTHONPATH": str(src)}
    argv = ["valgrind", "--tool=callgrind", "--instr-atstart=no", f"--callgrind-out-file={out}", sys.executable,
            "-m", "kfbox.serving.replica", "--name", "iris", "--format", "sklearn", "--model-path", str(model),
            "--port", str(port)]
    url = f"http://127.0.0.1:{port}/v1/models/iris:predict"
    with child(argv, work / f"replica-{port}.log", env) as proc, httpx.Client(timeout=60) as client:
        wait_for(lambda: client.post(url, content=BODY).status_code == 200, "the replica under callgrind", 600)
        for _ in range(100):
            client.post(url, content=BODY)
        subprocess.run(["callgrind_control", "-i", "on", str(proc.pid)], check=True, capture_output=True)
        for _ in range(requests):
            if client.post(url, content=BODY).status_code != 200:
                raise RuntimeError("a prediction failed")
        subprocess.run(["callgrind_control", "-d", str(proc.pid)], check=True, capture_output=True)
    totals = []
    for dump in work.glob(f"{out.name}*"):
        with contextlib.suppress(OSError):
            found = re.search(r"^(?:summary|totals):\s+(\d+)", dump.read_text(), re.M)
            totals.append(int(found.group(1)) if found else 0)
    return max(totals, default=0) / requests


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--baseline-src", type=Path, default=None)
    args = parser.parse_args()
    if shutil.which("valgrind") is None or shutil.which("callgrind_control") is None:
        print("valgrind is not installed: apt-get install -y valgrind")
        return 2
    trees = {"this tree": ROOT / "src"}
    if args.baseline_src is not None:
        trees["baseline"] = source_tree(args.baseline_src.resolve())
    with tempfile.TemporaryDirectory(prefix="kfbox-callgrind-") as folder:
        work = Path(folder)
        model = work / "iris"
        train(model)
        for label, src in trees.items():
            count = instructions_per_request(src, model, args.requests, work)
            print(f"{label:<10} {count / 1e6:.3f} M instructions per V1 request ({args.requests} requests)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
