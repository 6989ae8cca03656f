"""The ``kfbox`` entry point: mounts one module per noun and turns errors into messages."""

from __future__ import annotations

import sys
from typing import Annotated

import typer
from rich.markup import escape

from kfbox import __version__
from kfbox.cli import cluster, example, loadtest, models, runs, schedules, secrets, serve, server
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


@app.callback()
def _root(
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks for errors.")] = False,
    version: Annotated[bool, typer.Option("--version", help="Print the version and exit.")] = False,
) -> None:
    global _debug
    _debug = debug
    if version:
        typer.echo(__version__)
        raise typer.Exit()


app.command()(server.up)
app.command()(server.down)
app.command()(server.status)


for noun in (models, runs, schedules, secrets, serve, loadtest, example, cluster):
    noun.register(app)


def main() -> None:
    try:
        # without standalone mode click returns (not raises) the code of typer.Exit
        code = app(standalone_mode=False)
    except KfboxError as exc:
        if _debug:
            raise
        # escaped: messages quote values such as regexes ('[a-z0-9]') that rich would read as markup
        err_console.print(f"[red]Error:[/] {escape(exc.message)}", highlight=False)
        sys.exit(1)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except typer.Abort:
        err_console.print("Aborted.")
        sys.exit(130)
    except KeyboardInterrupt:
        sys.exit(130)
    except Exception as exc:
        import click

        if isinstance(exc, click.ClickException):
            exc.show()
            sys.exit(exc.exit_code)
        raise
    if isinstance(code, int) and code:
        sys.exit(code)
