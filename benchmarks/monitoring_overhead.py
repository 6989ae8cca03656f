"""What monitoring costs the gateway: req/s with and without Prometheus scraping every second, the CPU of
one ``/metrics`` scrape, the in-memory history's memory, Prometheus's RSS and disk.

Starts ``kfbox up`` (own home), deploys the iris model, then runs many short pairs of ``wrk`` rounds
against the gateway (the same client both sides: 1 thread, ``--connections``), one with the local
Prometheus stopped and one with it scraping the server and the replica every second, the order
alternating from pair to pair (ABBA...). Each round is warmed first (a 1 s wrk run after Prometheus
started or stopped), then measured; it also reads CPU time from /proc: the server's, and the
server's with its replica and Prometheus. Per pair: req/s on/off and CPU per request on/off; printed
as the median of the pair ratios with a 95% bootstrap confidence interval. CPU per request is the
steadier figure on a shared machine; req/s is the goal's own unit (loss = 1 - ratio, goal <= 3%).

Then: the server's CPU per ``/metrics`` scrape (interleaved with a ``--peer-src`` tree's server when
given, e.g. the tree before ScrapeRoute), the text writer A/B on the server's own series
(``prometheus_client.generate_latest`` vs ``kfbox.server.exposition``, same bytes), the history's
memory after simulated hours at 1,000 req/s, and with ``--storage-minutes`` Prometheus's RSS and disk
growth for iris at the default 5 s scrape.

Hardware counters (``perf stat -e instructions``) would make the per-request figure load-independent,
but this VM has no PMU (``<not supported>``); where ``perf`` counts, ``--perf`` adds instructions per
request of the server process to each round.

    .venv/bin/python benchmarks/monitoring_overhead.py --pairs 20 --seconds 3          # ~6 min
    .venv/bin/python benchmarks/monitoring_overhead.py --pairs 0 --peer-src /tmp/before/src  # scrape cost only
    .venv/bin/python benchmarks/monitoring_overhead.py --pairs 0 --storage-minutes 60  # Prometheus per hour
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import os
import random
import re
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Iterable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import Collector
from tests.serving.helpers import apply, manifest, train_iris, wait_ready
from tests.support import ServerProcess

from kfbox.monitoring.history import History
from kfbox.monitoring.prometheus import SD_REFRESH_SECONDS
from kfbox.server.exposition import Exposition

LUA = """wrk.method = "POST"
wrk.body = '{"instances": [[5.1, 3.5, 1.4, 0.2]]}'
wrk.headers["Content-Type"] = "application/json"
"""


def wrk(url: str, seconds: int, connections: int, script: Path) -> tuple[float, int]:
    """(req/s, requests) of one round."""
    out = subprocess.run(["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "-s", str(script), url],
                         capture_output=True, text=True, timeout=seconds + 30).stdout
    rate, total = re.search(r"Requests/sec:\s+([\d.]+)", out), re.search(r"(\d+) requests in", out)
    if not rate or not total or "Non-2xx" in out or "Socket errors" in out:
        raise RuntimeError(out)
    return float(rate.group(1)), int(total.group(1))


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def descendants(pid: int) -> list[int]:
    """The live descendants of ``pid`` (the server's replicas, workers, Prometheus), from /proc."""
    found, queue = [], [pid]
    while queue:
        parent = queue.pop()
        for task in Path(f"/proc/{parent}/task").glob("*"):
            try:
                children = [int(c) for c in (task / "children").read_text().split()]
            except OSError:
                continue
            found += children
            queue += children
    return found


def tree_cpu(pid: int) -> float:
    """CPU seconds of ``pid`` and its live descendants (a process that exited in between is not counted)."""
    total = 0.0
    for p in [pid, *descendants(pid)]:
        with contextlib.suppress(OSError):
            total += cpu_seconds(p)
    return total


def du(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


class _Frozen(Collector):
    """The families parsed from a real /metrics, yielded again: the server's series for the writer A/B."""

    def __init__(self, families: Iterable[Any]) -> None:
        self.families = list(families)

    def collect(self) -> Iterable[Any]:
        return iter(self.families)


def writer_ab(text: str, rounds: int = 200) -> tuple[float, float]:
    """Median ms per scrape of generate_latest and of Exposition on the same series, interleaved."""
    registry = CollectorRegistry()
    registry.register(_Frozen(text_string_to_metric_families(text)))
    writer = Exposition(registry)
    assert writer.generate() == generate_latest(registry)
    old, new = [], []
    for _ in range(rounds):
        t0 = time.perf_counter()
        generate_latest(registry)
        t1 = time.perf_counter()
        writer.generate()
        t2 = time.perf_counter()
        old.append(t1 - t0)
        new.append(t2 - t1)
    return statistics.median(old) * 1000, statistics.median(new) * 1000


def history_memory(rate: float = 1000.0, interval: float = 5.0, hours: int = 4) -> list[int]:
    """Traced bytes after each hour of one service sampled at ``rate`` req/s (History built under the trace)."""
    registry = CollectorRegistry()
    requests = Counter("kfbox_serving_requests", "", ["namespace", "name", "code"], registry=registry)
    latency = Histogram("kfbox_serving_request_duration_seconds", "", ["namespace", "name"], registry=registry)
    pool = SimpleNamespace(replicas=[SimpleNamespace(ready=True)], inflight=8, desired=1)
    serving = SimpleNamespace(metrics=SimpleNamespace(requests=requests, latency=latency),
                              deployments={("default", "iris"): SimpleNamespace(pools={1: pool})})
    gc.collect()
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    history = History(interval=interval, horizon=3600.0)
    per_sample = int(rate * interval)
    now, seen = 0.0, []
    for _ in range(hours):
        for _ in range(int(3600 / interval)):
            now += interval
            requests.labels("default", "iris", "200").inc(per_sample)
            latency.labels("default", "iris").observe(0.004)  # the history reads the cumulative buckets only
            history.sample(serving, now)
        gc.collect()
        seen.append(tracemalloc.get_traced_memory()[0] - base)
    tracemalloc.stop()
    return seen


def cpu_per_call(client: Any, pid: int, path: str, params: dict[str, str] | None = None, n: int = 200) -> float:
    """Server CPU ms per GET of ``path`` (from /proc, over ``n`` calls)."""
    cpu0 = cpu_seconds(pid)
    for _ in range(n):
        client.get(path, params=params)
    return (cpu_seconds(pid) - cpu0) * 1000 / n


def storage(minutes: float, rate: float) -> None:
    """Prometheus at the default 5 s scrape interval on the iris deployment under ``rate`` req/s: RSS, disk."""
    home = Path(tempfile.mkdtemp(prefix="kfbox-monstore-"))
    server = ServerProcess.start(home, extra_env={"KFBOX_PROMETHEUS": "1"})
    try:
        with server.client() as client:
            train_iris(home / "pvc" / "models" / "iris")
            apply(client, manifest("iris", "pvc://models/iris"))
            wait_ready(client, "iris")
            pid = int(client.get("/monitoring/prometheus").json()["pid"])
            data = home / "monitoring" / "data"
            began = time.time()
            rows = []
            next_at, sent = began, 0
            while time.time() - began < minutes * 60:
                sent += 1
                client.post("/serving/default/iris/v1/models/iris:predict",
                            json={"instances": [[5.1, 3.5, 1.4, 0.2]]})
                if time.time() >= next_at:
                    rows.append((time.time() - began, rss_kb(pid), du(data)))
                    next_at += 60
                time.sleep(1 / rate)
            rows.append((time.time() - began, rss_kb(pid), du(data)))
            series = len(client.get("/metrics").text.splitlines())
    finally:
        server.stop()
    print(f"\nPrometheus at the default 5 s scrape, iris under {sent / rows[-1][0]:.1f} req/s "
          f"({series} server lines + the replica's):")
    for t, rss, size in rows:
        print(f"  {t:6.0f} s  RSS {rss / 1024:6.1f} MiB  data {size / 1024:8.0f} KiB")
    (t0, _, d0), (t1, _, d1) = rows[1] if len(rows) > 2 else rows[0], rows[-1]
    per_hour = (d1 - d0) / (t1 - t0) * 3600
    print(f"  data grows {per_hour / 1024 / 1024:.1f} MiB/hour (write-ahead log, before the 2-hour block "
          "compaction compresses it; extrapolated from this run)")


def median_ci(values: list[float], level: float = 0.95, resamples: int = 4000) -> tuple[float, float, float]:
    """(median, low, high): the median and its percentile-bootstrap confidence interval (fixed seed)."""
    rng = random.Random(0)
    medians = sorted(statistics.median(rng.choices(values, k=len(values))) for _ in range(resamples))
    cut = int((1 - level) / 2 * resamples)
    return statistics.median(values), medians[cut], medians[resamples - 1 - cut]


def show(label: str, ratios: list[float]) -> None:
    mid, low, high = median_ci(ratios)
    print(f"  {label}: median {mid:.4f}, 95% CI [{low:.4f}, {high:.4f}] over {len(ratios)} pairs "
          f"(single pairs {min(ratios):.3f}-{max(ratios):.3f})")


class Instructions:
    """``perf stat -e instructions:u`` on one process for one round; None where the machine has no counters."""

    def __init__(self, pid: int, out: Path) -> None:
        self.out = out
        self.process = subprocess.Popen(["perf", "stat", "-x,", "-e", "instructions:u", "-o", str(out),
                                         "-p", str(pid)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def stop(self) -> float | None:
        self.process.send_signal(2)  # SIGINT: perf writes its counts and exits
        self.process.wait(10)
        for line in self.out.read_text().splitlines():
            fields = line.split(",")
            if len(fields) > 2 and "instructions" in fields[2] and fields[0].strip().isdigit():
                return float(fields[0])
        return None


def overhead(args: argparse.Namespace, client: Any, spid: int, url: str, script: Path, home: Path) -> float:
    """The interleaved pairs; returns the seconds Prometheus was scraping (for its data figure)."""

    def prometheus(action: str) -> dict[str, Any]:
        return dict(client.post("/monitoring/prometheus", json={"action": action}).json())

    wrk(url, 3, args.connections, script)  # warm-up: both sides reuse the same warm replica
    names = ("req/s", "server CPU/request", "server+replica+Prometheus CPU/request", "server instructions/request")
    ratios: dict[str, list[float]] = {name: [] for name in names}
    absolute: dict[str, dict[str, list[float]]] = {name: {"off": [], "on": []} for name in names}
    scraping = 0.0
    prom_share: list[float] = []
    for i in range(args.pairs):
        pair: dict[str, dict[str, float]] = {}
        for side in (("off", "on") if i % 2 == 0 else ("on", "off")):
            status = prometheus("start" if side == "on" else "stop")
            time.sleep(2.5 if side == "on" else 0.5)  # Prometheus up and scraping (or gone)
            wrk(url, 1, args.connections, script)  # this side warmed: same state as it is measured in
            counter = Instructions(spid, home / "perf.txt") if args.perf else None
            cpu0, all0, t0 = cpu_seconds(spid), tree_cpu(spid), time.time()
            prom0 = cpu_seconds(int(status["pid"])) if status["running"] else 0.0
            rate, total = wrk(url, args.seconds, args.connections, script)
            if status["running"]:
                prom_share.append((cpu_seconds(int(status["pid"])) - prom0) / (time.time() - t0))
            got = {"req/s": rate, "server CPU/request": (cpu_seconds(spid) - cpu0) * 1000 / total,
                   "server+replica+Prometheus CPU/request": (tree_cpu(spid) - all0) * 1000 / total}
            instructions = counter.stop() if counter else None
            if instructions is not None:
                got["server instructions/request"] = instructions / total
            if status["running"]:
                scraping += time.time() - t0
            pair[side] = got
            for name, value in got.items():
                absolute[name][side].append(value)
            print(f"pair {i + 1:2d} {side:>3}: {rate:8.1f} req/s, CPU/request: server "
                  f"{got['server CPU/request']:.3f} ms, server+replica+Prometheus "
                  f"{got['server+replica+Prometheus CPU/request']:.3f} ms"
                  + (f", {instructions / total / 1e6:.2f} M instructions" if instructions else ""), flush=True)
        for name in names:
            if name in pair["on"] and name in pair["off"]:
                ratios[name].append(pair["on"][name] / pair["off"][name])
    print(f"\nscraped every 1 s against not scraped, {args.pairs} interleaved pairs of {args.seconds} s "
          f"(wrk -t1 -c{args.connections}); ratio on/off (goal: req/s >= 0.97; CPU per request carries the fixed "
          "per-second cost of the scrapes, so its ratio grows as req/s falls: read it at the machine's full rate):")
    for name in names:
        if ratios[name]:
            off, on = statistics.median(absolute[name]["off"]), statistics.median(absolute[name]["on"])
            print(f"  {name}: off {off:.4g}, on {on:.4g} (medians of rounds)")
            show(f"{name} on/off", ratios[name])
    print(f"  Prometheus itself while scraping every 1 s: {statistics.median(prom_share) * 100:.1f}% of a core "
          "(median of rounds; on a machine whose cores the gateway saturates, its share of them is lost req/s)")
    if args.perf and not ratios["server instructions/request"]:
        print("  (perf counted no instructions: this machine has no hardware counters)")
    return scraping


def scrape_cost(clients: dict[str, Any], pids: dict[str, int], rounds: int = 20, per_round: int = 100) -> None:
    """Server CPU ms per /metrics scrape, each side's rounds interleaved (idle servers, /proc CPU time)."""
    took: dict[str, list[float]] = {side: [] for side in clients}
    for _ in range(rounds):
        for side, client in clients.items():
            took[side].append(cpu_per_call(client, pids[side], "/metrics", n=per_round))
    for side, values in took.items():
        lines = clients[side].get("/metrics").text.count("\n")
        print(f"server CPU per /metrics scrape, {side}: median {statistics.median(values):.3f} ms "
              f"(rounds of {per_round}: {min(values):.3f}-{max(values):.3f}; {lines} lines)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pairs", type=int, default=20, help="interleaved on/off pairs (0: skip)")
    parser.add_argument("--seconds", type=int, default=3, help="measured seconds of each round")
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--perf", action="store_true", help="also count the server's instructions with perf stat")
    parser.add_argument("--peer-src", type=Path, help="another kfbox tree's src/ whose /metrics cost is compared")
    parser.add_argument("--storage-minutes", type=float, default=0, help="then Prometheus RSS/disk over this long")
    args = parser.parse_args()
    home = Path(tempfile.mkdtemp(prefix="kfbox-monbench-"))
    script = home / "post.lua"
    script.write_text(LUA)
    server = ServerProcess.start(home, extra_env={"KFBOX_PROMETHEUS_SCRAPE_INTERVAL": "1s"})
    peer = None
    started = time.time()
    scraping = 0.0
    try:
        with server.client() as client:
            train_iris(home / "pvc" / "models" / "iris")
            apply(client, manifest("iris", "pvc://models/iris"))
            wait_ready(client, "iris")
            url = f"{server.url}/serving/default/iris/v1/models/iris:predict"
            spid = server.process.pid
            if args.pairs:
                scraping = overhead(args, client, spid, url, script, home)
            client.post("/monitoring/prometheus", json={"action": "stop"})

            text = client.get("/metrics").text
            print(f"\nserver /metrics: {text.count(chr(10))} lines")
            clients, pids = {"this": client}, {"this": spid}
            if args.peer_src:
                peer = start_peer(args.peer_src, home / "peer")
                peer_client = peer.client()
                train_iris(peer.home / "pvc" / "models" / "iris")  # the same series as this side's
                apply(peer_client, manifest("iris", "pvc://models/iris"))
                wait_ready(peer_client, "iris")
                for side_client in (client, peer_client):  # the same requests counted on both sides
                    for _ in range(20):
                        side_client.post("/serving/default/iris/v1/models/iris:predict",
                                         json={"instances": [[5.1, 3.5, 1.4, 0.2]]})
                clients[f"peer {args.peer_src}"] = peer_client
                pids[f"peer {args.peer_src}"] = peer.process.pid
            scrape_cost(clients, pids)
            per_cpu = cpu_per_call(client, spid, "/metrics")
            sd = cpu_per_call(client, spid, "/monitoring/sd", {"job": "kfbox"})
            sd_replica = cpu_per_call(client, spid, "/monitoring/sd", {"job": "kfbox-replica"})
            every = SD_REFRESH_SECONDS
            per_second = per_cpu + (sd + sd_replica) / every
            print(f"service discovery: {sd:.2f} + {sd_replica:.2f} ms of server CPU per refresh of the two jobs; "
                  f"with a scrape every second and both lists refreshed every {every} s the server spends "
                  f"{per_second:.2f} ms/s on monitoring = {per_second / 10:.2f}% of its one process")
            old, new = writer_ab(text)
            print(f"text writer on these series: generate_latest {old:.2f} ms, kfbox Exposition {new:.2f} ms "
                  f"({old / new:.1f}x less)")

            if args.pairs:
                status = client.post("/monitoring/prometheus", json={"action": "start"}).json()
                time.sleep(3)
                pid = int(status["pid"])
                data = home / "monitoring" / "data"
                replica = client.get("/monitoring/sd", params={"job": "kfbox-replica"}).json()
                print(f"\nPrometheus: RSS {rss_kb(pid) / 1024:.1f} MiB, data {du(data) / 1024:.0f} KiB after "
                      f"{scraping + 3:.0f} s of scraping at 1 s ({len(replica)} replica target(s) + the server; "
                      f"{time.time() - started:.0f} s since start)")
    finally:
        server.stop()
        if peer is not None:
            peer.stop()
    hours = history_memory()
    print("\nin-memory history, one service at 1,000 req/s sampled every 5 s, traced after each hour: "
          + ", ".join(f"{b / 1024:.1f} KiB" for b in hours))
    if args.storage_minutes:
        storage(args.storage_minutes, rate=10)
    print(f"load average (2-core machine shared with other work): {os.getloadavg()}")


def start_peer(src: Path, home: Path) -> ServerProcess:
    """``kfbox up`` from another source tree (PYTHONPATH first on sys.path), idle, for the scrape A/B."""
    saved = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = str(src.resolve())
    try:
        return ServerProcess.start(home)
    finally:
        if saved is None:
            os.environ.pop("PYTHONPATH", None)
        else:
            os.environ["PYTHONPATH"] = saved


if __name__ == "__main__":
    main()
