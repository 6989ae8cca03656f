"""Registering through a client: kfbox's ``RegistryClient`` against the upstream ``model_registry`` client.

Both register the same thing (a new model, version v1 with one property, a model artifact) against one
``kfbox up`` on loopback, rounds alternating; printed per registration: the client process's CPU
(load-independent) and wall time, plus each client's import CPU. The server is the same for both, so
the difference is the client's: the upstream one runs each call through asyncio with a new connection
and SSL context; kfbox's keeps one connection.

    .venv/bin/python benchmarks/registry_clients.py [--rounds 4] [--per-round 20]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from typing import Any

from registry import free_port, wait_ready


def import_cpu(module: str) -> float:
    done = subprocess.run([sys.executable, "-c", f"import time; t = time.process_time(); import {module}; "
                           "print(time.process_time() - t)"], capture_output=True, text=True, check=True)
    return float(done.stdout.strip())


def make(name: str, port: int) -> Any:
    if name == "kfbox":
        from kfbox.client import RegistryClient
        return RegistryClient("http://127.0.0.1", port, author="bench", is_secure=False)
    from model_registry import ModelRegistry
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # no token on loopback
        return ModelRegistry("http://127.0.0.1", port, author="bench", is_secure=False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--per-round", type=int, default=20)
    args = parser.parse_args()
    names = ("kfbox", "upstream")
    cpu: dict[str, list[float]] = {n: [] for n in names}
    wall: dict[str, list[float]] = {n: [] for n in names}
    with tempfile.TemporaryDirectory(prefix="kfbox-bench-clients-") as home:
        port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("KFBOX_")}
        server = subprocess.Popen([sys.executable, "-m", "kfbox", "up", "--port", str(port), "--home", home],
                                  env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            wait_ready(f"http://127.0.0.1:{port}/healthz", server, timeout=300)
            clients = {n: make(n, port) for n in names}
            for r in range(args.rounds):
                for name in names if r % 2 == 0 else names[::-1]:
                    started_cpu, started = time.process_time(), time.perf_counter()
                    for i in range(args.per_round):
                        clients[name].register_model(f"{name}-{r}-{i}", "s3://bench/m", model_format_name="sklearn",
                                                     model_format_version="1", version="v1",
                                                     metadata={"accuracy": 0.97})
                    cpu[name].append(1000 * (time.process_time() - started_cpu) / args.per_round)
                    wall[name].append(1000 * (time.perf_counter() - started) / args.per_round)
        finally:
            server.terminate()
            server.wait(30)
    med = statistics.median
    print(f"register_model of a new model, median of {args.rounds} rounds of {args.per_round}")
    for name, module in zip(names, ("kfbox.client", "model_registry"), strict=True):
        print(f"  {name:9s} client CPU {med(cpu[name]):7.1f} ms, wall {med(wall[name]):7.1f} ms per registration; "
              f"import {module}: {import_cpu(module):.2f} s CPU")
    print(f"  upstream / kfbox: client CPU {med(cpu['upstream']) / med(cpu['kfbox']):.0f}x, "
          f"wall {med(wall['upstream']) / med(wall['kfbox']):.0f}x")


if __name__ == "__main__":
    main()
