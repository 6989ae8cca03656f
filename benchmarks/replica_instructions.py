"""Instructions per iris request inside one model replica, V1 predict and V2 infer, under callgrind
(load-independent).

    .venv/bin/python benchmarks/replica_instructions.py [--requests 300] [--rounds 3] [--protocols v1,v2]
                                                        [--baseline-src DIR] [--cpu]

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

``--cpu`` measures CPU milliseconds instead, without valgrind (user + system time of the replica
process from /proc, 10 ms ticks: use ~1,000 requests a round): every tree's replica runs at once and
the rounds take turns tree by tree and protocol by protocol, so the machine's load falls on each alike.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.gateway import BODY, ROOT, child, free_port, source_tree, train, wait_for
from benchmarks.serving import cpu_seconds

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
    argv = ["valgrind", "--tool=callgrind", "--instr-atstart=no", f"--callgrind-out-file={out}", *replica(model, port)]
    with child(argv, work / f"replica-{port}.log", environment(src)) as proc, httpx.Client(timeout=60) as client:
        post = poster(client, port)
        warm_up(post, protocols, "the replica under callgrind")
        subprocess.run(["callgrind_control", "-i", "on", str(proc.pid)], check=True, capture_output=True)
        windows = [protocol for _ in range(rounds) for protocol in protocols]
        for protocol in windows:  # each dump counts what ran since the one before
            predict(post, protocol, requests)
            subprocess.run(["callgrind_control", "-d", str(proc.pid)], check=True, capture_output=True)
    counts: dict[str, list[float]] = {protocol: [] for protocol in protocols}
    for index, protocol in enumerate(windows, start=1):
        text = (work / f"{out.name}.{index}").read_text()
        found = re.search(r"^(?:summary|totals):\s+(\d+)", text, re.M)
        if found is None:
            raise RuntimeError(f"no instruction count in callgrind's dump {index}")
        counts[protocol].append(int(found.group(1)) / requests)
    return counts


def cpu_per_request(trees: dict[str, Path], model: Path, requests: int, rounds: int, work: Path,
                    protocols: list[str]) -> dict[tuple[str, str], list[float]]:
    """(tree, protocol) -> CPU milliseconds per request of that tree's replica in each round, all replicas
    running at once and the rounds interleaved."""
    cpu: dict[tuple[str, str], list[float]] = {(label, protocol): [] for label in trees for protocol in protocols}
    with contextlib.ExitStack() as stack:
        client = stack.enter_context(httpx.Client(timeout=60))
        replicas = {}
        for label, src in trees.items():
            port = free_port()
            proc = stack.enter_context(child(replica(model, port), work / f"replica-{port}.log", environment(src)))
            replicas[label] = (proc.pid, poster(client, port))
        for label, (_, post) in replicas.items():
            warm_up(post, protocols, f"the replica of {label}")
        for _ in range(rounds):
            for label, (pid, post) in replicas.items():
                for protocol in protocols:
                    start = cpu_seconds(pid)
                    predict(post, protocol, requests)
                    cpu[label, protocol].append((cpu_seconds(pid) - start) * 1000 / requests)
    return cpu


def replica(model: Path, port: int) -> list[str]:
    return [sys.executable, "-m", "kfbox.serving.replica", "--name", "iris", "--format", "sklearn",
            "--model-path", str(model), "--port", str(port)]


def environment(src: Path) -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("KFBOX_")} | {"PYTHONPATH": str(src)}


def poster(client: httpx.Client, port: int) -> Callable[[str], int]:
    """A function that sends one request of a protocol to the replica on ``port`` and returns its status."""
    def post(protocol: str) -> int:
        path, body, headers = REQUESTS[protocol]
        return client.post(f"http://127.0.0.1:{port}{path}", content=body, headers=headers).status_code

    return post


def warm_up(post: Callable[[str], int], protocols: list[str], what: str) -> None:
    wait_for(lambda: post(protocols[0]) == 200, what, 600)
    for protocol in protocols:
        for _ in range(100):
            post(protocol)


def predict(post: Callable[[str], int], protocol: str, requests: int) -> None:
    for _ in range(requests):
        if post(protocol) != 200:
            raise RuntimeError(f"a {protocol} prediction failed")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=300, help="requests per protocol and round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--protocols", default="v1,v2", help="comma-separated, of: " + ", ".join(REQUESTS))
    parser.add_argument("--baseline-src", type=Path, default=None)
    parser.add_argument("--cpu", action="store_true", help="CPU ms from /proc instead of instructions (no valgrind)")
    args = parser.parse_args()
    protocols = args.protocols.split(",")
    if not protocols or set(protocols) - set(REQUESTS):
        parser.error(f"--protocols: comma-separated, of: {', '.join(REQUESTS)}")
    if not args.cpu and (shutil.which("valgrind") is None or shutil.which("callgrind_control") is None):
        print("valgrind is not installed: apt-get install -y valgrind")
        return 2
    trees = {"this tree": ROOT / "src"}
    if args.baseline_src is not None:
        trees["baseline"] = source_tree(args.baseline_src.resolve())
    with tempfile.TemporaryDirectory(prefix="kfbox-callgrind-") as folder:
        work = Path(folder)
        model = work / "iris"
        train(model)
        if args.cpu:
            for (label, protocol), ms in cpu_per_request(trees, model, args.requests, args.rounds, work,
                                                         protocols).items():
                print(f"{label:<10} {statistics.median(ms):.3f} ms of CPU per {protocol.upper()} request "
                      f"(median of {args.rounds} interleaved rounds of {args.requests}: {min(ms):.3f}-{max(ms):.3f})")
            return 0
        for label, src in trees.items():
            counts = instructions_per_request(src, model, args.requests, args.rounds, work, protocols)
            for protocol, rounds in counts.items():
                print(f"{label:<10} {statistics.median(rounds) / 1e6:.3f} M instructions per {protocol.upper()} "
                      f"request (median of {args.rounds} rounds of {args.requests}: "
                      f"{min(rounds) / 1e6:.3f}-{max(rounds) / 1e6:.3f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
