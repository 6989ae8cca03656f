"""kfbox's data planes against the replica straight (issue 15 item 4): the Python gateway, HAProxy, the hand-off.

    .venv/bin/python benchmarks/data_plane.py [--concurrency 1,8] [--seconds 6] [--rounds 3] [--services 30]

One ``kfbox up --data-plane haproxy`` and one ``kfbox up --data-plane handoff`` each serve an iris KNN model
with one replica; the same V1 predict is sent, closed loop with ``wrk -t1 -cC`` (one client kind for every
path, keep-alive connections), to

* ``direct``: the first server's replica, on its own port;
* ``gateway``: the first server's port, the Python gateway (``/serving/{namespace}/{name}/...``);
* ``haproxy``: its ingress port, HAProxy configured by kfbox, straight to the replica;
* ``direct2``: the second server's replica, on its own port;
* ``handoff``: the second server's port, which hands each connection to that replica
  (:mod:`kfbox.serving.handoff`); its ratio is against ``direct2``, the same process.

The paths take turns in rotating order each round, after a warm-up. CPU milliseconds per request come
from /proc for the kfbox server (``gateway``; on the HAProxy path it still counts each request from
HAProxy's log and reads its stats; on the hand-off path, ``server`` takes the replica's reports), HAProxy's
worker and the replica; ``gateway_net`` subtracts the server's idle background measured while the direct path
runs. Every figure is from one run on one machine: compare ratios, not absolute numbers; the machine's load is
printed.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.gateway import NAMESPACE, apply_iris, child, closed_loop, post_script, train, wait_for
from benchmarks.serving import listening_pid

BODY = b'{"instances": [[6.8, 2.8, 4.8, 1.4], [6.0, 3.4, 4.5, 1.6]]}'


@contextlib.contextmanager
def kfbox_with(home: Path, plane: str) -> Iterator[dict[str, Any]]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KFBOX_")}
    env.update(KFBOX_PIPELINES_SPARE_WORKER="0", KFBOX_SERVING_WARM_STANDBY="0", KFBOX_DATA_PLANE=plane)
    argv = [sys.executable, "-m", "kfbox", "up", "--port", "0", "--home", str(home)]
    with child(argv, home.parent / f"{home.name}-server.log", env) as proc:
        def ready() -> dict[str, Any] | None:
            record: dict[str, Any] = json.loads((home / "server.json").read_text())
            ok = record["pid"] == proc.pid and httpx.get(record["url"] + "/healthz").status_code == 200
            return record if ok else None

        yield wait_for(ready, f"kfbox up --data-plane {plane}")


def haproxy_worker(home: Path) -> int:
    """The current HAProxy worker: the master's youngest child."""
    master = int((home / "haproxy" / "haproxy.pid").read_text().split()[0])
    children = Path(f"/proc/{master}/task/{master}/children").read_text().split()
    return max(int(pid) for pid in children)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--concurrency", default="1,8", help="comma-separated wrk connection counts")
    parser.add_argument("--seconds", type=float, default=6.0, help="measured seconds per path and concurrency")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--services", type=int, default=0,
                        help="other InferenceServices served beside iris (one replica each): HAProxy's frontend "
                             "holds a route for each, and a request to iris pays for what it asks of every route")
    args = parser.parse_args()
    print(f"cores {os.cpu_count()}, load {os.getloadavg()[0]:.1f} (1 min) at the start; "
          f"{args.services + 1} InferenceService(s)")
    with tempfile.TemporaryDirectory(prefix="kfbox-data-plane-") as tmp:
        work = Path(tmp)
        home, home2 = work / "home", work / "home2"
        train(home / "pvc" / "models" / "iris")
        train(home2 / "pvc" / "models" / "iris")
        script = post_script(work, BODY)
        with kfbox_with(home, "haproxy") as record, kfbox_with(home2, "handoff") as record2:
            url, ingress = record["url"], record["ingress_url"]
            endpoints = apply_iris(url, "iris", 1)
            for number in range(args.services):
                apply_iris(url, f"other-{number}", 1, "iris")
            replica_url = endpoints[0]
            # kfbox rewrites the port -> revision map once it has put the replica into HAProxy (at run time)
            mapped = f"{replica_url.rsplit(':', 1)[1]} "
            wait_for(lambda: mapped in (home / "haproxy" / "revisions.map").read_text(), "HAProxy route")
            route = f"/serving/{NAMESPACE}/iris/v1/models/iris:predict"
            replica_pid = listening_pid(int(replica_url.rsplit(":", 1)[1]))
            assert replica_pid is not None
            replica2_url = apply_iris(record2["url"], "iris", 1)[0]
            replica2_pid = listening_pid(int(replica2_url.rsplit(":", 1)[1]))
            assert replica2_pid is not None
            paths = {"direct": replica_url + "/v1/models/iris:predict", "gateway": url + route,
                     "haproxy": ingress + route, "direct2": replica2_url + "/v1/models/iris:predict",
                     "handoff": record2["url"] + route}
            for label, target in paths.items():
                reply = httpx.post(target, content=BODY, headers={"content-type": "application/json"})
                assert reply.status_code == 200, (label, reply.text)
            server = {"gateway": int(record["pid"]), "replica": replica_pid}
            results = {}
            for concurrency in (int(c) for c in args.concurrency.split(",")):
                server2 = {"server": int(record2["pid"]), "replica": replica2_pid}
                watch = {"direct": server, "gateway": server,
                         "haproxy": {**server, "haproxy": haproxy_worker(home)},
                         "direct2": server2, "handoff": server2}
                cells = closed_loop(paths, watch, concurrency, args.seconds, args.rounds, script)
                results[concurrency] = cells
                print(f"\nc={concurrency}")
                print(f"{'path':8} {'req/s':>7} {'x direct':>8} {'p50 ms':>7} {'p99 ms':>7}  CPU ms/request")
                for label, cell in cells.items():
                    direct = cells["direct2" if label in ("direct2", "handoff") else "direct"]["rps"]
                    cpu = ", ".join(f"{name} {value:.3f}" for name, value in cell["cpu_ms_per_request"].items())
                    net = cell.get("gateway_net_ms_per_request")
                    cpu += f", gateway_net {net:.3f}" if net is not None else ""
                    print(f"{label:8} {cell['rps']:7.0f} {cell['rps'] / direct:8.2f} {cell['p50_ms']:7.2f} "
                          f"{cell['p99_ms']:7.2f}  {cpu}")
            for label, where in (("gateway and haproxy", url), ("handoff", record2["url"])):
                metrics = httpx.get(where + "/metrics").text
                counted = sum(float(line.rsplit(" ", 1)[1]) for line in metrics.splitlines()
                              if line.startswith("kfbox_serving_requests_total{"))
                print(f"kfbox_serving_requests_total ({label}, warm-ups included): {counted:.0f}")
    print(f"load {os.getloadavg()[0]:.1f} (1 min) at the end")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
