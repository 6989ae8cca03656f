"""``kfbox loadtest --plot``: latency and replicas over time, as an SVG (or PNG) file.

matplotlib is imported here only, with the Agg backend, so the load generator itself
never pays for it.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from kfbox.errors import InvalidInput, Unsupported
from kfbox.loadtest.report import Report

FORMATS = (".svg", ".png", ".pdf")
MISSING = "--plot needs matplotlib; install it with: pip install matplotlib"


def check_plot_path(path: Path) -> None:
    """Fail before the run, not after it: a known format and matplotlib installed."""
    if path.suffix.lower() not in FORMATS:
        raise InvalidInput(f"Plot file {str(path)!r} must end with one of {', '.join(FORMATS)}, e.g. out.svg.")
    if importlib.util.find_spec("matplotlib") is None:
        raise Unsupported(MISSING)


def write_plot(report: Report, path: Path) -> Path:
    """Draw per-second p50/p99 latency and, when sampled, replicas; return the file written."""
    check_plot_path(path)
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise Unsupported(MISSING) from exc

    plt.rcParams["svg.fonttype"] = "none"  # real text in the SVG: smaller, selectable, searchable
    panels = 2 if report.replicas else 1
    fig, axes = plt.subplots(panels, 1, sharex=True, figsize=(8, 3 + 2 * panels), squeeze=False)
    latency = axes[0][0]
    seconds = [s.start + 0.5 for s in report.timeline]
    latency.plot(seconds, [s.p50 * 1000 for s in report.timeline], label="p50", marker=".")
    latency.plot(seconds, [s.p99 * 1000 for s in report.timeline], label="p99", marker=".")
    latency.set_ylabel("latency (ms)")
    latency.set_ylim(bottom=0)
    latency.grid(alpha=0.3)
    latency.legend(loc="upper left")
    latency.set_title(f"{report.method} {report.url}  (c={report.concurrency}, {report.rps:.0f} req/s)",
                      fontsize=9)
    if report.replicas:
        replicas = axes[1][0]
        times = [t for t, _ in report.replicas]
        values = [v for _, v in report.replicas]
        replicas.step(times, values, where="post", color="tab:green")
        replicas.set_ylabel("replicas")
        replicas.set_ylim(bottom=0, top=max(values) + 1)
        replicas.yaxis.get_major_locator().set_params(integer=True)
        replicas.grid(alpha=0.3)
    axes[-1][0].set_xlabel("seconds since start")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path
