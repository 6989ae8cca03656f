"""Options shared by the client commands, so each reads the same flags and env vars."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from kfbox.cli.output import Output

UrlOption = Annotated[str | None, typer.Option("--url", help="Server URL. Default: KFBOX_URL, else the server `kfbox up` recorded in the home.", show_default=False)]
HomeOption = Annotated[Path | None, typer.Option("--home", help="kfbox home folder. Default: KFBOX_HOME, else ~/.kfbox.", show_default=False)]
TokenOption = Annotated[str | None, typer.Option("--token", envvar="KFBOX_TOKEN", help="Bearer token of a server bound beyond loopback.", show_default=False)]
OutputOption = Annotated[Output, typer.Option("--output", "-o", help="table for people, json for scripts.")]
