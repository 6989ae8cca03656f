"""Gateway throughput with and without the local Prometheus scraping every second; its RSS and disk.

Starts ``kfbox up`` (own home), deploys the iris model, then alternates rounds of ``wrk``
against the gateway with Prometheus stopped and running (scrape interval 1 s), after a
warm-up of each. Prints req/s per round, the median of each side and the ratio
(goal: scraping costs <= 3%), then Prometheus's RSS and the size of its data folder.

    .venv/bin/python benchmarks/monitoring_overhead.py --rounds 4 --seconds 10
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.serving.helpers import apply, manifest, train_iris, wait_ready
from tests.support import ServerProcess

LUA = """wrk.method = "POST"
wrk.body = '{"instances": [[5.1, 3.5, 1.4, 0.2]]}'
wrk.headers["Content-Type"] = "application/json"
"""


def wrk(url: str, seconds: int, connections: int, script: Path) -> float:
    out = subprocess.run(["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", "-s", str(script), url],
                         capture_output=True, text=True, timeout=seconds + 30).stdout
    found = re.search(r"Requests/sec:\s+([\d.]+)", out)
    if not found:
        raise RuntimeError(out)
    return float(found.group(1))


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def du(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", type=int, default=16)
    args = parser.parse_args()
    home = Path(tempfile.mkdtemp(prefix="kfbox-monbench-"))
    script = home / "post.lua"
    script.write_text(LUA)
    server = ServerProcess.start(home, extra_env={"KFBOX_PROMETHEUS_SCRAPE_INTERVAL": "1s"})
    started = time.time()
    try:
        with server.client() as client:
            train_iris(home / "pvc" / "models" / "iris")
            apply(client, manifest("iris", "pvc://models/iris"))
            wait_ready(client, "iris")
            url = f"{server.url}/serving/default/iris/v1/models/iris:predict"

            def prometheus(action: str) -> dict[str, object]:
                return dict(client.post("/monitoring/prometheus", json={"action": action}).json())

            wrk(url, 3, args.connections, script)  # warm-up
            results: dict[str, list[float]] = {"off": [], "scrape 1s": []}
            prom_cpu: list[float] = []
            for i in range(args.rounds):
                for side in (("off", "scrape 1s") if i % 2 == 0 else ("scrape 1s", "off")):
                    status = prometheus("start" if side != "off" else "stop")
                    time.sleep(2)  # Prometheus up and scraping (or gone)
                    cpu0, wall0 = (cpu_seconds(int(str(status["pid"]))) if status["running"] else 0.0), time.time()
                    rps = wrk(url, args.seconds, args.connections, script)
                    if status["running"]:
                        prom_cpu.append((cpu_seconds(int(str(status["pid"]))) - cpu0) / (time.time() - wall0))
                    results[side].append(rps)
                    print(f"round {i + 1} {side:>10}: {rps:8.1f} req/s", flush=True)
            off, on = statistics.median(results["off"]), statistics.median(results["scrape 1s"])
            print(f"median off {off:.1f} req/s, with scraping every 1 s {on:.1f} req/s: ratio {on / off:.3f} "
                  f"({(1 - on / off) * 100:+.1f}% loss)")
            status = prometheus("start")
            time.sleep(2)
            pid = int(str(status["pid"]))
            data = home / "monitoring" / "data"
            print(f"Prometheus RSS {rss_kb(pid) / 1024:.1f} MiB, data {du(data) / 1024:.0f} KiB after "
                  f"{time.time() - started:.0f} s of the server (scraping only while 'scrape 1s' rounds ran)")
            lines = client.get("/metrics").text.count("\n")
            took = []
            for _ in range(200):
                t0 = time.perf_counter()
                client.get("/metrics")
                took.append(time.perf_counter() - t0)
            per = statistics.median(took) * 1000
            print(f"server /metrics: {lines} lines, median {per:.2f} ms per scrape "
                  f"({per / 10:.2f}% of one core at one scrape a second); "
                  f"Prometheus CPU while scraping: {statistics.mean(prom_cpu) * 100:.1f}% of one core")
            print(f"load average (2-core machine shared with other work): {os.getloadavg()}")
    finally:
        server.stop()


if __name__ == "__main__":
    main()
