"""Options shared by the client commands, so each reads the same flags and env vars."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from kfbox.cli.output import Output

UrlOption = Annotated[str | None, typer.Option("--url", help="Server URL. Default: KFBOX_URL, else the server `kfbox up` recorded in the home.", show_default=False)]
HostOption = Annotated[str | None, typer.Option("--host", help="A Kubeflow gateway URL instead of the local server (with --token for a service-account token; Dex logins: save a context).", show_default=False)]
ContextOption = Annotated[str | None, typer.Option("--context", help="A saved target (kfbox context list; 'local': the local server). Default: KFBOX_CONTEXT, else the current context.", show_default=False)]
HomeOption = Annotated[Path | None, typer.Option("--home", help="kfbox home folder. Default: KFBOX_HOME, else ~/.kfbox.", show_default=False)]
TokenOption = Annotated[str | None, typer.Option("--token", envvar="KFBOX_TOKEN", help="Bearer token of a server bound beyond loopback.", show_default=False)]
OutputOption = Annotated[Output, typer.Option("--output", "-o", help="table for people, json for scripts.")]
