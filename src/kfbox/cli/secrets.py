"""``kfbox secrets set|list|delete`` and ``kfbox configmaps set|list|get|delete``: thin over /kfbox/v1.

Pipelines read them with kfp-kubernetes, unchanged from a cluster::

    kfbox secrets set db password=s3cret user=app
    kfbox secrets set tls --from-file ca.crt=./ca.pem      # values from files stay out of `ps` and history
    kubernetes.use_secret_as_env(task, secret_name="db", secret_key_to_env={"password": "DB_PASSWORD"})
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from kfbox.cli.options import HomeOption, OutputOption, TokenOption, UrlOption
from kfbox.cli.output import Output, console, print_json, print_pairs, print_table
from kfbox.client import ApiClient
from kfbox.errors import InvalidInput

API = "/kfbox/v1"

secrets_app = typer.Typer(help="Secrets for use_secret_as_env/as_volume (values encrypted at rest, never shown).",
                          no_args_is_help=True)
configmaps_app = typer.Typer(help="Config maps for use_config_map_as_env/as_volume.", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    app.add_typer(secrets_app, name="secrets")
    app.add_typer(configmaps_app, name="configmaps")


def parse_pairs(pairs: list[str], files: list[str]) -> dict[str, str]:
    data: dict[str, str] = {}
    for number, pair in enumerate(pairs, 1):
        key, sep, value = pair.partition("=")
        if not sep or not key:  # never echo it: it may be a value typed without its key
            raise InvalidInput(f"Argument {number} after the name is not KEY=VALUE.")
        data[key] = value
    for pair in files:
        key, sep, path = pair.partition("=")
        if not sep or not key or not path:
            raise InvalidInput(f"--from-file {pair!r} is not KEY=PATH.")
        try:
            data[key] = Path(path).expanduser().read_text()
        except OSError as exc:
            raise InvalidInput(f"--from-file {key}: cannot read {path}: {exc.strerror}.") from exc
        except UnicodeDecodeError as exc:
            raise InvalidInput(f"--from-file {key}: {path} is not UTF-8 text; values are text, so store binary "
                               "data base64-encoded (base64 -w0 FILE) and decode it in the task.") from exc
    if not data:
        raise InvalidInput("Give at least one KEY=VALUE (or --from-file KEY=PATH).")
    return data


def _set(path: str, name: str, pairs: list[str], files: list[str], merge: bool, url: str | None,
         home: Path | None, token: str | None, output: Output) -> None:
    data = parse_pairs(pairs, files)
    api = ApiClient.connect(url, home, token)
    body = api.request("PUT", f"{API}/{path}/{name}", json={"data": data, "merge": merge})
    if output == Output.json:
        print_json(body)
    else:
        console.print(f"{name}: keys {', '.join(body['keys'])}", highlight=False)


def _list(path: str, url: str | None, home: Path | None, token: str | None, output: Output) -> None:
    rows: list[dict[str, Any]] = ApiClient.connect(url, home, token).get(f"{API}/{path}")[path]
    if output == Output.json:
        print_json(rows)
        return
    print_table(None, ["NAME", "KEYS", "UPDATED"], [[r["name"], ", ".join(r["keys"]), r["updated_at"]] for r in rows])


def _delete(path: str, name: str, url: str | None, home: Path | None, token: str | None) -> None:
    ApiClient.connect(url, home, token).delete(f"{API}/{path}/{name}")
    console.print(f"Deleted {name}.")


Name = Annotated[str, typer.Argument(help="Kubernetes-style name: lowercase letters, digits, '-', '.'.", show_default=False)]
Pairs = Annotated[list[str] | None, typer.Argument(help="KEY=VALUE pairs.", show_default=False)]
Files = Annotated[list[str] | None, typer.Option("--from-file", help="KEY=PATH: the value is the file's content (repeatable).")]
Merge = Annotated[bool, typer.Option("--merge", help="Add these keys to the stored ones instead of replacing them all.")]


@secrets_app.command("set")
def set_secret(name: Name, pairs: Pairs = None, from_file: Files = None, merge: Merge = False,
               url: UrlOption = None, home: HomeOption = None, token: TokenOption = None,
               output: OutputOption = Output.table) -> None:
    """Create or replace a secret. Values given here show in shell history; --from-file avoids that."""
    _set("secrets", name, pairs or [], from_file or [], merge, url, home, token, output)


@secrets_app.command("list")
def list_secrets(url: UrlOption = None, home: HomeOption = None, token: TokenOption = None,
                 output: OutputOption = Output.table) -> None:
    """List secrets: names and key names (values are never shown)."""
    _list("secrets", url, home, token, output)


@secrets_app.command("delete")
def delete_secret(name: Name, url: UrlOption = None, home: HomeOption = None, token: TokenOption = None) -> None:
    """Delete a secret."""
    _delete("secrets", name, url, home, token)


@configmaps_app.command("set")
def set_configmap(name: Name, pairs: Pairs = None, from_file: Files = None, merge: Merge = False,
                  url: UrlOption = None, home: HomeOption = None, token: TokenOption = None,
                  output: OutputOption = Output.table) -> None:
    """Create or replace a config map."""
    _set("configmaps", name, pairs or [], from_file or [], merge, url, home, token, output)


@configmaps_app.command("list")
def list_configmaps(url: UrlOption = None, home: HomeOption = None, token: TokenOption = None,
                    output: OutputOption = Output.table) -> None:
    """List config maps: names and key names."""
    _list("configmaps", url, home, token, output)


@configmaps_app.command("get")
def get_configmap(name: Name, url: UrlOption = None, home: HomeOption = None, token: TokenOption = None,
                  output: OutputOption = Output.table) -> None:
    """Show a config map with its values."""
    body = ApiClient.connect(url, home, token).get(f"{API}/configmaps/{name}")
    if output == Output.json:
        print_json(body)
        return
    print_pairs(name, sorted(body["data"].items()))


@configmaps_app.command("delete")
def delete_configmap(name: Name, url: UrlOption = None, home: HomeOption = None, token: TokenOption = None) -> None:
    """Delete a config map."""
    _delete("configmaps", name, url, home, token)
