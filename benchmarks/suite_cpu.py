"""Where the test suite's CPU goes, per test module: a pytest plugin, not a test.

    KFBOX_SUITE_CPU=/tmp/cpu.jsonl .venv/bin/python -m pytest tests -p benchmarks.suite_cpu -n 2 --dist loadfile
    .venv/bin/python benchmarks/suite_cpu.py /tmp/cpu.jsonl        # the table, costliest module first

Each worker appends one line per module it ran: the wall time from its first test's setup to its last
test's teardown, the worker's own CPU (user + system) in that span, and its children's: every process
the module started and waited for (servers, CLI calls, browsers), with what those waited for in turn
(replicas, task processes). A process nobody waits for is missed. And one ``(collection)`` line: the
worker's CPU from its start to the end of collection (every worker imports every test module before its
first test), with the wall time from pytest's configure step. The goal of issue 15 ("make test
under 5 minutes on 2 cores") is a CPU budget: two workers cannot finish before half the suite's CPU.
"""

from __future__ import annotations

import json
import os
import resource
import sys
import time
from pathlib import Path

import pytest


def _cpu(who: int) -> float:
    usage = resource.getrusage(who)
    return usage.ru_utime + usage.ru_stime


def _forked() -> float:
    """The CPU of the servers the tests forked from their warm interpreter (tests/zygote.py): that interpreter's
    children, not this process's, reported to it as each one is reaped."""
    zygote = sys.modules.get("tests.zygote")
    return float(getattr(zygote, "forked_cpu", 0.0))


class ModuleClock:
    def __init__(self, out: Path) -> None:
        self.out = out
        self.module: str | None = None
        self.start: tuple[float, float, float] = (0.0, 0.0, 0.0)
        self.configured = time.monotonic()

    def _now(self) -> tuple[float, float, float]:
        return time.monotonic(), _cpu(resource.RUSAGE_SELF), _cpu(resource.RUSAGE_CHILDREN) + _forked()

    def _flush(self) -> None:
        if self.module is None:
            return
        wall, own, children = (b - a for a, b in zip(self.start, self._now(), strict=True))
        with self.out.open("a") as f:
            f.write(json.dumps({"module": self.module, "wall": round(wall, 2), "self": round(own, 2),
                                "children": round(children, 2), "pid": os.getpid()}) + "\n")

    def pytest_collection_finish(self) -> None:
        with self.out.open("a") as f:
            f.write(json.dumps({"module": "(collection)", "wall": round(time.monotonic() - self.configured, 2),
                                "self": round(_cpu(resource.RUSAGE_SELF), 2), "children": 0.0,
                                "pid": os.getpid()}) + "\n")

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_setup(self, item: pytest.Item) -> None:
        module = item.nodeid.split("::")[0]
        if module != self.module:
            self._flush()
            self.module, self.start = module, self._now()

    def pytest_sessionfinish(self) -> None:
        self._flush()  # after the last module's teardown (its module-scoped servers have stopped)
        self.module = None


def pytest_configure(config: pytest.Config) -> None:
    """In each xdist worker, or in a run without workers; never in xdist's controller, which runs no test."""
    out = os.environ.get("KFBOX_SUITE_CPU")
    if out and (hasattr(config, "workerinput") or not config.getoption("numprocesses", None)):
        config.pluginmanager.register(ModuleClock(Path(out)), "kfbox-suite-cpu")


def report(path: Path) -> None:
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    rows.sort(key=lambda r: r["self"] + r["children"], reverse=True)
    total = sum(r["self"] + r["children"] for r in rows)
    print(f"{'module':70} {'wall s':>7} {'self':>7} {'child':>7} {'cpu':>7}")
    for r in rows:
        cpu = r["self"] + r["children"]
        print(f"{r['module']:70} {r['wall']:7.1f} {r['self']:7.1f} {r['children']:7.1f} {cpu:7.1f}")
    modules = sum(r["module"] != "(collection)" for r in rows)
    print(f"{modules} modules, {total:.0f} s of CPU (a floor of {total / 2:.0f} s of wall on 2 cores)")


if __name__ == "__main__":
    report(Path(sys.argv[1]))
