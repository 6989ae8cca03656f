"""``kfbox serve ...``, ``kfbox deploy`` and ``kfbox predict``: KServe InferenceServices on kfbox.

Thin over the serving API (``/apis/serving.kserve.io/v1beta1``) and the gateway (``/serving``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
import yaml

from kfbox.apis import SERVING as API
from kfbox.apis import served_model
from kfbox.cli.options import ContextOption, HomeOption, HostOption, OutputOption, TokenOption, UrlOption
from kfbox.cli.output import Output, console, print_json, print_table
from kfbox.cli.target import connect
from kfbox.client import ApiClient
from kfbox.client.inference_services import wait_ready
from kfbox.errors import Conflict, InvalidInput, NotFound

NamespaceOption = Annotated[str, typer.Option("--namespace", "-n", help="Namespace of the InferenceService.")]

serve_app = typer.Typer(help="Serve KServe InferenceServices: apply, list, get, delete, logs, promote, rollback.",
                        no_args_is_help=True)


def register(app: typer.Typer) -> None:
    app.add_typer(serve_app, name="serve")
    app.command()(deploy)
    app.command()(predict)


def _api(url: str | None, home: Path | None, token: str | None, host: str | None = None,
         context: str | None = None) -> ApiClient:
    return connect(url, home, token, host=host, context=context, timeout=120.0)


def _ready(isvc: dict[str, Any]) -> dict[str, Any]:
    conditions = isvc.get("status", {}).get("conditions", [])
    return next((c for c in conditions if c.get("type") == "Ready"), {"status": "Unknown"})


def _row(isvc: dict[str, Any]) -> list[Any]:
    status = isvc.get("status", {})
    ready = _ready(isvc)
    traffic = ", ".join(f"{t['revisionName'].rsplit('-', 1)[-1]}:{t['percent']}%"
                        for t in status.get("components", {}).get("predictor", {}).get("traffic", []))
    return [isvc["metadata"]["namespace"], isvc["metadata"]["name"], status.get("address", {}).get("url"),
            ready.get("status"), ready.get("reason") or "", f"{status.get('replicas')}/{status.get('desiredReplicas')}",
            traffic]


COLUMNS = ["namespace", "name", "url", "ready", "reason", "replicas", "traffic"]


def _load_manifests(path: Path) -> list[dict[str, Any]]:
    text = path.read_text() if str(path) != "-" else typer.get_text_stream("stdin").read()
    try:
        docs = [d for d in yaml.safe_load_all(text) if d]
    except yaml.YAMLError as exc:
        raise InvalidInput(f"{path} is not valid YAML: {exc}") from exc
    manifests = [d for d in docs if isinstance(d, dict) and d.get("kind") == "InferenceService"]
    if not manifests:
        raise InvalidInput(f"{path} has no InferenceService (kind: InferenceService, "
                           "apiVersion: serving.kserve.io/v1beta1).")
    return manifests


@serve_app.command("apply")
def apply(
    file: Annotated[Path, typer.Option("--filename", "-f", help="InferenceService YAML/JSON ('-' for stdin).")],
    namespace: NamespaceOption = "default",
    wait: Annotated[bool, typer.Option("--wait", help="Wait until Ready (or failed).")] = False,
    timeout: Annotated[float, typer.Option(help="Seconds to wait with --wait.")] = 120.0,
    url: UrlOption = None, host: HostOption = None, context: ContextOption = None,
    home: HomeOption = None, token: TokenOption = None, output: OutputOption = Output.table,
) -> None:
    """Create or update InferenceServices from a manifest, as `kubectl apply -f` would."""
    api = _api(url, home, token, host, context)
    results = []
    for manifest in _load_manifests(file):
        ns = (manifest.get("metadata") or {}).get("namespace") or namespace
        isvc, verb = _create_or_replace(api, ns, manifest)
        if wait:
            isvc = _wait_ready(api, ns, isvc["metadata"]["name"], timeout)
        results.append((isvc, verb))
    if output is Output.json:
        objects = [isvc for isvc, _ in results]
        print_json(objects if len(objects) > 1 else objects[0])
        return
    for isvc, verb in results:
        console.print(f"inferenceservice.serving.kserve.io/{isvc['metadata']['name']} {verb}")
    if wait:
        print_table(None, COLUMNS, [_row(i) for i, _ in results])


def _create_or_replace(api: ApiClient, namespace: str, manifest: dict[str, Any]) -> tuple[dict[str, Any], str]:
    """Create (201), or replace the existing one at its current resourceVersion (retried if it moved); with
    what ``kubectl apply`` says of it: created, configured, or unchanged (the spec's generation did not move)."""
    try:
        created: dict[str, Any] = api.post(f"{API}/namespaces/{namespace}/inferenceservices", json=manifest)
        return created, "created"
    except Conflict:
        pass
    name = (manifest.get("metadata") or {}).get("name")
    for attempt in range(5):
        current = api.get(f"{API}/namespaces/{namespace}/inferenceservices/{name}")
        body = {**manifest, "metadata": {**manifest.get("metadata", {}),
                                         "resourceVersion": current["metadata"]["resourceVersion"]}}
        try:
            replaced: dict[str, Any] = api.request("PUT", f"{API}/namespaces/{namespace}/inferenceservices/{name}",
                                                   json=body)
            moved = replaced["metadata"].get("generation") != current["metadata"].get("generation")
            return replaced, "configured" if moved else "unchanged"
        except Conflict:
            if attempt == 4:
                raise
    raise AssertionError("unreachable")


def _wait_ready(api: ApiClient, namespace: str, name: str, timeout: float) -> dict[str, Any]:
    with console.status(f"Waiting for {namespace}/{name} to be Ready..."):
        return wait_ready(api, namespace, name, timeout)


@serve_app.command("list")
def list_(
    namespace: Annotated[str | None, typer.Option("--namespace", "-n", help="Only this namespace.")] = None,
    url: UrlOption = None, host: HostOption = None, context: ContextOption = None,
    home: HomeOption = None, token: TokenOption = None, output: OutputOption = Output.table,
) -> None:
    """List InferenceServices with their URL, readiness, replicas and traffic split."""
    path = f"{API}/namespaces/{namespace}/inferenceservices" if namespace else f"{API}/inferenceservices"
    items = _api(url, home, token, host, context).get(path)["items"]
    if output is Output.json:
        print_json(items)
    else:
        print_table(None, COLUMNS, [_row(i) for i in items])


@serve_app.command("get")
def get(
    name: str, namespace: NamespaceOption = "default",
    url: UrlOption = None, host: HostOption = None, context: ContextOption = None,
    home: HomeOption = None, token: TokenOption = None, output: OutputOption = Output.table,
) -> None:
    """Show one InferenceService: readiness and why, URLs, revisions, traffic, replicas."""
    api = _api(url, home, token, host, context)
    isvc = api.get(f"{API}/namespaces/{namespace}/inferenceservices/{name}")
    if output is Output.json:
        print_json(isvc)
        return
    status = isvc["status"]
    ready = _ready(isvc)
    latest: dict[str, Any] = next((c for c in status["conditions"] if c["type"] == "LatestDeploymentReady"), {})
    predictor = status.get("components", {}).get("predictor", {})
    ns, name = isvc["metadata"]["namespace"], isvc["metadata"]["name"]
    ingress = _ingress(api)  # with the HAProxy data plane: the faster door, straight to a ready replica
    doors = "the kfbox port or the ingress" if ingress else "the kfbox port"
    rows: list[tuple[str, Any]] = [
        ("name", f"{ns}/{name}"),
        ("ready", ready.get("status")),
        ("reason", ready.get("reason") or ""),
        ("message", ready.get("message") or ""),
        ("url", status.get("address", {}).get("url")),
        *([("ingress url", f"{ingress[0]}/serving/{ns}/{name}"), ("data plane", ingress[1])] if ingress else []),
        ("host url", f"{status['url']} (send 'Host: {status['url'].split('//', 1)[-1]}' to {doors})"),
        ("replicas", f"{status.get('replicas')} ready of {status.get('desiredReplicas')} desired"),
        *([("autoscaling", f"{scaling['metric']}, target {scaling['target']} {scaling['per']}; "
                           f"{scaling['minReplicas']}-{scaling['maxReplicas']} replicas"
                           + (f"; containerConcurrency {cc} (requests at once a replica, the rest wait)"
                              if (cc := scaling.get("containerConcurrency")) else "")
                           + (f"; starts with {n}" if (n := scaling.get("initialScale")) else "")
                           + (f"; scale-down delay {d:g}s" if (d := scaling.get("scaleDownDelaySeconds")) else ""))]
          if (scaling := status.get("autoscaling")) else []),
        ("traffic", ", ".join(f"{t['revisionName']} {t['percent']}%" for t in predictor.get("traffic", []))),
        *([("connections", "handed to its replicas (--data-plane handoff)" if handoff.get("connections") == "replicas"
            else f"kept by kfbox: {handoff.get('reason')}")] if (handoff := status.get("handoff")) else []),
    ]
    if latest.get("status") == "False" and latest.get("message") != ready.get("message"):
        rows.append(("latest revision", f"{latest.get('reason')}: {latest.get('message')}"))
    print_table(None, ["field", "value"], rows)
    print_table("revisions", ["revision", "ready", "replicas", "desired"],
                [[rev, r["ready"], r["replicas"], r["desired"]] for rev, r in status.get("revisions", {}).items()])


def _ingress(api: ApiClient) -> tuple[str, str] | None:
    """(ingress URL, data plane state) when the server runs the HAProxy data plane (its ``/healthz`` has
    ``ingress_url``); None with the Python gateway alone, or on a Kubeflow cluster (its ingress is status.url)."""
    health = api.health()
    ingress = health.get("ingress_url")
    if not isinstance(ingress, str):
        return None
    return ingress, str(health.get("data_plane", ""))


@serve_app.command("delete")
def delete(name: str, namespace: NamespaceOption = "default",
           url: UrlOption = None, host: HostOption = None, context: ContextOption = None,
           home: HomeOption = None, token: TokenOption = None) -> None:
    """Delete an InferenceService and stop its replicas."""
    _api(url, home, token, host, context).delete(f"{API}/namespaces/{namespace}/inferenceservices/{name}")
    console.print(f"inferenceservice.serving.kserve.io/{name} deleted")


@serve_app.command("logs")
def logs(
    name: str, namespace: NamespaceOption = "default",
    revision: Annotated[int | None, typer.Option(help="Revision number; default the latest.")] = None,
    tail: Annotated[int, typer.Option(help="Lines from the end.")] = 200,
    url: UrlOption = None, host: HostOption = None, context: ContextOption = None,
    home: HomeOption = None, token: TokenOption = None,
) -> None:
    """Print the log of the newest replica of a revision."""
    params: dict[str, Any] = {"tail": tail}
    if revision is not None:
        params["revision"] = revision
    text = _api(url, home, token, host, context).get(f"{API}/namespaces/{namespace}/inferenceservices/{name}/logs", params=params)
    typer.echo(text or "(no replica log yet)", nl=not str(text).endswith("\n"))


@serve_app.command("promote")
def promote(name: str, namespace: NamespaceOption = "default",
            url: UrlOption = None, host: HostOption = None, context: ContextOption = None,
           home: HomeOption = None, token: TokenOption = None) -> None:
    """Send 100% of traffic to the canary (latest) revision."""
    isvc = _api(url, home, token, host, context).post(f"{API}/namespaces/{namespace}/inferenceservices/{name}/promote")
    print_table(None, COLUMNS, [_row(isvc)])


@serve_app.command("rollback")
def rollback(name: str, namespace: NamespaceOption = "default",
             url: UrlOption = None, host: HostOption = None, context: ContextOption = None,
           home: HomeOption = None, token: TokenOption = None) -> None:
    """Send 100% of traffic back to the last rolled-out revision, dropping the canary."""
    isvc = _api(url, home, token, host, context).post(f"{API}/namespaces/{namespace}/inferenceservices/{name}/rollback")
    print_table(None, COLUMNS, [_row(isvc)])


def deploy(
    model: Annotated[str, typer.Argument(help="Registered model name.")],
    version: Annotated[str | None, typer.Option("--version", help="Model version name; default the latest.")] = None,
    name: Annotated[str | None, typer.Option("--name", help="InferenceService name; default the model name.")] = None,
    model_format: Annotated[str, typer.Option("--format", help="sklearn, xgboost, lightgbm.")] = "sklearn",
    namespace: NamespaceOption = "default",
    wait: Annotated[bool, typer.Option("--wait/--no-wait", help="Wait until Ready.")] = True,
    url: UrlOption = None, host: HostOption = None, context: ContextOption = None,
    home: HomeOption = None, token: TokenOption = None, output: OutputOption = Output.table,
) -> None:
    """Serve a Model Registry version: builds the InferenceService and records it in the registry."""
    api = _api(url, home, token, host, context)
    isvc = api.post(f"{API}/namespaces/{namespace}/deployments",
                    json={"model": model, "version": version, "name": name, "format": model_format})
    if wait:
        isvc = {**_wait_ready(api, namespace, isvc["metadata"]["name"], 120.0), "registry": isvc.get("registry")}
    if output is Output.json:
        print_json(isvc)
    else:
        print_table(None, COLUMNS, [_row(isvc)])


def predict(
    name: Annotated[str, typer.Argument(help="InferenceService name.")],
    data: Annotated[str, typer.Option("--data", "-d", help="JSON body or rows, or @file.json.")],
    v2: Annotated[bool, typer.Option("--v2", help="Use the V2 (Open Inference) protocol.")] = False,
    namespace: NamespaceOption = "default",
    url: UrlOption = None, host: HostOption = None, context: ContextOption = None,
    home: HomeOption = None, token: TokenOption = None,
) -> None:
    """Send a prediction through the gateway; a bare list of rows is wrapped for V1 or V2."""
    raw = Path(data[1:]).read_text() if data.startswith("@") else data
    try:
        body = json.loads(raw)
    except ValueError as exc:
        raise InvalidInput(f"--data is not JSON: {exc}. Example: --data '[[5.1, 3.5, 1.4, 0.2]]'") from exc
    api = _api(url, home, token, host, context)
    model = _served_model(api, namespace, name)
    if v2:
        body = body if isinstance(body, dict) else v2_request(body)
        path = f"/serving/{namespace}/{name}/v2/models/{model}/infer"
    else:
        body = body if isinstance(body, dict) else {"instances": body}
        path = f"/serving/{namespace}/{name}/v1/models/{model}:predict"
    print_json(api.post(path, json=body))


def _served_model(api: ApiClient, namespace: str, name: str) -> str:
    """The name the model answers under (its ``--model_name``), read from the InferenceService. Through a
    Kubeflow cluster's gateway the Kubernetes API is not reachable (404): KServe's default, the service's
    name, is used, and a service that does not exist gets the gateway's own answer."""
    try:
        return served_model(api.get(f"{API}/namespaces/{namespace}/inferenceservices/{name}"))
    except NotFound:
        return name


def v2_request(rows: Any) -> dict[str, Any]:
    """Rows of numbers as one V2 input tensor."""
    if not isinstance(rows, list) or not rows or not all(isinstance(r, list) for r in rows):
        raise InvalidInput("--v2 with a bare list needs rows: [[5.1, 3.5, 1.4, 0.2], ...]")
    flat = [v for row in rows for v in row]
    datatype = "INT64" if all(isinstance(v, int) and not isinstance(v, bool) for v in flat) else "FP64"
    return {"inputs": [{"name": "input-0", "shape": [len(rows), len(rows[0])], "datatype": datatype, "data": flat}]}
