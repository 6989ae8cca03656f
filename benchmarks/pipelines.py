"""Pipelines benchmark: a 10-task pipeline (seed, a ParallelFor of 8, combine) from submit to
SUCCEEDED through kfbox, against plain ``kfp.local`` in-process with
``SubprocessRunner(use_venv=False)`` (the same components, whose compiled ``pip install kfp``
prelude kfp.local runs for every task; and once more compiled with
``install_kfp_package=False``, i.e. kfp.local's bare execution cost) and against kfp.local's
default runner (a fresh venv with pip installs per task, measured once).

    .venv/bin/python benchmarks/pipelines.py [--repeat 3] [--skip-default] [--json out.json]

Goals printed with the ratios: kfbox <= 1.2x plain kfp.local without venvs; kfbox >= 10x
faster than kfp.local's default runner. Caching is off for every task, so each repetition
executes all ten. Every figure depends on the machine and its load: compare ratios.
"""

# no `from __future__ import annotations`: kfp reads the components' annotations as types

import argparse
import contextlib
import io
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx

TASKS = 10
ITEMS = list(range(8))
FINAL = ("SUCCEEDED", "FAILED", "CANCELED")
PLAIN = "kfp.local use_venv=False"
BARE = "kfp.local no pip prelude"
DEFAULT = "kfp.local default (venv)"


def build_pipeline(prelude: bool = True):  # type: ignore[no-untyped-def]
    """``prelude=False`` compiles the components without the ``pip install kfp`` shell prelude."""
    from kfp import dsl

    component = dsl.component(base_image="python:3.11", install_kfp_package=prelude)

    @component
    def seed(n: int) -> list:
        return list(range(n))

    @component
    def work(x: int) -> int:
        return x * x

    @component
    def combine(values: list) -> int:
        return int(sum(values))

    @dsl.pipeline(name="bench-fanout")
    def fanout(n: int = len(ITEMS)) -> None:
        first = seed(n=n).set_caching_options(False)
        with dsl.ParallelFor(first.output) as item:
            squared = work(x=item).set_caching_options(False)
        combine(values=dsl.Collected(squared.output)).set_caching_options(False)

    return fanout


def build_wide(items: int, parallelism: int):  # type: ignore[no-untyped-def]
    """``items`` iterations of a trivial task, ``parallelism`` at a time: the engine's cost per task."""
    from kfp import dsl

    component = dsl.component(base_image="python:3.11")

    @component
    def seed(n: int) -> list:
        return list(range(n))

    @component
    def work(x: int) -> int:
        return x * x

    @component
    def combine(values: list) -> int:
        return int(sum(values))

    @dsl.pipeline(name="bench-wide")
    def wide(n: int = items) -> None:
        first = seed(n=n).set_caching_options(False)
        with dsl.ParallelFor(first.output, parallelism=parallelism) as item:
            squared = work(x=item).set_caching_options(False)
        combine(values=dsl.Collected(squared.output)).set_caching_options(False)

    return wide


def tree_rss(pid: int) -> int:
    """Resident memory (bytes) of ``pid`` and all its descendants."""
    parents: dict[int, int] = {}
    rss: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            parents[int(entry.name)] = int(fields[1])
            rss[int(entry.name)] = int(fields[21]) * os.sysconf("SC_PAGE_SIZE")
        except (OSError, IndexError, ValueError):
            continue
    total, todo = 0, [pid]
    while todo:
        current = todo.pop()
        total += rss.get(current, 0)
        todo += [child for child, parent in parents.items() if parent == current]
    return total


