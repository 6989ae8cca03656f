"""Cost of the edge checks on the inference gateway: the Host/Origin/path guard and the
slowloris-guarded HTTP protocol, on against off, in one interleaved run.

Two ``kfbox up`` servers, each with one iris KNN replica: "checks on" (the defaults) and
"checks off" (``KFBOX_GUARD_CHECKS=0`` and the read deadlines and per-client cap at 0, i.e.
uvicorn's own protocol). Both are warmed, then V1 predict with KServe host routing
(``Host: iris.NS.example.com``, the path with the most checks) is driven by ``kfbox loadtest``'s
engine at one concurrency, in rounds that alternate which server goes first, in two phases that
start the servers in opposite order (two servers side by side are not equal: an A/A control run
showed the first-started one slower). Printed: req/s (median of the rounds) and the CPU
milliseconds the kfbox process spends per request, their ratios on/off (geometric mean of the
phases), and the in-process CPU cost of the checks per request. Goal: at most 3% loss.

    .venv/bin/python benchmarks/edge_checks.py [--seconds 3] [--rounds 6] [--concurrency 8] [--control]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx

sys.path.insert(0, str(Path(__file__).parent))
from kfbox.loadtest.runner import LoadSpec, run_load
from serving import (
    BODY,
    NAMESPACE,
    apply_iris,
    child,
    cpu_seconds,
    endpoints,
    listening_pid,
    train,
    wait_for,
)

CHECKS_OFF = {"KFBOX_GUARD_CHECKS": "0", "KFBOX_HTTP_HEADER_TIMEOUT": "0", "KFBOX_HTTP_BODY_TIMEOUT": "0",
              "KFBOX_MAX_CONNECTIONS_PER_CLIENT": "0"}


@contextlib.contextmanager
def kfbox_server(home: Path, extra_env: dict[str, str]) -> Iterator[tuple[str, int]]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KFBOX_")} | extra_env
    argv = [sys.executable, "-m", "kfbox", "up", "--port", "0", "--home", str(home)]
    with child(argv, home / "bench-server.log", env) as proc:
        def ready() -> tuple[str, int] | None:
            record = json.loads((home / "server.json").read_text())
            ok = record["pid"] == proc.pid and httpx.get(record["url"] + "/healthz").status_code == 200
            return (str(record["url"]), proc.pid) if ok else None

        yield wait_for(ready, "kfbox up")


def one_round(url: str, concurrency: int, seconds: float, pids: list[int]) -> tuple[float, float, int]:
    """req/s, CPU seconds of ``pids[0]`` (kfbox) and requests, for one slice of load."""
    spec = LoadSpec(url=f"{url}/v1/models/iris:predict", method="POST", body=BODY, concurrency=concurrency,
                    duration=seconds, timeout=30, headers={"Host": f"iris.{NAMESPACE}.example.com",
                                                           "Content-Type": "application/json"})
    before = cpu_seconds(pids[0])
    report = run_load(spec)
    if report.failed:
        raise RuntimeError(f"{url}: {report.failed} of {report.total} failed: {report.errors} {report.statuses}")
    return report.total / report.duration, cpu_seconds(pids[0]) - before, report.total


class _Transport(asyncio.Transport):
    """Enough of a socket transport for uvicorn's protocol: a loopback peer, writes dropped."""

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"peername": ("127.0.0.1", 50000), "sockname": ("127.0.0.1", 8080)}.get(name, default)

    def write(self, data: Any) -> None:
        pass

    def is_closing(self) -> bool:
        return False

    def close(self) -> None:
        pass

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


