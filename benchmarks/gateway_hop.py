"""The gateway hop alone (issue 15 item 4): kfbox's gateway and HAProxy in front of a replica that costs nothing.

    .venv/bin/python benchmarks/gateway_hop.py [--baseline-src DIR] [--concurrency 1,8] [--rounds 6] [--replica-ms 2.5]
                                               [--instructions N]

Behind ``benchmarks/gateway.py``'s figures a kserve replica costs ~10x the hop, so the hop's own CPU
is a small difference of large, noisy numbers. Here the replica is a raw asyncio server answering a
fixed V1 reply; a kfbox server (the full app, its protocol and short lane, the real gateway) serves
one InferenceService whose one ready replica is that server, with the manager's reconcile loop off
(nothing to spawn). ``--baseline-src DIR`` adds the same server from another source tree; HAProxy
(Debian) is the named peer. ``wrk -t1 -cC`` drives every path in rotating order each round; the
figure is CPU milliseconds per request of each proxy process, from /proc.

``--replica-ms`` has the stand-in answer that long after each request, as a real replica does. It
moves both proxies' CPU per request alike, C or Python, which is why the full benchmark's figures
are higher than this one's without it. Back to back at c=1 (load 17-20, 3 rounds of 3 s):
replica at once, kfbox 0.133 ms and HAProxy 0.042; 2.5 ms later, kfbox 0.304-0.307 and HAProxy
0.092-0.122. The instructions kfbox runs per request are the same either way (372k and 373k,
callgrind); the time each takes after a sleep is not.

``--instructions N`` counts instead the user-space instructions each kfbox tree's gateway runs per
request (callgrind, load-independent): the server starts under ``valgrind --tool=callgrind
--instr-atstart=no``, takes a warm-up uninstrumented, then ``callgrind_control -i on`` counts N
sequential requests on one keep-alive connection (c=1; the client is this process, not counted).
The figure includes the server's idle background over those seconds (the protocol's sweep, ~1%).

    python benchmarks/gateway_hop.py --serve PORT INFO_JSON    # one kfbox gateway (internal)
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.gateway import HAPROXY, ROOT, child, free_port, post_script, source_tree, wait_for
from benchmarks.serving import cpu_seconds

REPLY = (b"HTTP/1.1 200 OK\r\ndate: Wed, 02 Dec 2026 10:00:00 GMT\r\nserver: uvicorn\r\ncontent-length: 19\r\n"
         b"content-type: application/json\r\n\r\n{\"predictions\":[1]}")
BODY = b'{"instances": [[6.8, 2.8, 4.8, 1.4]]}'


def null_replica(port: int, delay_ms: float = 0.0) -> None:
    """Answers every request with :data:`REPLY` (httptools for the framing, uvloop), ``delay_ms`` after it came.

    A delay makes the gateway sleep between the request and the reply as it does in front of a
    real replica (kserve's iris: 1-3 ms), which is what its CPU per request depends on most
    (``benchmarks/gateway.py``'s docstring); with none the hop runs with warm caches.
    """
    import httptools
    import uvloop

    class Replica(asyncio.Protocol):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            self.transport = transport
            self.parser = httptools.HttpRequestParser(self)
            self.loop = asyncio.get_running_loop()

        def data_received(self, data: bytes) -> None:
            self.parser.feed_data(data)

        def on_message_complete(self) -> None:
            if delay_ms:
                self.loop.call_later(delay_ms / 1000, self.transport.write, REPLY)  # type: ignore[attr-defined]
            else:
                self.transport.write(REPLY)  # type: ignore[attr-defined]

    async def main() -> None:
        server = await asyncio.get_running_loop().create_server(Replica, "127.0.0.1", port)
        await server.serve_forever()

    uvloop.run(main())


def serve(replica_port: int, info: Path) -> None:
    """A kfbox server whose InferenceService ``ns/m`` has the null replica as its one ready replica."""
    import uvicorn

    from kfbox.config import Settings
    from kfbox.db import Database
    from kfbox.server.app import create_app
    from kfbox.server.platform import Platform
    from kfbox.server.protocol import guarded_protocol
    from kfbox.serving.deployment import Deployment
    from kfbox.serving.pool import PoolConfig, Replica, ReplicaPool
    from kfbox.serving.spec import PredictorSpec
    from kfbox.serving.store import ServiceRecord

    home = Path(tempfile.mkdtemp(prefix="kfbox-hop-"))
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(1024)
    settings = dataclasses.replace(Settings.load(home=home), port=sock.getsockname()[1])
    database = Database(settings.db_url)
    database.upgrade()
    platform = Platform(settings=settings, db=database)
    app = create_app(settings, platform)
    services: Any = platform.services  # a dict in trees before services became attributes
    manager = services["serving"] if isinstance(services, dict) else services.serving
    resources = services["inferenceservices"] if isinstance(services, dict) else services.inferenceservices
    # no reconcile loop (it would reap a replica it did not spawn) and no status tracking of the stand-in
    platform.on_startup[:] = [hook for hook in platform.on_startup
                              if getattr(hook, "__self__", None) not in (manager, resources)]

    @dataclasses.dataclass
    class Running:
        alive: bool = True
        pid: int = 0

    def install() -> None:
        spec = PredictorSpec(model_format="sklearn", storage_uri=None, model_class=None, python_path=None,
                             min_replicas=1, max_replicas=1, scale_target=1000, scale_metric="concurrency",
                             scale_window=None, enable_grpc=False)
        record = ServiceRecord(namespace="ns", name="m", manifest={}, generation=1, latest=1, stable=1,
                               canary_percent=None, revisions={1: spec}, created_ms=0)
        config = PoolConfig(model_name="m", revision="m-predictor-00001", log_dir=home, scale_window=60.0,
                            start_timeout=60.0)
        pool = ReplicaPool(config, spec, Path, manager.launcher)
        pool.replicas.append(Replica(index=1, port=replica_port, child=Running(), started_at=0.0,  # type: ignore[arg-type]
                                     ready_at=0.0))
        manager.deployments[("ns", "m")] = Deployment(record=record, pools={1: pool})
        info.write_text(json.dumps({"url": f"http://127.0.0.1:{settings.port}/serving/ns/m/v1/models/m:predict",
                                    "pid": os.getpid()}))

    platform.on_startup.append(install)
    lane = getattr(app.state, "short_lane", None)  # absent in a tree from before the short lane
    http = guarded_protocol(settings, lane) if lane is not None else guarded_protocol(settings)
    uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False, lifespan="on", http=http,
                                  timeout_keep_alive=5)).run(sockets=[sock])


def count_requests(url: str, pid: int, requests: int) -> None:
    """Instructions the server ``pid`` (under callgrind, counting off) runs per request, ``requests`` in a row."""
    split = urlsplit(url)
    head = (f"POST {split.path} HTTP/1.1\r\nhost: {split.netloc}\r\ncontent-type: application/json\r\n"
            f"content-length: {len(BODY)}\r\n\r\n").encode() + BODY
    with socket.create_connection((split.hostname, split.port), timeout=120) as sock:
        def one() -> None:
            sock.sendall(head)
            data = b""
            while b"\r\n\r\n" not in data or not data.endswith(b"}"):
                chunk = sock.recv(65536)
                if not chunk:
                    raise RuntimeError("the gateway closed the connection")
                data += chunk
            if not data.startswith(b"HTTP/1.1 200"):
                raise RuntimeError(f"not a 200: {data[:200]!r}")

        for _ in range(200):  # warm-up, uninstrumented
            one()
        subprocess.run(["callgrind_control", "-i", "on", str(pid)], check=True, capture_output=True)
        for _ in range(requests):
            one()
        subprocess.run(["callgrind_control", "-d", str(pid)], check=True, capture_output=True)
        subprocess.run(["callgrind_control", "-i", "off", str(pid)], check=True, capture_output=True)


def dumped_instructions(out: Path) -> int:
    totals = []
    for dump in out.parent.glob(f"{out.name}*"):
        with contextlib.suppress(OSError):
            found = re.search(r"^(?:summary|totals):\s+(\d+)", dump.read_text(), re.M)
            totals.append(int(found.group(1)) if found else 0)
    return max(totals, default=0)


def wrk(url: str, concurrency: int, seconds: int, script: Path) -> tuple[int, float]:
    out = subprocess.run(["wrk", "-t1", f"-c{concurrency}", f"-d{seconds}s", "-s", str(script), url],
                         capture_output=True, text=True).stdout
    total, rps = re.search(r"(\d+) requests in", out), re.search(r"Requests/sec:\s+([\d.]+)", out)
    if total is None or rps is None or "Non-2xx" in out:
        raise RuntimeError(f"wrk did not report a clean run on {url}:\n{out}")
    return int(total.group(1)), float(rps.group(1))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--serve", nargs=2, metavar=("REPLICA_PORT", "INFO_JSON"), help=argparse.SUPPRESS)
    parser.add_argument("--null-replica", nargs=2, metavar=("PORT", "DELAY_MS"), help=argparse.SUPPRESS)
    parser.add_argument("--baseline-src", type=Path, default=None)
    parser.add_argument("--concurrency", default="1,8")
    parser.add_argument("--seconds", type=int, default=4, help="seconds per path, round and concurrency")
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--replica-ms", type=float, default=0.0,
                        help="the stand-in replica answers this long after a request (a real one: 1-3 ms)")
    parser.add_argument("--instructions", type=int, default=0, metavar="N",
                        help="count each kfbox gateway's instructions per request over N requests (callgrind)")
    args = parser.parse_args()
    if args.serve:
        serve(int(args.serve[0]), Path(args.serve[1]))
        return 0
    if args.null_replica:
        null_replica(int(args.null_replica[0]), float(args.null_replica[1]))
        return 0
    print(f"cores {os.cpu_count()}, load average {os.getloadavg()[0]:.1f}; every proxy here is one process; "
          f"the replica answers {args.replica_ms:g} ms after each request")
    with tempfile.TemporaryDirectory(prefix="kfbox-hop-") as tmp, contextlib.ExitStack() as stack:
        work = Path(tmp)
        script = post_script(work, BODY)
        replica_port = free_port()
        stack.enter_context(child([sys.executable, __file__, "--null-replica", str(replica_port), str(args.replica_ms)],
                                  work / "r.log"))
        env = {k: v for k, v in os.environ.items() if not k.startswith("KFBOX_")}
        env.update(KFBOX_PIPELINES_SPARE_WORKER="0", KFBOX_SERVING_WARM_STANDBY="0")
        paths: dict[str, tuple[str, int]] = {}
        trees = {"kfbox": ROOT / "src"}
        if args.baseline_src is not None:
            trees["kfbox before"] = source_tree(args.baseline_src.resolve())
        for label, src in trees.items():
            info = work / f"{label.replace(' ', '-')}.json"
            tree_env = dict(env, PYTHONPATH=str(src))
            argv = [sys.executable, __file__, "--serve", str(replica_port), str(info)]
            out = work / f"callgrind-{label.replace(' ', '-')}.out"
            if args.instructions:
                argv = ["valgrind", "--tool=callgrind", "--instr-atstart=no", f"--callgrind-out-file={out}", *argv]
            with contextlib.ExitStack() as server:
                server.enter_context(child(argv, work / f"{label}.log", tree_env))
                record = wait_for(lambda info=info: json.loads(info.read_text()), label, 600)
                if args.instructions:
                    count_requests(record["url"], record["pid"], args.instructions)
                    count = dumped_instructions(out) / args.instructions
                    print(f"{label:<14} {count / 1000:.0f}k instructions per request in the gateway "
                          f"({args.instructions} requests, c=1)")
                    continue
                stack.enter_context(server.pop_all())
            paths[label] = (record["url"], record["pid"])
        if args.instructions:
            return 0
        port = free_port()
        config = work / "haproxy.cfg"
        config.write_text(HAPROXY.format(port=port, replica=replica_port))
        proxy = stack.enter_context(child(["haproxy", "-db", "-f", str(config)], work / "haproxy.log"))
        paths["haproxy"] = (f"http://127.0.0.1:{port}/v1/models/m:predict", proxy.pid)
        time.sleep(0.5)
        labels = list(paths)
        print(f"\n{'path':<14}{'c':>4}{'req/s (median)':>16}   CPU ms per request of the proxy")
        for concurrency in (int(c) for c in args.concurrency.split(",")):
            for url, _ in paths.values():
                wrk(url, concurrency, 1, script)  # warm-up
            cpu = dict.fromkeys(labels, 0.0)
            count = dict.fromkeys(labels, 0)
            rates: dict[str, list[float]] = {label: [] for label in labels}
            for turn in range(args.rounds):
                for label in labels[turn % len(labels):] + labels[:turn % len(labels)]:
                    url, pid = paths[label]
                    before = cpu_seconds(pid)
                    requests, rps = wrk(url, concurrency, args.seconds, script)
                    cpu[label] += cpu_seconds(pid) - before
                    count[label] += requests
                    rates[label].append(rps)
            for label in labels:
                median = sorted(rates[label])[len(rates[label]) // 2]
                print(f"{label:<14}{concurrency:>4}{median:>16.0f}   {cpu[label] * 1000 / count[label]:.3f}")
    print(f"load average after {os.getloadavg()[0]:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
