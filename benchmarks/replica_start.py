"""CPU seconds a model replica costs to start: forked from the replica fork server vs a fresh interpreter.

Serves an iris model with kfbox's ReplicaLauncher both ways, interleaved (fork, cold, fork, cold...),
and reads each replica's CPU (user + system, from /proc) once it answers a prediction; the fork
server's own CPU (its one kserve import) is printed beside, as what the first forked replica adds.
CPU, not wall time, so a busy machine changes the figures little. Linux only (/proc).

    .venv/bin/python benchmarks/replica_start.py --repeat 3
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import sys
import tempfile
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.serving.helpers import ROWS, train_iris, wait_for

from kfbox.server.processes import ChildProcess
from kfbox.serving.launcher import ReplicaLauncher


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start(launcher: ReplicaLauncher, model: Path, logs: Path, name: str) -> tuple[ChildProcess, float]:
    """A replica that has answered one prediction, and its CPU seconds until then."""
    port = free_port()
    child = launcher.launch(["--name", "iris", "--format", "sklearn", "--model-path", str(model),
                             "--port", str(port)], logs / f"{name}.log")

    def predicts() -> bool:
        try:
            return httpx.post(f"http://127.0.0.1:{port}/v1/models/iris:predict", json={"instances": ROWS},
                              timeout=10).status_code == 200
        except httpx.TransportError:
            return False

    wait_for(predicts, 180, f"replica {name}")
    return child, cpu_seconds(child.pid)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="kfbox-replica-start-"))
    model = folder / "model"
    train_iris(model)
    forked, cold = ReplicaLauncher(folder / "forkserver"), ReplicaLauncher(folder / "cold", warm=False)
    figures: dict[str, list[float]] = {"forked": [], "cold": []}
    try:
        for round_ in range(args.repeat + 1):  # round 0 warms both (and starts the fork server)
            for kind, launcher in (("forked", forked), ("cold", cold)):
                child, cpu = start(launcher, model, folder, f"{kind}-{round_}")
                child.stop(5.0)
                if round_:
                    figures[kind].append(cpu)
        server = forked.fork_server
        assert server is not None
        server_cpu = cpu_seconds(server.pid)
    finally:
        forked.close()
        cold.close()
    for kind, values in figures.items():
        print(f"{kind:>6}: {statistics.median(values):.2f} s CPU per replica start to first prediction "
              f"(median of {len(values)}: {', '.join(f'{v:.2f}' for v in values)})")
    print(f"fork server: {server_cpu:.2f} s CPU once (its imports), shared by every forked replica")
    print(f"cold / forked: {statistics.median(figures['cold']) / statistics.median(figures['forked']):.1f}x")


if __name__ == "__main__":
    main()
