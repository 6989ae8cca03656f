"""The ``kfbox`` entry point: mounts one module per noun and turns errors into messages."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from kfbox.cli.lazy import LazyGroup
from kfbox.errors import KfboxError


class Nouns(LazyGroup):
    """Every command of ``kfbox``, in help order; each module is imported only when its command runs."""

    nouns = {
        "up": ("kfbox.cli.server:up", "Start the platform: KFP API, Model Registry, serving gateway, dashboard and /metrics on one port."),
        "down": ("kfbox.cli.server:down", "Stop the background server of this home (graceful: in-flight requests finish)."),
        "status": ("kfbox.cli.server:status", "Show whether the server of this home runs, where, and whether it is healthy."),
        "run": ("kfbox.cli.runs", "Compile and submit a pipeline run; with --watch, follow it to the end (exit 1 unless it succeeds)."),
        "compile": ("kfbox.cli.runs", "Compile a pipeline with the KFP compiler; --for cluster emits the form a Kubeflow 26.03 cluster runs."),
        "deploy": ("kfbox.cli.serve", "Serve a Model Registry version: builds the InferenceService and records it in the registry."),
        "predict": ("kfbox.cli.serve", "Send a prediction through the gateway; a bare list of rows is wrapped for V1 or V2."),
        "loadtest": ("kfbox.cli.loadtest", "Load-test an InferenceService or a URL, like `hey`."),
        "kubeconfig": ("kfbox.cli.kubeconfig", "Print (or write) a kubeconfig for kubectl and the kserve SDK, pointing at the running kfbox."),
        "promote": ("kfbox.cli.promote", "Copy a model version (metadata, metrics, custom properties, files) to a cluster's registry and S3."),
        "models": ("kfbox.cli.models", "Browse the Model Registry: models, versions, properties, artifact URIs."),
        "runs": ("kfbox.cli.runs", "Inspect and control pipeline runs."),
        "schedules": ("kfbox.cli.schedules", "Recurring runs: start a pipeline on a cron or interval schedule."),
        "secrets": ("kfbox.cli.secrets", "Secrets for use_secret_as_env/as_volume (values encrypted at rest, never shown)."),
        "configmaps": ("kfbox.cli.secrets", "Config maps for use_config_map_as_env/as_volume."),
        "serve": ("kfbox.cli.serve", "Serve KServe InferenceServices: apply, list, get, delete, logs, promote, rollback."),
        "example": ("kfbox.cli.example", "Runnable end-to-end workflows."),
        "cluster": ("kfbox.cli.cluster", "Install Kubeflow on Kind (doctor, up, status, expose, creds, down)."),
        "context": ("kfbox.cli.context", "Saved remote targets: Kubeflow clusters reached through their gateway."),
        "notebook": ("kfbox.cli.notebook", "JupyterLab notebooks whose kernels reach this platform."),
        "monitoring": ("kfbox.cli.monitoring", "Local Prometheus (up, down, status) and Grafana dashboards for kfbox."),
    }


app = typer.Typer(
    name="kfbox",
    cls=Nouns,
    help="Kubeflow's own APIs, embedded: KFP pipelines, Model Registry and KServe serving on one machine.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)
_debug = False


def _print_version(value: bool) -> None:
    if value:
        from kfbox import __version__  # looked up only here: a scan of the installed distributions

        typer.echo(__version__)
        raise typer.Exit()


@app.callback()
def _root(
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks for errors.")] = False,
    # eager: handled while parsing, so `kfbox --version` needs no command after it
    version: Annotated[bool, typer.Option("--version", help="Print the version and exit.", callback=_print_version, is_eager=True)] = False,
) -> None:
    global _debug
    _debug = debug


def main() -> None:
    try:
        # standalone: typer reports usage errors itself (usage text, "did you mean", exit 2) and
        # turns typer.Exit and Ctrl-C into exit codes. Matching click's exception class here broke
        # when typer began vendoring click (typer._click): every usage error became a traceback.
        app()
    except KfboxError as exc:
        if _debug:
            raise
        # escaped: messages quote values such as regexes ('[a-z0-9]') that rich would read as markup
        from rich.markup import escape

        from kfbox.cli.output import err_console

        err_console.print(f"[red]Error:[/] {escape(exc.message)}", highlight=False)
        sys.exit(1)
    except KeyboardInterrupt:
        sys.exit(130)
