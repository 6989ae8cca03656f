"""``kfbox models list|show``: the Model Registry from the terminal, thin over its HTTP API.

Example::

    kfbox models list
    kfbox models show iris                 # every version with its properties and artifact URIs
    kfbox models show iris --version v2 -o json
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

import typer

from kfbox.cli.options import ContextOption, HomeOption, HostOption, OutputOption, TokenOption, UrlOption
from kfbox.cli.output import Output, console, print_json, print_table
from kfbox.cli.target import connect
from kfbox.client import ApiClient
from kfbox.client.registry import pages
from kfbox.errors import NotFound
from kfbox.ui.formats import number

API = "/api/model_registry/v1"

models_app = typer.Typer(help="Browse the Model Registry: models, versions, properties, artifact URIs.",
                         no_args_is_help=True)


def register(app: typer.Typer) -> None:
    app.add_typer(models_app, name="models")


def property_value(value: dict[str, Any]) -> Any:
    """The plain value of a customProperties entry (``{"metadataType": ..., "double_value": 0.9}``)."""
    for key in ("string_value", "double_value", "bool_value"):
        if key in value:
            return value[key]
    if "int_value" in value:
        return int(value["int_value"])
    return None


def plain_properties(entity: dict[str, Any]) -> dict[str, Any]:
    return {key: property_value(value) for key, value in sorted(entity.get("customProperties", {}).items())}


def when(millis: str | None) -> str:
    if not millis:
        return ""
    return datetime.fromtimestamp(int(millis) / 1000, tz=UTC).strftime("%Y-%m-%d %H:%M:%S")


def find_model(api: ApiClient, name: str) -> dict[str, Any]:
    try:
        model: dict[str, Any] = api.get(f"{API}/registered_model", params={"name": name})
    except NotFound as exc:
        raise NotFound(f"Model {name!r} not found. List models with: kfbox models list") from exc
    return model


def version_details(api: ApiClient, version: dict[str, Any]) -> dict[str, Any]:
    artifacts = list(pages(api, f"{API}/model_versions/{version['id']}/artifacts"))
    return {"name": version["name"], "id": version["id"], "state": version.get("state", "LIVE"),
            "author": version.get("author"), "description": version.get("description"),
            "created": when(version.get("createTimeSinceEpoch")), "properties": plain_properties(version),
            "artifacts": [{"name": a.get("name"), "type": a["artifactType"], "uri": a.get("uri"),
                           "format": " ".join(filter(None, (a.get("modelFormatName"), a.get("modelFormatVersion")))),
                           "properties": plain_properties(a)} for a in artifacts]}


@models_app.command("list")
def list_models(url: UrlOption = None, host: HostOption = None, context: ContextOption = None,
                home: HomeOption = None, token: TokenOption = None, output: OutputOption = Output.table) -> None:
    """List registered models with their latest version."""
    api = connect(url, home, token, host=host, context=context)
    rows = []
    for model in pages(api, f"{API}/registered_models", orderBy="CREATE_TIME", sortOrder="ASC"):
        latest = api.get(f"{API}/registered_models/{model['id']}/versions",
                         params={"pageSize": "1", "orderBy": "CREATE_TIME", "sortOrder": "DESC"})["items"]
        rows.append({"name": model["name"], "id": model["id"], "state": model.get("state", "LIVE"),
                     "owner": model.get("owner"), "latest_version": latest[0]["name"] if latest else None,
                     "updated": when(model.get("lastUpdateTimeSinceEpoch")), "description": model.get("description")})
    if output is Output.json:
        print_json(rows)
        return
    if not rows:
        console.print("No models registered yet. Register one with model_registry.ModelRegistry(...).register_model(...)")
        return
    print_table("Registered models", ["NAME", "ID", "STATE", "OWNER", "LATEST VERSION", "UPDATED"],
                [[r["name"], r["id"], r["state"], r["owner"], r["latest_version"], r["updated"]] for r in rows])


@models_app.command("show")
def show_model(
    name: Annotated[str, typer.Argument(help="Registered model name.", show_default=False)],
    version: Annotated[str | None, typer.Option("--version", "-v", help="Show only this version.", show_default=False)] = None,
    url: UrlOption = None, host: HostOption = None, context: ContextOption = None,
    home: HomeOption = None, token: TokenOption = None, output: OutputOption = Output.table,
) -> None:
    """Show a model's versions: state, custom properties (e.g. accuracy) and artifact URIs."""
    api = connect(url, home, token, host=host, context=context)
    model = find_model(api, name)
    if version is not None:
        try:
            found = [api.get(f"{API}/model_version", params={"name": version, "parentResourceId": model["id"]})]
        except NotFound as exc:
            raise NotFound(f"Model {name!r} has no version {version!r}. List versions with: kfbox models show {name}") \
                from exc
    else:
        found = list(pages(api, f"{API}/registered_models/{model['id']}/versions", orderBy="CREATE_TIME"))
    versions = [version_details(api, v) for v in found]
    if output is Output.json:
        print_json({"name": model["name"], "id": model["id"], "state": model.get("state", "LIVE"),
                    "owner": model.get("owner"), "description": model.get("description"),
                    "properties": plain_properties(model), "versions": versions})
        return
    title = f"Model {model['name']} (id {model['id']}, {model.get('state', 'LIVE')})"
    if model.get("description"):
        title += f" - {model['description']}"
    rows = []
    for v in versions:
        # one a line, a float to 4 significant digits (accuracy=0.9667, not 0.9666666666666667): -o json has them all
        props = "\n".join(f"{k}={number(val)}" for k, val in v["properties"].items())
        uris = "\n".join(a["uri"] or "" for a in v["artifacts"])
        formats = "\n".join(a["format"] for a in v["artifacts"])
        rows.append([v["name"], v["state"], v["author"], v["created"], props, uris, formats])
    if not rows:
        console.print(f"{title}\nNo versions yet.")
        return
    print_table(title, ["VERSION", "STATE", "AUTHOR", "CREATED", "PROPERTIES", "ARTIFACT URI", "FORMAT"], rows)