def edge_cpu_microseconds(requests: int = 20_000, rounds: int = 5) -> dict[str, float]:
    """CPU microseconds per request of uvicorn's protocol + a no-op app, with and without the edge
    checks (the guarded protocol and RequestGuard), in this process: parse, dispatch, respond, as on
    a keep-alive connection. The difference is what the checks add to every gateway request."""
    import uvicorn
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
    from uvicorn.server import ServerState

    from kfbox.config import Settings
    from kfbox.db import Database
    from kfbox.server.guard import RequestGuard
    from kfbox.server.platform import Platform
    from kfbox.server.protocol import guarded_protocol

    body = BODY
    raw = (f"POST /v1/models/iris:predict HTTP/1.1\r\nHost: iris.{NAMESPACE}.example.com:8080\r\n"
           f"User-Agent: kfbox-loadtest\r\nAccept: */*\r\nContent-Type: application/json\r\n"
           f"Content-Length: {len(body)}\r\n\r\n").encode() + body

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]})
        await send({"type": "http.response.body", "body": b"{}"})

    settings = Settings.load(home=tempfile.mkdtemp(prefix="kfbox-edge-cpu-"), port=8080)
    platform = Platform(settings=settings, db=Database(settings.db_url))
    variants = {"checks off": (HttpToolsProtocol, app),
                "checks on": (guarded_protocol(settings), RequestGuard(app, platform))}

    async def run(protocol_class: Any, target: Any) -> float:
        config = uvicorn.Config(target, log_level="warning", lifespan="off", http=protocol_class)
        config.load()
        protocol = protocol_class(config=config, server_state=ServerState(), app_state={})
        protocol.connection_made(_Transport())
        start = time.process_time()
        for _ in range(requests):
            protocol.data_received(raw)
            while not protocol.cycle.response_complete:
                await asyncio.sleep(0)
        spent = time.process_time() - start
        protocol.connection_lost(None)
        return spent / requests * 1e6

    best: dict[str, float] = {}
    for _ in range(rounds):  # interleaved; the minimum is the cost without interference
        for label, (protocol_class, target) in variants.items():
            best[label] = min(best.get(label, float("inf")), asyncio.run(run(protocol_class, target)))
    return best


def full_app_cpu_microseconds(requests: int = 1_000, rounds: int = 20) -> dict[str, list[float]]:
    """CPU microseconds per request of the whole kfbox app (middleware, host routing, router, the
    gateway's handler) in this process, checks on vs off: a host-routed predict to a service that
    does not exist, so no replica's noise enters; rounds alternate which side goes first."""
    import dataclasses

    import uvicorn
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
    from uvicorn.server import ServerState

    from kfbox.config import Settings
    from kfbox.db import Database
    from kfbox.server.app import create_app
    from kfbox.server.protocol import guarded_protocol

    raw = (f"POST /v1/models/absent:predict HTTP/1.1\r\nHost: absent.{NAMESPACE}.example.com:8080\r\n"
           f"User-Agent: kfbox-loadtest\r\nAccept: */*\r\nContent-Type: application/json\r\n"
           f"Content-Length: {len(BODY)}\r\n\r\n").encode() + BODY
    on = Settings.load(home=tempfile.mkdtemp(prefix="kfbox-edge-app-"), port=8080)
    Database(on.db_url).upgrade()
    variants = {"checks off": (HttpToolsProtocol, create_app(dataclasses.replace(on, guard_checks=False))),
                "checks on": (guarded_protocol(on), create_app(on))}

    async def run(protocol_class: Any, app: Any) -> float:
        config = uvicorn.Config(app, log_level="warning", lifespan="off", http=protocol_class)
        config.load()
        protocol = protocol_class(config=config, server_state=ServerState(), app_state={})
        protocol.connection_made(_Transport())
        start = time.process_time()
        for _ in range(requests):
            protocol.data_received(raw)
            while not protocol.cycle.response_complete:
                await asyncio.sleep(0)
        spent = time.process_time() - start
        protocol.connection_lost(None)
        return spent / requests * 1e6

    spent: dict[str, list[float]] = {label: [] for label in variants}
    labels = list(variants)
    for turn in range(rounds):
        for label in labels[turn % 2:] + labels[:turn % 2]:
            spent[label].append(asyncio.run(run(*variants[label])))
    return spent


