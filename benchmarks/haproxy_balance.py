"""What each HAProxy ``balance`` does to kfbox's two needs: exact canary shares, and no request sent to a busy
replica while another is idle. Why kfbox gives each service two backends, ``leastconn`` and ``roundrobin`` for
a split, and sends a split service's requests to the second by a map entry (2.6 cannot change ``balance`` at run
time: before, turning a split on or off was a reload).

    PYTHONPATH=src .venv/bin/python benchmarks/haproxy_balance.py [--requests 200]

HAProxy (Debian) runs kfbox's configuration (``haproxy_config.render``) for one service with two stand-in
replicas (one request at a time each, as a kserve process), its ``balance`` line replaced by each candidate:

- *split*: weights 4:1 (an 80/20 canary); ``--requests`` requests at concurrency 1 and 4, the share of each
  replica (exact: 160/40 of 200);
- *busy*: weights 1:1 (no split); one replica holds a 1 s request while a client sends 20 short ones, one after
  the other: how many waited behind the held one (over 0.5 s), and the slowest.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

from kfbox.serving.haproxy_config import Plan, Route, Server, render
from kfbox.serving.haproxy_runtime import map_text, revisions

BALANCES = ("roundrobin", "leastconn", "random", "random(2)")


class Replica:
    """A stand-in replica that answers one request at a time (its name; ``/slow``: after 1 s)."""

    def __init__(self, name: str) -> None:
        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path.endswith("/slow"):
                    time.sleep(1.0)
                body = name.encode()
                self.send_response(200)
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.server = HTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def haproxy(balance: str, weights: tuple[int, int]) -> Iterator[int]:
    """HAProxy in front of two replicas ``a`` and ``b`` with ``weights``; its ingress port."""
    kfbox, a, b = Replica("kfbox"), Replica("a"), Replica("b")
    with tempfile.TemporaryDirectory(prefix="kfbox-haproxy-balance-") as tmp:
        folder, port = Path(tmp), free_port()
        route = Route("default", "svc", (Server("svc-predictor-00001", 1, a.port, weights[0]),
                                         Server("svc-predictor-00002", 1, b.port, weights[1])))
        plan = Plan(bind_host="127.0.0.1", port=port, kfbox_host="127.0.0.1", kfbox_port=kfbox.port,
                    domain="example.com", max_body_bytes=1 << 20, log_socket=str(folder / "log.sock"),
                    token_file=None, routes=(route,), revision_map=str(folder / "revisions.map"))
        (folder / "revisions.map").write_text(map_text(revisions(plan, {})))
        (folder / "haproxy.cfg").write_text(render(plan).replace("balance leastconn", f"balance {balance}"))  # unsplit
        master = subprocess.Popen(["haproxy", "-W", "-f", str(folder / "haproxy.cfg")], stdout=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL, start_new_session=True)
        try:
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.2):
                    break
                time.sleep(0.05)
            yield port
        finally:
            os.killpg(master.pid, signal.SIGTERM)
            master.wait(10)
            for replica in (kfbox, a, b):
                replica.server.shutdown()


def get(port: int, path: str = "/serving/default/svc/predict") -> tuple[str, float]:
    """Which replica answered, and in how many seconds."""
    started = time.monotonic()
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    connection.request("GET", path)
    name = connection.getresponse().read().decode()
    connection.close()
    return name, time.monotonic() - started


def split(balance: str, requests: int, concurrency: int) -> Counter[str]:
    with haproxy(balance, (4, 1)) as port, ThreadPoolExecutor(concurrency) as pool:
        return Counter(name for name, _ in pool.map(lambda _: get(port), range(requests)))


def busy(balance: str) -> tuple[int, float]:
    """Short requests one after the other while a replica holds a 1 s one: how many waited behind it (over
    0.5 s), and the slowest."""
    with haproxy(balance, (1, 1)) as port, ThreadPoolExecutor(1) as pool:
        slow = pool.submit(get, port, "/serving/default/svc/slow")
        time.sleep(0.1)  # the slow request is at its replica
        short = [get(port) for _ in range(20)]
        slow.result()
    return sum(seconds > 0.5 for _, seconds in short), max(seconds for _, seconds in short)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=200)
    args = parser.parse_args()
    if shutil.which("haproxy") is None:
        print("haproxy is not installed: sudo apt-get install haproxy")
        return 1
    exact = args.requests * 4 // 5
    print(f"cores {os.cpu_count()}, load {os.getloadavg()[0]:.1f} (1 min); an 80/20 split of {args.requests} "
          f"requests is {exact}/{args.requests - exact}")
    print(f"{'balance':11} {'split c=1':>10} {'split c=4':>10} {'busy: waited':>13} {'slowest':>8}")
    for balance in BALANCES:
        one, four = split(balance, args.requests, 1), split(balance, args.requests, 4)
        waited, slowest = busy(balance)
        print(f"{balance:11} {one['a']:>5}/{one['b']:<4} {four['a']:>5}/{four['b']:<4} {waited:>10}/20 "
              f"{slowest:>7.2f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
