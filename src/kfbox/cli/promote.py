"""``kfbox promote MODEL --version V --to CONTEXT [--deploy]``: a local model version onto a cluster.

Example::

    kfbox promote iris --version v3 --to kind            # registry entry + files to the cluster's S3
    kfbox promote iris --version v3 --to kind --deploy   # ... and its InferenceService
"""

from __future__ import annotations

from typing import Annotated

import typer

from kfbox.cli.options import HomeOption, OutputOption, TokenOption, UrlOption
from kfbox.cli.output import Output, console, print_json, print_pairs
from kfbox.client import ApiClient
from kfbox.cluster.contexts import ContextStore
from kfbox.cluster.promote import promote as promote_version
from kfbox.cluster.remote import Remote
from kfbox.cluster.runner import SubprocessRunner
from kfbox.config import Settings, default_home
from kfbox.storage.uris import UriResolver


def register(app: typer.Typer) -> None:
    app.command()(promote)


def promote(
    model: Annotated[str, typer.Argument(help="Registered model name (local registry).", show_default=False)],
    version: Annotated[str, typer.Option("--version", "-v", help="Version name to promote.", show_default=False)],
    to: Annotated[str | None, typer.Option("--to", help="Target context (default: the current one; see kfbox context list).", show_default=False)] = None,
    deploy: Annotated[bool, typer.Option("--deploy", help="Also apply its InferenceService on the target.")] = False,
    name: Annotated[str | None, typer.Option("--name", help="InferenceService name (default: the model name).", show_default=False)] = None,
    url: UrlOption = None, home: HomeOption = None, token: TokenOption = None, output: OutputOption = Output.table,
) -> None:
    """Copy a model version (metadata, metrics, custom properties, files) to a cluster's registry and S3."""
    home = (home or default_home()).expanduser()
    source = ApiClient.connect(url, home, token)
    context = ContextStore(home).get(to)
    resolver = UriResolver(Settings.load(home=home))
    say = (lambda text: None) if output is Output.json else (lambda text: console.print(f"  {text}", highlight=False))
    with console.status(f"Promoting {model} {version} to {context.name}...") if output is Output.table \
            else _nothing():
        result = promote_version(source, resolver, Remote(context, home), model, version, deploy=deploy,
                                 service_name=name, runner=SubprocessRunner(), say=say)
    artifacts = [{"name": a.get("name"), "type": a.get("artifactType"), "uri": a.get("uri")} for a in result.artifacts]
    summary = {"model": model, "version": version, "context": context.name, "target_model_id": result.model_id,
               "target_version_id": result.version_id, "created": result.created,
               "artifacts": artifacts,
               "uploaded_bytes": result.uploaded_bytes,
               "inference_service": result.deployed["metadata"]["name"] if result.deployed else None}
    if output is Output.json:
        print_json(summary)
        return
    print_pairs(f"Promoted {model} {version} to {context.name}",
                [("target version id", result.version_id), ("new", "yes" if result.created else "no (promoted before)"),
                 *((f"artifact {a['name']}", a["uri"] or a["type"]) for a in artifacts),
                 ("uploaded", f"{result.uploaded_bytes} bytes"),
                 ("InferenceService", summary["inference_service"] or "-")])


class _nothing:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None