def phase(args: argparse.Namespace, off_first: bool) -> tuple[dict[str, list[float]], dict[str, float]]:
    """Both servers started (in the given order), warmed, then ``args.rounds`` interleaved rounds:
    req/s per round and kfbox CPU ms per request, by side."""
    with tempfile.TemporaryDirectory(prefix="kfbox-edge-bench-") as tmp, contextlib.ExitStack() as stack:
        sides: dict[str, tuple[str, list[int]]] = {}
        order = [("checks on", {}), ("checks off", {} if args.control else CHECKS_OFF)]
        for label, env in order[::-1] if off_first else order:
            home = Path(tmp) / label.replace(" ", "-")
            train(home / "pvc" / "models" / "iris" / "model.joblib")
            url, pid = stack.enter_context(kfbox_server(home, env))
            status = apply_iris(url, "iris", 1)
            replica = listening_pid(urlsplit(endpoints(status)[0]).port or 80)
            sides[label] = (url, [pid, *([replica] if replica else [])])
        for url, pids in sides.values():  # warm-up: connections, lazy imports, the replica's first predicts
            one_round(url, args.concurrency, 1.0, pids)
        rps: dict[str, list[float]] = {label: [] for label in sides}
        cpu: dict[str, float] = dict.fromkeys(sides, 0.0)
        total: dict[str, int] = dict.fromkeys(sides, 0)
        labels = list(sides)
        for turn in range(args.rounds):
            for label in labels[turn % 2:] + labels[:turn % 2]:
                url, pids = sides[label]
                r, c, n = one_round(url, args.concurrency, args.seconds, pids)
                rps[label].append(r)
                cpu[label] += c
                total[label] += n
            time.sleep(0.2)
    return rps, {label: cpu[label] * 1000 / total[label] for label in labels}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="seconds per slice")
    parser.add_argument("--rounds", type=int, default=6, help="slices per side and phase, alternating who goes first")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--control", action="store_true",
                        help="A/A control: both servers with the checks on (shows what is left of the bias)")
    args = parser.parse_args()
    print(f"V1 predict by Host routing, c={args.concurrency}, {args.rounds} x {args.seconds:g}s slices per side "
          "and phase; phase 2 starts the servers in the other order (the first-started server was "
          "consistently slower here, both ways round)")
    print(f"{'':<22}{'req/s median':>14}{'min':>9}{'max':>9}{'kfbox CPU ms/req':>19}")
    rps_ratios, cpu_ratios, cpu_off = [], [], []
    for number, off_first in ((1, False), (2, True)):
        rps, cpu_ms = phase(args, off_first)
        for label in rps:
            print(f"{f'phase {number} {label}':<22}{statistics.median(rps[label]):>14.1f}{min(rps[label]):>9.1f}"
                  f"{max(rps[label]):>9.1f}{cpu_ms[label]:>19.3f}")
        rps_ratios.append(statistics.median(rps["checks on"]) / statistics.median(rps["checks off"]))
        cpu_ratios.append(cpu_ms["checks on"] / cpu_ms["checks off"])
        cpu_off.append(cpu_ms["checks off"])
    rps_ratio = statistics.geometric_mean(rps_ratios)
    cpu_ratio = statistics.geometric_mean(cpu_ratios)
    print(f"on/off, geometric mean of the two phases: req/s {rps_ratio:.3f} "
          f"(phases {rps_ratios[0]:.3f}, {rps_ratios[1]:.3f}); kfbox CPU per request {cpu_ratio:.3f} "
          f"(phases {cpu_ratios[0]:.3f}, {cpu_ratios[1]:.3f}); goal: loss <= 3%")
    edge = edge_cpu_microseconds()
    added = edge["checks on"] - edge["checks off"]
    gateway_ms = statistics.median(cpu_off)
    print(f"in-process, uvicorn protocol + no-op app, CPU us/request: checks off {edge['checks off']:.1f}, "
          f"on {edge['checks on']:.1f}: +{added:.1f} us = {added / 10 / gateway_ms:.2f}% of kfbox's "
          f"{gateway_ms:.2f} ms CPU per gateway request")
    full = full_app_cpu_microseconds()
    ratio = statistics.median(a / b for a, b in zip(full["checks on"], full["checks off"], strict=True))
    print(f"in-process, the whole kfbox app on a host-routed predict (gateway 404, no replica), CPU us/request "
          f"(median of {len(full['checks on'])} rounds): checks off {statistics.median(full['checks off']):.1f}, "
          f"on {statistics.median(full['checks on']):.1f}; median per-round ratio on/off {ratio:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

