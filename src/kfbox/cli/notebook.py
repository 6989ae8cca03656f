"""``kfbox notebook start|list|stop``: JupyterLab next to the platform (the extra ``kfbox[notebooks]``).

The server starts it, bound to loopback with a token, and its kernels have the platform's
addresses, so ``kfp.Client()`` there needs no arguments::

    kfbox notebook start            # prints the URL (with its token) once JupyterLab answers
    kfbox notebook list
    kfbox notebook stop lab
"""

from __future__ import annotations

import time
from typing import Annotated, Any

import typer

from kfbox.cli.options import HomeOption, OutputOption, TokenOption, UrlOption
from kfbox.cli.output import Output, console, print_json, print_table
from kfbox.client import ApiClient
from kfbox.errors import Unavailable

API = "/kfbox/v1/notebooks"
notebook_app = typer.Typer(help="JupyterLab notebooks whose kernels reach this platform.", no_args_is_help=True)
Name = Annotated[str, typer.Argument(help="Notebook name (lowercase letters, digits, '-').")]


def register(app: typer.Typer) -> None:
    app.add_typer(notebook_app, name="notebook")


@notebook_app.command("start")
def start(name: Name = "lab", wait: Annotated[float, typer.Option(help="Seconds to wait for JupyterLab.")] = 60.0,
          url: UrlOption = None, home: HomeOption = None, token: TokenOption = None,
          output: OutputOption = Output.table) -> None:
    """Start JupyterLab on loopback; print its URL when it answers."""
    api = ApiClient.connect(url, home, token)
    body: dict[str, Any] = api.post(API, json={"name": name})
    deadline = time.monotonic() + wait
    while body["status"] != "RUNNING" and time.monotonic() < deadline:
        time.sleep(0.5)
        body = next((n for n in api.get(API)["notebooks"] if n["name"] == name), body)
        if body["status"] == "STOPPED":
            raise Unavailable(f"JupyterLab {name!r} exited while starting; its log: {body['log']}")
    if output == Output.json:
        print_json(body)
    elif body["status"] == "RUNNING":
        console.print(f"JupyterLab {name!r} is running: {body['url']}", highlight=False, soft_wrap=True)
    else:
        console.print(f"JupyterLab {name!r} is still starting; see: kfbox notebook list (log: {body['log']})")


@notebook_app.command("list")
def list_notebooks(url: UrlOption = None, home: HomeOption = None, token: TokenOption = None,
                   output: OutputOption = Output.table) -> None:
    """List notebooks and their URLs."""
    rows = ApiClient.connect(url, home, token).get(API)["notebooks"]
    if output == Output.json:
        print_json(rows)
        return
    print_table(None, ["NAME", "STATUS", "URL"], [[r["name"], r["status"], r["url"]] for r in rows])


@notebook_app.command("stop")
def stop(name: Name, url: UrlOption = None, home: HomeOption = None, token: TokenOption = None) -> None:
    """Stop a notebook (its files stay in <home>/notebooks/NAME)."""
    ApiClient.connect(url, home, token).delete(f"{API}/{name}")
    console.print(f"Stopped {name}.")
