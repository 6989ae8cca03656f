"""Start-up time: ``kfbox --help`` exec-to-exit, and ``kfbox up`` exec-to-``/healthz`` 200 on a
fresh home (new SQLite database, schema created) and on a warm home (schema current), ephemeral port.

Peers, measured in the same run with the rounds interleaved (each round runs every case of every
side once, in an order that alternates): the bare interpreter (``python -c pass``, the floor no
change can beat) and, with ``--baseline SRC``, another kfbox source tree (e.g. an older commit
extracted with ``git archive <commit> src | tar -x -C /tmp/base``) run through PYTHONPATH.
Printed: the median wall time of each case per side and its ratio to the baseline (the goals are
< 1.0 s for a fresh ``up`` and < 0.3 s for ``--help``), then the median CPU time (user+sys of the
process at exit, or at its first /healthz 200), which a loaded machine inflates far less, and the
memory of an idle server's whole process tree (RSS and PSS summed over the server and every
descendant, a few seconds after ready on a fresh home; goal < 150 MiB RSS).

Children run with .pyc files written and read (PYTHONDONTWRITEBYTECODE is dropped from their
environment), as an installed kfbox runs: with it set, every run recompiled kfbox's own modules
(~0.2-0.3 s of CPU that no user pays).

    .venv/bin/python benchmarks/startup.py [--rounds 5] [--baseline /tmp/base/src]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

GOALS = {"help": 0.3, "up fresh": 1.0, "up warm": 1.0}


def _env(src: str | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("KFBOX_") and k not in ("PYTHONPATH", "PYTHONDONTWRITEBYTECODE")}
    if src:
        env["PYTHONPATH"] = src
    env["COLUMNS"] = "100"
    return env


def time_bare(_: str | None, __: Path) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", "pass"], check=True)
    return time.perf_counter() - start


def _cpu_of(pid: int) -> float:
    """user+system CPU seconds a live process has used (its threads included; /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


CPU: dict[tuple[str | None, str], list[float]] = {}


def time_help(src: str | None, _: Path) -> float:
    start = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "kfbox", "--help"], stdout=subprocess.DEVNULL, env=_env(src))
    _pid, status, usage = os.wait4(proc.pid, 0)
    elapsed = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode:
        raise RuntimeError(f"kfbox --help exited {proc.returncode}")
    CPU.setdefault((src, "help"), []).append(usage.ru_utime + usage.ru_stime)
    return elapsed


MEMORY: dict[str | None, list[tuple[float, float]]] = {}
IDLE_SETTLE_SECONDS = 3.0


def _tree(root: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            children.setdefault(int(stat.read_text().rsplit(")", 1)[1].split()[1]), []).append(int(stat.parent.name))
        except (OSError, ValueError, IndexError):
            continue
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo += children.get(pid, [])
    return found


def _memory_mib(pids: list[int]) -> tuple[float, float]:
    """(RSS, PSS) in MiB summed over ``pids`` (PSS shares pages among the processes that map them)."""
    rss = pss = 0.0
    for pid in pids:
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
                key, _, value = line.partition(":")
                if key == "Rss":
                    rss += int(value.split()[0]) / 1024
                elif key == "Pss":
                    pss += int(value.split()[0]) / 1024
    return rss, pss


def _time_up(src: str | None, home: Path, case: str = "", memory: bool = False) -> float:
    """exec of ``kfbox up --port 0`` to the first 200 from /healthz; the server is then stopped."""
    (home / "server.json").unlink(missing_ok=True)
    start = time.perf_counter()
    log = home.parent / f"{home.name}.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "kfbox", "up", "--port", "0", "--home", str(home)],
                                stdout=out, stderr=subprocess.STDOUT, env=_env(src), start_new_session=True)
    try:
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"kfbox up exited {proc.returncode} (home {home}):\n{log.read_text()[-2000:]}")
            try:
                url = json.loads((home / "server.json").read_text())["url"]
                with urllib.request.urlopen(f"{url}/healthz", timeout=2) as resp:
                    if resp.status == 200:
                        elapsed = time.perf_counter() - start
                        if case:
                            CPU.setdefault((src, case), []).append(_cpu_of(proc.pid))
                        if memory:
                            time.sleep(IDLE_SETTLE_SECONDS)
                            MEMORY.setdefault(src, []).append(_memory_mib(_tree(proc.pid)))
                        return elapsed
            except (OSError, ValueError, KeyError):
                pass
            time.sleep(0.005)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)