def _processes() -> dict[int, tuple[int, float, bool]]:
    """pid -> (parent pid, CPU seconds of it and its reaped descendants, whether it is a spare worker)."""
    tick = os.sysconf("SC_CLK_TCK")
    table: dict[int, tuple[int, float, bool]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            spare = b"--spare" in (entry / "cmdline").read_bytes()
        except (OSError, IndexError):
            continue
        table[int(entry.name)] = (int(fields[1]), sum(int(f) for f in fields[11:15]) / tick, spare)
    return table


def tree_cpu(pid: int) -> dict[int, tuple[float, bool]]:
    """CPU seconds (user + system, with reaped children's) of each live process under ``pid``: pid -> (cpu,
    in a spare worker's tree). Processes that ended count in their parent's figure once it reaped them."""
    table = _processes()
    found: dict[int, tuple[float, bool]] = {}
    todo = [(pid, False)]
    while todo:
        current, spare = todo.pop()
        if current not in table:
            continue
        spare = spare or table[current][2]
        found[current] = (table[current][1], spare)
        todo += [(child, spare) for child, row in table.items() if row[0] == current]
    return found


@contextlib.contextmanager
def kfbox_server() -> Iterator[Callable[[], float]]:
    """A fresh ``kfbox up``; yields a function that submits one run and returns its submit-to-SUCCEEDED time."""
    from kfp import Client, compiler

    home = Path(tempfile.mkdtemp(prefix="kfbox-bench-pipelines-"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("KFBOX_")}
    server = subprocess.Popen([sys.executable, "-m", "kfbox", "up", "--port", "0", "--home", str(home)], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        url = _wait_ready(home, server)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            client = Client(host=f"{url}/pipeline")
        package = home / "pipeline.yaml"  # compiled once, as `kfbox run pipeline.yaml` submits it
        compiler.Compiler().compile(build_pipeline(), str(package))

        def once() -> float:
            started = time.perf_counter()
            with contextlib.redirect_stdout(io.StringIO()):  # kfp.Client prints UI links
                run_id = client.create_run_from_pipeline_package(str(package)).run_id
            state = ""
            while state not in FINAL:
                time.sleep(0.2)  # gently: each poll costs the server CPU the tasks also want
                state = httpx.get(f"{url}/apis/v2beta1/runs/{run_id}").json()["state"]
            if state != "SUCCEEDED":
                raise SystemExit(f"kfbox run {run_id} ended {state}")
            return time.perf_counter() - started

        def wide(items: int, parallelism: int) -> tuple[float, int, float, float]:
            """(submit-to-SUCCEEDED seconds, peak RSS of the server and its processes, CPU seconds of the server
            and its processes, CPU seconds of the spare worker started for the next run) of the wide run."""
            wide_package = home / "wide.yaml"
            compiler.Compiler().compile(build_wide(items, parallelism), str(wide_package))
            before = tree_cpu(server.pid)
            started = time.perf_counter()
            with contextlib.redirect_stdout(io.StringIO()):
                run_id = client.create_run_from_pipeline_package(str(wide_package)).run_id
            state, peak = "", 0
            # the run's state from the runs list (filtered to it): GET runs/{id} returns every task's details,
            # whose cost on the server grows with the run and would be counted in the per-task figure
            only = json.dumps({"predicates": [{"key": "run_id", "operation": "EQUALS", "string_value": run_id}]})
            while state not in FINAL:
                time.sleep(0.2)
                peak = max(peak, tree_rss(server.pid))
                state = httpx.get(f"{url}/apis/v2beta1/runs", params={"filter": only}).json()["runs"][0]["state"]
            if state != "SUCCEEDED":
                raise SystemExit(f"kfbox run {run_id} ended {state}")
            seconds = time.perf_counter() - started
            time.sleep(1.5)  # the server reaps the finished worker (its CPU then counts in the server's)
            after = tree_cpu(server.pid)
            spare = sum(cpu for pid, (cpu, is_spare) in after.items() if is_spare and pid not in before)
            total = sum(cpu for cpu, _ in after.values()) - sum(cpu for cpu, _ in before.values())
            return seconds, peak, total - spare, spare

        once.wide = wide  # type: ignore[attr-defined]
        yield once
    finally:
        server.terminate()
        server.wait(30)


def _wait_ready(home: Path, server: "subprocess.Popen[bytes]") -> str:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit("kfbox up exited early")
        try:
            url = json.loads((home / "server.json").read_text())["url"]
            if httpx.get(f"{url}/healthz").status_code == 200:
                return str(url)
        except (OSError, ValueError, KeyError, httpx.HTTPError):
            pass
        time.sleep(0.05)
    raise SystemExit("kfbox up not ready in 60s")


def time_local(mode: str, timeout: float) -> float:
    """One run in a fresh interpreter (kfp.local keeps global state); times only the pipeline call."""
    done = subprocess.run([sys.executable, __file__, "--child", mode],
                          capture_output=True, text=True, timeout=timeout, check=False)
    if done.returncode != 0:
        raise SystemExit(f"kfp.local ({mode}) failed:\n{done.stderr[-3000:]}")
    return float(done.stdout.strip().splitlines()[-1])


def child(mode: str) -> None:
    from kfp import local

    pipeline = build_pipeline(prelude=mode != "bare")
    with tempfile.TemporaryDirectory() as root:
        local.init(runner=local.SubprocessRunner(use_venv=mode == "venv"), pipeline_root=root)
        started = time.perf_counter()
        result = pipeline()
        elapsed = time.perf_counter() - started
    assert result is not None
    print(f"{elapsed:.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=3, help="rounds of the 10-task run (0: the wide run only)")
    parser.add_argument("--skip-default", action="store_true", help="Skip kfp.local's default (venv) runner.")
    parser.add_argument("--default-timeout", type=float, default=900)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--wide", type=int, default=200, help="iterations of the wide ParallelFor (0: skip)")
    parser.add_argument("--parallelism", type=int, default=8)
    parser.add_argument("--child", choices=["plain", "bare", "venv"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child)
        return
    results: dict[str, list[float]] = {"kfbox": [], PLAIN: [], BARE: []}
    print(f"{TASKS}-task pipeline (ParallelFor of {len(ITEMS)}), submit to SUCCEEDED, {args.repeat} rounds "
          "(each round runs every contender once, so load drift hits all alike)")
    with kfbox_server() as kfbox_once:
        time.sleep(5)  # let the server's spare worker finish importing kfp, as it has in steady use
        for _ in range(args.repeat):
            results["kfbox"].append(kfbox_once())
            results[PLAIN].append(time_local("plain", 600))
            results[BARE].append(time_local("bare", 600))
        if args.wide:
            seconds, peak, cpu, spare = kfbox_once.wide(args.wide, args.parallelism)  # type: ignore[attr-defined]
            tasks = args.wide + 2
            slots = min(args.parallelism, os.cpu_count() or 1)
            print(f"{args.wide}-iteration ParallelFor, parallelism={args.parallelism}: {seconds:.1f} s for {tasks} "
                  f"tasks = {seconds / tasks * 1000:.0f} ms/task wall; per-task cost on {slots} busy slots "
                  f"{seconds * slots / tasks * 1000:.0f} ms (goal <= 25 ms); CPU of the server and all its "
                  f"processes {cpu / tasks * 1000:.1f} ms/task (steadier than wall time, yet it too grows with "
                  f"the machine's load; plus {spare:.1f} s "
                  f"for the next run's spare worker); peak RSS of the server and its processes "
                  f"{peak / 2**20:.0f} MiB")
            results["wide"] = [seconds, peak, cpu, spare]
    if not results["kfbox"]:  # --repeat 0: the wide run only
        return
    for name in ("kfbox", PLAIN, BARE):
        _line(name, results[name])
    if not args.skip_default:
        results[DEFAULT] = [time_local("venv", args.default_timeout)]
        _line(DEFAULT, results[DEFAULT])
    kfbox = statistics.median(results["kfbox"])
    for name in (PLAIN, BARE):
        plain = statistics.median(results[name])
        print(f"kfbox / {name}: {kfbox / plain:.2f}x (goal <= 1.2x); "
              f"kfbox overhead per task: {(kfbox - plain) / TASKS * 1000:+.0f} ms")
    if DEFAULT in results:
        default = statistics.median(results[DEFAULT])
        print(f"kfp.local default / kfbox: {default / kfbox:.1f}x faster (goal >= 10x)")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


def _line(name: str, times: list[float]) -> None:
    median = statistics.median(times)
    print(f"  {name:<26} median {median:6.2f} s  ({median / TASKS * 1000:5.0f} ms/task)  runs: "
          + ", ".join(f"{t:.2f}" for t in times))


if __name__ == "__main__":
    main()
