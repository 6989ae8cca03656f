"""Requests lost while HAProxy's replicas change: a reload per change, with and without
``option idle-close-on-response``, against kfbox's runtime API changes (no reload).

    PYTHONPATH=src .venv/bin/python benchmarks/haproxy_changes.py [--changes 40] [--clients 8] [--interval 0.25]

HAProxy (Debian) runs kfbox's configuration (``haproxy_config.render``) for one service in front of
two stand-in replicas (plain HTTP/1.1 servers) and a stand-in kfbox. ``--clients`` clients, one
keep-alive connection each (``http.client``, which, as wrk, sends on its connection without first
checking whether the server closed it; httpx checks, which narrows the race but does not close it),
send requests continuously, resting 0-30 ms between them (so a connection is often idle at the
instant a change lands); meanwhile the service's replica is switched ``--changes`` times,
``--interval`` seconds apart, in one of three ways:

- ``reload``: the configuration rewritten and ``SIGUSR2`` (kfbox before the runtime API), without
  ``option idle-close-on-response``: the old worker closes idle connections at once;
- ``reload+idle-close``: the same with the option kfbox's configuration now has;
- ``runtime``: kfbox's runtime API commands (``set server``, ``add map``) to the one worker;
- ``runtime-split``: both replicas routed, weighted 4:1, the canary split turned on and off (a split map entry,
  the weights) by the same runtime API commands, where it took a reload before.

Printed per way: requests, failed requests (a connection error or a non-200; the client reconnects and
goes on), and the HAProxy workers seen.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import http.client
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.serving.helpers import NamedServer

from kfbox.serving.haproxy_config import Plan, Route, Server, render, split_text
from kfbox.serving.haproxy_runtime import (
    MasterSocket,
    map_commands,
    map_text,
    revisions,
    server_commands,
    split_commands,
    worker_pids,
)

WAYS = ("reload", "reload+idle-close", "runtime", "runtime-split")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def plan_for(folder: Path, port: int, kfbox: int, slots: tuple[Server | None, ...]) -> Plan:
    return Plan(bind_host="127.0.0.1", port=port, kfbox_host="127.0.0.1", kfbox_port=kfbox, domain="example.com",
                max_body_bytes=1 << 20, log_socket=str(folder / "log.sock"), token_file=None,
                routes=(Route("default", "svc", slots),), revision_map=str(folder / "revisions.map"),
                split_map=str(folder / "split.map"))


def config_text(plan: Plan, idle_close: bool) -> str:
    text = render(plan)
    return text if idle_close else text.replace("    option idle-close-on-response\n", "")


@contextlib.contextmanager
def haproxy(folder: Path, plan: Plan, idle_close: bool) -> Iterator[subprocess.Popen[bytes]]:
    (folder / "revisions.map").write_text(map_text(revisions(plan, {})))
    (folder / "split.map").write_text(split_text(plan))
    (folder / "haproxy.cfg").write_text(config_text(plan, idle_close))
    master = subprocess.Popen(["haproxy", "-W", "-S", f"{folder / 'master.sock'},mode,600", "-f",
                               str(folder / "haproxy.cfg")], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              start_new_session=True)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", plan.port), timeout=0.2):
            break
        time.sleep(0.05)
    try:
        yield master
    finally:
        os.killpg(master.pid, signal.SIGTERM)
        master.wait(10)


def run(way: str, changes: int, clients: int, interval: float) -> tuple[int, int, int, float, list[str]]:
    kfbox, one, two = NamedServer("kfbox"), NamedServer("one"), NamedServer("two")
    replicas = [Server("svc-predictor-00001", 1, one.port),
                Server("svc-predictor-00002", 1, two.port)]
    with tempfile.TemporaryDirectory(prefix="kfbox-haproxy-changes-") as tmp:
        folder = Path(tmp)
        port = free_port()
        plan = plan_for(folder, port, kfbox.port, (replicas[0], None, None, None) if way != "runtime-split" else
                        (dataclasses.replace(replicas[0], weight=4), replicas[1], None, None))
        master_socket = MasterSocket(folder / "master.sock")
        with haproxy(folder, plan, idle_close=way != "reload") as master:
            stop = threading.Event()
            answered: list[int] = []
            failures: list[str] = []

            def client() -> None:
                connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
                while not stop.is_set():
                    try:
                        connection.request("GET", "/serving/default/svc/v1/models/svc")
                        reply = connection.getresponse()
                        reply.read()
                        if reply.status == 200:
                            answered.append(reply.status)
                        else:
                            failures.append(f"HTTP {reply.status}")
                        if reply.getheader("connection") == "close":
                            connection.close()  # reopened by the next request
                    except (OSError, http.client.HTTPException) as exc:
                        failures.append(repr(exc))
                        connection.close()
                    time.sleep(random.random() * 0.03)
                connection.close()

            threads = [threading.Thread(target=client) for _ in range(clients)]
            started = time.monotonic()
            for thread in threads:
                thread.start()
            workers = set()
            for change in range(changes):
                time.sleep(interval)
                slots = (None, replicas[1], None, None) if change % 2 == 0 else (replicas[0], None, None, None)
                new = dataclasses.replace(plan, routes=(dataclasses.replace(plan.routes[0], slots=slots),))
                if way == "runtime-split":  # the split on (4:1), then off (1:1), as kfbox's weights would be
                    weight = 4 if change % 2 == 0 else 1
                    new = dataclasses.replace(plan, routes=(dataclasses.replace(
                        plan.routes[0], slots=(dataclasses.replace(replicas[0], weight=weight), replicas[1], None,
                                               None), split=change % 2 == 0),))
                if way.startswith("runtime"):
                    off, on = split_commands(plan.split_map, plan, new)
                    commands = map_commands(plan.revision_map, revisions(plan, {}), revisions(new, {})) + off + \
                        server_commands(plan, new) + on
                    asyncio.run(master_socket.run("@1", commands))
                else:
                    (folder / "revisions.map").write_text(map_text(revisions(new, {})))
                    (folder / "split.map").write_text(split_text(new))
                    (folder / "haproxy.cfg").write_text(config_text(new, idle_close=way != "reload"))
                    master.send_signal(signal.SIGUSR2)
                plan = new
                for _ in range(100):  # the master answers again once it re-executed itself
                    answer = asyncio.run(master_socket.ask("show proc"))
                    if answer and worker_pids(answer)[0]:
                        workers |= set(worker_pids(answer)[1])
                        break
                    time.sleep(0.02)
            time.sleep(interval)
            stop.set()
            for thread in threads:
                thread.join(30)
            seconds = time.monotonic() - started
    for server in (kfbox, one, two):
        server.server.shutdown()
    return len(answered) + len(failures), len(failures), len(workers), seconds, failures[:2]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--changes", type=int, default=40)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--interval", type=float, default=0.25, help="seconds between changes")
    args = parser.parse_args()
    if shutil.which("haproxy") is None:
        print("haproxy is not installed: sudo apt-get install haproxy")
        return 1
    print(f"cores {os.cpu_count()}, load {os.getloadavg()[0]:.1f} (1 min); {args.changes} replica switches, "
          f"{args.clients} keep-alive clients")
    print(f"{'way':18} {'requests':>8} {'req/s':>6} {'failed':>6} {'workers':>7}  first failures")
    for way in WAYS:
        total, failed, workers, seconds, first = run(way, args.changes, args.clients, args.interval)
        print(f"{way:18} {total:8} {total / seconds:6.0f} {failed:6} {workers:7}  {'; '.join(first)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