def time_up_fresh(src: str | None, scratch: Path) -> float:
    home = Path(tempfile.mkdtemp(dir=scratch))
    try:
        return _time_up(src, home, "up fresh", memory=True)
    finally:
        shutil.rmtree(home, ignore_errors=True)


def time_up_warm(src: str | None, scratch: Path) -> float:
    home = scratch / f"warm-{abs(hash(src))}"
    if not (home / "kfbox.db").exists():
        home.mkdir(exist_ok=True)
        _time_up(src, home)  # creates the schema; not counted
    return _time_up(src, home, "up warm")


CASES: dict[str, Callable[[str | None, Path], float]] = {
    "help": time_help, "up fresh": time_up_fresh, "up warm": time_up_warm,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--baseline", help="another kfbox src/ directory to compare with (PYTHONPATH)")
    args = parser.parse_args()
    sides: dict[str, str | None] = {"this tree": None}
    if args.baseline:
        sides["baseline"] = str(Path(args.baseline).resolve())
    samples: dict[tuple[str, str], list[float]] = {}
    bare: list[float] = []
    with tempfile.TemporaryDirectory(prefix="kfbox-startup-") as tmp:
        scratch = Path(tmp)
        for case in CASES.values():  # warm the page cache and .pyc files of both sides
            for src in sides.values():
                case(src, scratch)
        for round_no in range(args.rounds):
            order = list(sides.items()) if round_no % 2 == 0 else list(reversed(sides.items()))
            bare.append(time_bare(None, scratch))
            for name, case in CASES.items():
                for side, src in order:
                    samples.setdefault((side, name), []).append(case(src, scratch))
    floor = statistics.median(bare)
    print(f"python -c pass (floor): {floor * 1000:.0f} ms median of {args.rounds}")
    print(f"{'case':<10} {'side':<10} {'median ms':>10} {'min ms':>8} {'goal ms':>8} {'vs baseline':>12}")
    for name in CASES:
        for side in sides:
            values = samples[(side, name)]
            median = statistics.median(values)
            ratio = ""
            if side != "baseline" and "baseline" in sides:
                ratio = f"{median / statistics.median(samples[('baseline', name)]):.2f}x"
            print(f"{name:<10} {side:<10} {median * 1000:>10.0f} {min(values) * 1000:>8.0f} "
                  f"{GOALS[name] * 1000:>8.0f} {ratio:>12}")
    # CPU seconds to ready: far less sensitive than wall time to other load on a shared machine
    print(f"\n{'CPU':<10} {'side':<10} {'median ms':>10} {'vs baseline':>12}  (user+sys at exit/ready)")
    for kind in CASES:
        for side, src in sides.items():
            median = statistics.median(CPU[(src, kind)])
            ratio = ""
            if side != "baseline" and "baseline" in sides:
                ratio = f"{median / statistics.median(CPU[(sides['baseline'], kind)]):.2f}x"
            print(f"{kind:<10} {side:<10} {median * 1000:>10.0f} {ratio:>12}")
    print(f"\n{'idle tree':<10} {'side':<10} {'RSS MiB':>10} {'PSS MiB':>10}  (server + descendants, "
          f"{IDLE_SETTLE_SECONDS:.0f} s after ready, fresh home; goal RSS < 150)")
    for side, src in sides.items():
        rss = statistics.median(r for r, _ in MEMORY[src])
        pss = statistics.median(p for _, p in MEMORY[src])
        print(f"{'':<10} {side:<10} {rss:>10.1f} {pss:>10.1f}")


if __name__ == "__main__":
    main()
