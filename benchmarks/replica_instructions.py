"""Instructions per iris request inside one model replica, V1 predict and V2 infer, under callgrind
(load-independent).

    .venv/bin/python benchmarks/replica_instructions.py [--requests 300] [--rounds 3] [--protocols v1,v2]
                                                        [--baseline-src DIR]

A replica (``python -m kfbox.serving.replica``, the examples' KD-tree KNN) runs under
``valgrind --tool=callgrind --instr-atstart=no``: it starts and takes a warm-up of each protocol
uninstrumented, then ``callgrind_control -i on`` counts the user-space instructions of ``--requests``
sequential predictions of one protocol, one dump each, the protocols taking turns for ``--rounds``
rounds (one keep-alive client in this process, not counted). Each protocol's figure is the median of
its rounds, printed with their range: one round in a few also holds a full garbage collection of the
replica's heap (~70 M instructions, 0.2 M a request over 300), which the median leaves out. Both
protocols send the same two iris rows: V1 ``{"instances": ...}`` (no content type, as the earlier
figures), V2 one FP64 ``[2, 4]`` tensor. ``--baseline-src DIR`` measures another source tree's replica
the same way, after this one. Wall-clock time plays no part: the figure holds on a loaded machine,
unlike CPU milliseconds.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.gateway import BODY, ROOT, child, free_port, source_tree, train, wait_for

V2_BODY = json.dumps({"inputs": [{"name": "input-0", "shape": [2, 4], "datatype": "FP64",
                                   "data": [x for row in json.loads(BODY)["instances"] for x in row]}]}).encode()
REQUESTS = {"v1": ("/v1/models/iris:predict", BODY, {}),
            "v2": ("/v2/models/iris/infer", V2_BODY, {"content-type": "application/json"})}
"""Protocol -> (path, body, headers): the same two iris rows (V1 as the earlier figures, with no content type)."""


def instructions_per_request(src: Path, model: Path, requests: int, rounds: int, work: Path,
                             protocols: list[str]) -> dict[str, list[float]]:
    """Protocol -> user-space instructions per request in each round, of one replica from ``src``."""
    port = free_port()
    out = work / f"callgrind-{port}.out"
    env = {k: v for k, v in os.environ.items() if not k.startswith("KFBOX_")} | {"PYTHONPATH": str(src)}
    argv = ["valgrind", "--tool=callgrind", "--instr-atstart=no", f"--callgrind-out-file={out}", sys.executable,
            "-m", "kfbox.serving.replica", "--name", "iris", "--format", "sklearn", "--model-path", str(model),
            "--port", str(port)]
    base = f"http://127.0.0.1:{port}"
    with child(argv, work / f"replica-{port}.log", env) as proc, httpx.Client(timeout=60) as client:
        def post(protocol: str) -> int:
            path, body, headers = REQUESTS[protocol]
            return client.post(base + path, content=body, headers=headers).status_code

        wait_for(lambda: post(protocols[0]) == 200, "the replica under callgrind", 600)
        for protocol in protocols:
            for _ in range(100):
                post(protocol)
        subprocess.run(["callgrind_control", "-i", "on", str(proc.pid)], check=True, capture_output=True)
        windows = [protocol for _ in range(rounds) for protocol in protocols]
        for protocol in windows:  # each dump counts what ran since the one before
            for _ in range(requests):
                if post(protocol) != 200:
                    raise RuntimeError(f"a {protocol} prediction failed")
            subprocess.run(["callgrind_control", "-d", str(proc.pid)], check=True, capture_output=True)
    counts: dict[str, list[float]] = {protocol: [] for protocol in protocols}
    for index, protocol in enumerate(windows, start=1):
        text = (work / f"{out.name}.{index}").read_text()
        found = re.search(r"^(?:summary|totals):\s+(\d+)", text, re.M)
        if found is None:
            raise RuntimeError(f"no instruction count in callgrind's dump {index}")
        counts[protocol].append(int(found.group(1)) / requests)
    return counts


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=300, help="requests per protocol and round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--protocols", default="v1,v2", help="comma-separated, of: " + ", ".join(REQUESTS))
    parser.add_argument("--baseline-src", type=Path, default=None)
    args = parser.parse_args()
    protocols = args.protocols.split(",")
    if not protocols or set(protocols) - set(REQUESTS):
        parser.error(f"--protocols: comma-separated, of: {', '.join(REQUESTS)}")
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
            counts = instructions_per_request(src, model, args.requests, args.rounds, work, protocols)
            for protocol, rounds in counts.items():
                print(f"{label:<10} {statistics.median(rounds) / 1e6:.3f} M instructions per {protocol.upper()} "
                      f"request (median of {args.rounds} rounds of {args.requests}: "
                      f"{min(rounds) / 1e6:.3f}-{max(rounds) / 1e6:.3f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
