"""``kfbox monitoring up|down|status|dashboards``: the local Prometheus and the Grafana dashboards.

Prometheus runs as a child of the server (so it stops with it); these commands ask the
running server to start or stop it. ``dashboards`` needs no server.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from kfbox.cli.options import HomeOption, Output, OutputOption, TokenOption, UrlOption
from kfbox.cli.output import console, print_json
from kfbox.client import ApiClient

monitoring_app = typer.Typer(help="Local Prometheus (up, down, status) and Grafana dashboards for kfbox.",
                             no_args_is_help=True)


def register(app: typer.Typer) -> None:
    app.add_typer(monitoring_app, name="monitoring")


def _call(url: str | None, home: Path | None, token: str | None, action: str | None) -> dict[str, Any]:
    api = ApiClient.connect(url, home, token, 60.0)
    try:
        if action is None:
            return api.get("/monitoring/prometheus")
        return api.post("/monitoring/prometheus", json={"action": action})
    finally:
        api.close()


def _show(status: dict[str, Any], output: Output) -> None:
    if output == Output.json:
        print_json(status)
        return
    if status["running"]:
        console.print(f"Prometheus is running at [bold]{status['url']}[/] (pid {status['pid']}), scraping every "
                      f"{status['scrape_interval']}; data in {status['data']} kept {status['retention']}.")
    else:
        hint = "" if status["installed"] else " (not installed: sudo apt-get install prometheus)"
        console.print(f"Prometheus is not running{hint}. Start it with: kfbox monitoring up")


@monitoring_app.command()
def up(url: UrlOption = None, home: HomeOption = None, token: TokenOption = None,
       output: OutputOption = Output.table) -> None:
    """Start the local Prometheus as a child of the running server (stops with it)."""
    _show(_call(url, home, token, "start"), output)


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
