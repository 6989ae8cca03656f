"""The ``kfbox`` entry point: mounts one module per noun and turns errors into messages."""

from __future__ import annotations

import sys
from typing import Annotated

import typer
from rich.markup import escape

from kfbox import __version__
from kfbox.cli import (
    cluster,
    context,
    example,
    kubeconfig,
    loadtest,
    models,
    monitoring,
    notebook,
    promote,
    runs,
    schedules,
    secrets,
    serve,
    server,
)
from kfbox.cli.output import err_console
from kfbox.errors import KfboxError

app = typer.Typer(
    name="kfbox",
    help="Kubeflow's own APIs, embedded: KFP pipelines, Model Registry and KServe serving on one machine.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)
_debug = False


def _print_version(value: bool) -> None:
    if value:
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


app.command()(server.up)
app.command()(server.down)
app.command()(server.status)


for noun in (models, runs, schedules, secrets, serve, loadtest, example, cluster, context, kubeconfig, promote,
             notebook, monitoring):
    noun.register(app)


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
        err_console.print(f"[red]Error:[/] {escape(exc.message)}", highlight=False)
        sys.exit(1)
    except KeyboardInterrupt:
        sys.exit(130)
