"""``kfbox monitoring up|down|status|dashboards``: the local Prometheus and the Grafana dashboards.

Prometheus runs as a child of the server (so it stops with it); these commands ask the
running server to start or stop it. ``dashboards`` needs no server.
"""

from __future__ import annotations

import time
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer

from kfbox.cli.options import HomeOption, OutputOption, TokenOption, UrlOption
from kfbox.cli.output import Output, console, err_console, print_json
from kfbox.client import ApiClient
from kfbox.errors import InvalidInput, Unavailable

monitoring_app = typer.Typer(help="Local Prometheus (up, down, status) and Grafana dashboards for kfbox.",
                             no_args_is_help=True)


def register(app: typer.Typer) -> None:
    app.add_typer(monitoring_app, name="monitoring")


PROMETHEUS = "/monitoring/prometheus"


def _call(url: str | None, home: Path | None, token: str | None, action: str | None) -> dict[str, Any]:
    api = ApiClient.connect(url, home, token, 60.0)
    try:
        reply: dict[str, Any] = (api.get(PROMETHEUS) if action is None
                                 else api.post(PROMETHEUS, json={"action": action}))
        return reply
    finally:
        api.close()


def _start_and_wait(url: str | None, home: Path | None, token: str | None, timeout: float) -> dict[str, Any]:
    """Start Prometheus and return once it answers queries (:func:`wait_ready`)."""
    api = ApiClient.connect(url, home, token, 60.0)
    try:
        status: dict[str, Any] = api.post(PROMETHEUS, json={"action": "start"})
        with err_console.status("Waiting for Prometheus to be ready (it replays its data first)..."):
            return wait_ready(api, status, timeout)
    finally:
        api.close()


def wait_ready(api: ApiClient, status: dict[str, Any], timeout: float) -> dict[str, Any]:
    """Poll the server's Prometheus from ``status`` on until it answers queries: a restarted one answers 503 on
    its API while it replays its data (seconds, longer with days of it), so a user's first query right after
    ``kfbox monitoring up`` or ``kfbox up --prometheus`` failed. Raises :class:`Unavailable` if it exits or is
    still not ready after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        if not status["running"]:
            why = f": {status['error']}" if status.get("error") else ""  # an older server sends no "error"
            raise Unavailable(f"Prometheus exited while starting (exit code {status.get('exit_code')}){why}. "
                              f"Its log: {status['log']}")
        if status["ready"]:
            return status
        if time.monotonic() > deadline:
            raise Unavailable(f"Prometheus (pid {status['pid']}) is running but not ready after "
                              f"{timeout:.0f}s; it may still be replaying its data. Check again with: "
                              f"kfbox monitoring status; its log: {status['log']}")
        time.sleep(0.2)
        status = api.get(PROMETHEUS)


def ready_line(api: ApiClient, timeout: float) -> str:
    """Wait for the Prometheus that ``kfbox up --prometheus`` started; its status line once it is ready."""
    return _line(wait_ready(api, api.get(PROMETHEUS), timeout))


def _show(status: dict[str, Any], output: Output) -> None:
    if output == Output.json:
        print_json(status)
    else:
        console.print(_line(status), markup=False, highlight=False)


def _line(status: dict[str, Any]) -> str:
    if status["running"]:
        state = "running" if status["ready"] else "running, not ready yet (replaying its data),"
        return (f"Prometheus is {state} at {status['url']} (pid {status['pid']}), scraping every "
                f"{status['scrape_interval']}; data in {status['data']} kept {status['retention']}.")
    hint = "" if status["installed"] else " (not installed: sudo apt-get install prometheus)"
    return f"Prometheus is not running{hint}. Start it with: kfbox monitoring up"


@monitoring_app.command()
def up(url: UrlOption = None, home: HomeOption = None, token: TokenOption = None,
       output: OutputOption = Output.table,
       timeout: Annotated[float, typer.Option(help="Seconds to wait for Prometheus to be ready.")] = 120.0) -> None:
    """Start the local Prometheus as a child of the running server (stops with it); returns once it answers queries."""
    _show(_start_and_wait(url, home, token, timeout), output)


@monitoring_app.command()
def down(url: UrlOption = None, home: HomeOption = None, token: TokenOption = None,
         output: OutputOption = Output.table) -> None:
    """Stop the local Prometheus (its data stays in the home)."""
    _show(_call(url, home, token, "stop"), output)


@monitoring_app.command()
def status(url: UrlOption = None, home: HomeOption = None, token: TokenOption = None,
           output: OutputOption = Output.table) -> None:
    """Whether the local Prometheus runs, where, and where its data is."""
    _show(_call(url, home, token, None), output)


@monitoring_app.command()
def dashboards(
    out: Annotated[Path, typer.Option("--output-dir", "-o", help="Folder to write the Grafana dashboard JSON files and the alert rules into.")],
) -> None:
    """Write kfbox's Grafana dashboards (and the alerting rules) for import into Grafana."""
    from kfbox.monitoring.grafana import write_all

    for path in write_all(out):
        console.print(f"wrote {path}")


class RulesFor(StrEnum):
    local = "local"
    cluster = "cluster"


@monitoring_app.command()
def rules(
    target: Annotated[RulesFor, typer.Option("--for", help="local: the Prometheus rule file; cluster: a monitoring.coreos.com/v1 PrometheusRule for kube-prometheus-stack.")] = RulesFor.local,
    out: Annotated[Path | None, typer.Option("--output", "-o", help="File to write; default: standard output.", show_default=False)] = None,
    namespace: Annotated[str, typer.Option("--namespace", "-n", help="--for cluster: the PrometheusRule's namespace.")] = "monitoring",
    label: Annotated[list[str] | None, typer.Option("--label", "-l", help="--for cluster: a label KEY=VALUE for Prometheus's ruleSelector; repeatable. Default: release=kube-prometheus-stack.", show_default=False)] = None,
) -> None:
    """Write kfbox's alerting rules, as a rule file or as a PrometheusRule for a cluster.

    Example: kfbox monitoring rules --for cluster -l release=prom -o kfbox-alerts.yaml && kubectl apply -f kfbox-alerts.yaml
    """
    import yaml

    from kfbox.monitoring.prometheus import rules_text
    from kfbox.monitoring.prometheus_rule import DEFAULT_LABELS, prometheus_rule

    if target is RulesFor.local:
        text = rules_text()
    else:
        labels = dict(DEFAULT_LABELS)
        if label:
            labels = {"app.kubernetes.io/part-of": "kfbox"}
            for item in label:
                key, sep, value = item.partition("=")
                if not sep or not key:
                    raise InvalidInput(f"Label {item!r} is not KEY=VALUE, e.g. -l release=kube-prometheus-stack.")
                labels[key] = value
        text = yaml.safe_dump(prometheus_rule(namespace=namespace, labels=labels), sort_keys=False,
                              allow_unicode=True)
    if out is None:
        typer.echo(text, nl=False)
        return
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    console.print(f"wrote {out}")
