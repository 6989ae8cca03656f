"""Deployments (serving): the list, and one InferenceService's revisions, traffic split (canary
percent, promote, rollback), replicas desired vs ready, logs (followed live by
:mod:`kfbox.ui.deployment_logs`), and a "try it" predict form with the curl and Python for the same
request: generated from the model's V2 metadata when the deployment speaks V2
(:mod:`kfbox.ui.predict_form`), rows of numbers otherwise. With the HAProxy data plane on, the page also shows
the deployment's ingress URL and the data plane's state, and the snippets use the ingress while HAProxy is up
(:mod:`kfbox.ui.ingress`); the form itself always asks through kfbox's own port.

Status comes from :func:`kfbox.serving.status.describe`, exactly what the Kubernetes-style API
returns; actions call that API (PATCH, promote, rollback) and predictions go through the gateway.
"""

from __future__ import annotations

import time
from typing import Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response

from kfbox.apis import SERVING as SERVING_API
from kfbox.errors import InvalidInput, KfboxError, NotFound, Unavailable
from kfbox.server.platform import Platform
from kfbox.serving.status import describe
from kfbox.ui import csrf
from kfbox.ui.deployment_logs import TAIL_BYTES, describe_files, log_files, read_tail
from kfbox.ui.ingress import data_plane, door, ingress
from kfbox.ui.models import call_api
from kfbox.ui.predict_form import request_snippets, v2_fields, v2_predictions, v2_request, v2_snippets
from kfbox.ui.render import Pages
from kfbox.ui.run_live import Bounded

IRIS_CLASSES = "setosa,versicolor,virginica"
MAX_FEATURES = 64
METADATA_TIMEOUT_S = 5.0


def summary(body: dict[str, Any]) -> dict[str, Any]:
    """The list view of one described InferenceService."""
    meta, spec, status = body.get("metadata", {}), body.get("spec", {}), body.get("status", {})
    predictor = spec.get("predictor", {})
    model = predictor.get("model") or {}
    runtime = (model.get("modelFormat") or {}).get("name") or next(
        (k for k in ("sklearn", "xgboost", "lightgbm") if k in predictor), "custom")
    ready = any(c.get("type") == "Ready" and c.get("status") == "True" for c in status.get("conditions", []))
    failure = next((c.get("message") for c in status.get("conditions", [])
                    if c.get("type") == "Ready" and c.get("status") != "True"), None)
    return {"name": meta.get("name", ""), "namespace": meta.get("namespace", ""), "ready": ready,
            "reason": failure or "", "runtime": runtime,
            "protocol": model.get("protocolVersion") or predictor.get("protocolVersion") or "v1",
            "storage_uri": model.get("storageUri") or (predictor.get(runtime) or {}).get("storageUri", ""),
            "url": (status.get("address") or {}).get("url", ""), "host_url": status.get("url", ""),
            "replicas": status.get("replicas", 0), "desired": status.get("desiredReplicas", 0),
            "traffic": (status.get("components", {}).get("predictor", {}) or {}).get("traffic", []),
            "canary": predictor.get("canaryTrafficPercent"),
            "min_replicas": predictor.get("minReplicas"), "max_replicas": predictor.get("maxReplicas"),
            "autoscaling": status.get("autoscaling"), "handoff": status.get("handoff"),
            "annotations": meta.get("annotations") or {}, "labels": meta.get("labels") or {}}


def summaries(platform: Platform) -> list[dict[str, Any]]:
    manager = platform.services.serving
    if manager is None:
        return []
    domain = platform.settings.ingress_domain
    found = [summary(describe(manager.deployments[key], platform.url, domain)) for key in sorted(manager.deployments)]
    plane = data_plane(platform)
    if plane is not None:  # the data plane's door too: each one's path on the ingress port
        for info in found:
            info["ingress_url"] = f"{plane['url']}/serving/{info['namespace']}/{info['name']}"
    return found


def snippets(url: str, name: str, instances: list[list[float]], token: bool) -> dict[str, str]:
    return request_snippets(f"{url}/v1/models/{name}:predict", {"instances": instances}, token,
                            "response.json()['predictions']")


def build(platform: Platform, pages: Pages) -> APIRouter:
    router = APIRouter(include_in_schema=False)

    def manager() -> Any:
        found = platform.services.serving
        if found is None:
            raise NotFound("Serving is not part of this server.")
        return found

    @router.get("/deployments")
    @router.get("/deployments.json")
    @pages.page("deployments.html", "Deployments")
    def deployments(request: Request) -> dict[str, Any]:
        plane = data_plane(platform)
        return {"deployments": summaries(platform), **({"data_plane": plane} if plane else {})}

    metadata_cache: Bounded[tuple[str, str, int], dict[str, Any]] = Bounded(128)

    def served(namespace: str, name: str) -> str:
        """The model name in the latest revision's V1/V2 paths (``--model_name`` may differ from ``name``)."""
        record = manager().deployment(namespace, name).record
        return str(record.revisions[record.latest].served_name(name))

    def metadata_url(namespace: str, name: str) -> str:
        return f"{platform.url}/serving/{namespace}/{name}/v2/models/{served(namespace, name)}"

    def auth() -> dict[str, str]:
        return {"Authorization": f"Bearer {platform.settings.token}"} if platform.settings.token else {}

    def cached_metadata(namespace: str, name: str, revision: int, fetch: bool) -> dict[str, Any] | None:
        """The V2 metadata of the serving revision (asked once per revision; a failure is asked again)."""
        key = (namespace, name, revision)
        found = metadata_cache.get(key)
        if found is None and fetch:
            import httpx  # lazily, as everywhere the dashboard calls out

            try:
                reply = httpx.get(metadata_url(namespace, name), headers=auth(), timeout=METADATA_TIMEOUT_S)
                if reply.status_code == 200 and isinstance(reply.json(), dict):
                    found = reply.json()
                    metadata_cache.put(key, found)
            except (httpx.HTTPError, ValueError):
                return None
        return found

    async def fetch_metadata(namespace: str, name: str) -> None:
        """Fill the cache from an async handler (a sync call back into this server would block it)."""
        import httpx

        deployment = manager().deployment(namespace, name)
        key = (namespace, name, deployment.record.latest)
        if metadata_cache.get(key) is not None:
            return
        try:
            async with httpx.AsyncClient(timeout=METADATA_TIMEOUT_S) as client:
                reply = await client.get(metadata_url(namespace, name), headers=auth())
            if reply.status_code == 200 and isinstance(reply.json(), dict):
                metadata_cache.put(key, reply.json())
        except (httpx.HTTPError, ValueError):
            return

    def v2_form(info: dict[str, Any], namespace: str, name: str, revision: int,
                fetch: bool) -> tuple[list[dict[str, Any]], str]:
        """(fields, problem): the V2 form's fields when the deployment speaks V2 and its model lists inputs."""
        if str(info["protocol"]).lower() != "v2" or not info["ready"]:
            return [], ""
        metadata = cached_metadata(namespace, name, revision, fetch)
        if metadata is None:
            return [], "The model's V2 metadata did not answer; the form below sends V1 rows."
        try:
            return v2_fields(metadata), ""
        except InvalidInput as exc:
            return [], exc.message

    def detail(namespace: str, name: str, features: int, values: list[str] | None = None,
               labels: str | None = None, result: dict[str, Any] | None = None,
               fetch: bool = True) -> dict[str, Any]:
        m = manager()
        deployment = m.deployment(namespace, name)
        body = describe(deployment, platform.url, platform.settings.ingress_domain, m.handoff_refusal)
        info = summary(body)
        revisions = [{"name": rev, **data} for rev, data in sorted(body["status"].get("revisions", {}).items())]
        record = deployment.record
        history = [{"number": n, "name": f"{name}-predictor-{n:05d}", "latest": n == record.latest,
                    "stable": n == record.stable, "spec": spec.to_json() if hasattr(spec, "to_json") else str(spec)}
                   for n, spec in sorted(record.revisions.items())]
        files = log_files(m, namespace, name)
        log, log_offset = read_tail(files[-1], TAIL_BYTES) if files else ("", 0)
        if labels is None:
            labels = info["annotations"].get("serving.kfbox.io/class-names", "")
            model_name = info["labels"].get("modelregistry/registered-model-name", name)
            if not labels and "iris" in f"{name} {model_name}".lower():
                labels = IRIS_CLASSES
        fields, v2_problem = v2_form(info, namespace, name, record.latest, fetch)
        if fields:
            features = len(fields)
        features = max(1, min(features, MAX_FEATURES))
        shown = (values or [])[:features] + [""] * max(0, features - len(values or []))
        token = bool(platform.settings.token)
        model = served(namespace, name)
        entrance = ingress(platform, namespace, name)
        through = door(entrance, info["url"])  # the ingress while HAProxy is up, else kfbox's own port
        if fields:
            example = [v or ("0" if f["kind"] == "number" else "") for v, f in zip(shown, fields, strict=True)]
            try:
                code = v2_snippets(through["url"], model, v2_request(fields, example), token)
            except InvalidInput:
                code = v2_snippets(through["url"], model, v2_request(fields, ["0"] * len(fields)), token)
        else:
            code = snippets(through["url"], model, [[float(v) if _is_number(v) else 0.0 for v in shown]], token)
        return {"deployment": info, "revisions": revisions, "history": history, "log": log,
                "log_offset": log_offset, "log_files": describe_files(files),
                "log_file": files[-1].name if files else "",
                "features": features, "values": shown, "labels": labels, "result": result,
                "fields": fields, "v2_problem": v2_problem, "snippets": code,
                **({"ingress": entrance, "door": through} if entrance else {}),
                "can_rollback": record.stable is not None and record.stable != record.latest}

    @router.get("/deployments/{namespace}/{name}")
    @router.get("/deployments/{namespace}/{name}.json")
    @pages.page("deployment.html", lambda d: d["deployment"]["name"])
    def deployment_page(request: Request, namespace: str, name: str,
                        features: int = Query(default=4, ge=1, le=MAX_FEATURES)) -> dict[str, Any]:
        return detail(namespace, name, features)

    @router.post("/deployments/{namespace}/{name}/predict")
    @pages.action
    async def predict(request: Request, namespace: str, name: str) -> Response:
        form = await csrf.checked_form(request)
        count = int(str(form.get("features") or "4")) if str(form.get("features") or "4").isdigit() else 4
        values = [str(form.get(f"x{i}", "")).strip() for i in range(min(count, MAX_FEATURES))]
        labels = str(form.get("labels") or "")
        await fetch_metadata(namespace, name)
        info = summary(describe(manager().deployment(namespace, name), platform.url,
                                platform.settings.ingress_domain))
        fields, _ = v2_form(info, namespace, name, manager().deployment(namespace, name).record.latest, False)
        try:
            started = time.perf_counter()
            if fields:
                values = [str(form.get(f"x{i}", "")).strip() for i in range(len(fields))]
                reply = await _infer(platform, namespace, name, served(namespace, name), v2_request(fields, values))
                predictions = v2_predictions(reply)
            else:
                if not all(_is_number(v) for v in values):
                    raise InvalidInput(f"Every feature must be a number; got {values}.")
                reply = await _predict(platform, namespace, name, served(namespace, name), [float(v) for v in values])
                predictions = reply.get("predictions", [])
            elapsed = (time.perf_counter() - started) * 1000
            names = [n.strip() for n in labels.split(",") if n.strip()]
            shown = [names[int(p)] if names and _is_index(p, len(names)) else p for p in predictions]
            result = {"ok": True, "predictions": predictions, "classes": shown, "ms": round(elapsed, 1)}
        except KfboxError as exc:
            result = {"ok": False, "error": exc.message}
        data = detail(namespace, name, count, values, labels, result, fetch=False)
        return pages.render(request, "deployment.html", data, name, status=200 if result["ok"] else 400)

    @router.post("/deployments/{namespace}/{name}/canary")
    @pages.action
    async def canary(request: Request, namespace: str, name: str) -> Response:
        form = await csrf.checked_form(request)
        raw = str(form.get("percent") or "").strip()
        if not raw.isdigit() or not 0 <= int(raw) <= 100:
            raise InvalidInput(f"The canary share must be a whole percent from 0 to 100; got {raw!r}.")
        path = f"{SERVING_API}/namespaces/{namespace}/inferenceservices/{name}"
        await call_api(platform, "PATCH", path, {"spec": {"predictor": {"canaryTrafficPercent": int(raw)}}},
                       content_type="application/merge-patch+json")
        return pages.redirect(f"/deployments/{namespace}/{name}")

    @router.post("/deployments/{namespace}/{name}/promote")
    @router.post("/deployments/{namespace}/{name}/rollback")
    @pages.action
    async def promote(request: Request, namespace: str, name: str) -> Response:
        await csrf.checked_form(request)
        verb = request.url.path.rsplit("/", 1)[-1]
        await call_api(platform, "POST", f"{SERVING_API}/namespaces/{namespace}/inferenceservices/{name}/{verb}")
        return pages.redirect(f"/deployments/{namespace}/{name}")

    return router


async def _predict(platform: Platform, namespace: str, name: str, model: str,
                   instance: list[float]) -> dict[str, Any]:
    return await _post(platform, f"/serving/{namespace}/{name}/v1/models/{model}:predict", {"instances": [instance]})


async def _infer(platform: Platform, namespace: str, name: str, model: str, body: dict[str, Any]) -> dict[str, Any]:
    return await _post(platform, f"/serving/{namespace}/{name}/v2/models/{model}/infer", body)


async def _post(platform: Platform, path: str, payload: dict[str, Any]) -> dict[str, Any]:
    import httpx  # lazily: ~70 ms of CPU at server start otherwise

    headers = {"Authorization": f"Bearer {platform.settings.token}"} if platform.settings.token else {}
    try:
        async with httpx.AsyncClient(timeout=120) as client:
            response = await client.post(platform.url + path, json=payload, headers=headers)
    except httpx.HTTPError as exc:
        raise Unavailable(f"The inference gateway did not answer: {exc}.") from exc
    try:
        body = response.json()
    except ValueError:
        body = {"error": response.text}
    if response.status_code >= 400:
        error = body.get("error") if isinstance(body, dict) else None
        raise Unavailable(f"The model answered {response.status_code}: {error or body}.")
    return body if isinstance(body, dict) else {"predictions": body}


def _is_number(value: str) -> bool:
    try:
        float(value)
    except ValueError:
        return False
    return True


def _is_index(value: Any, size: int) -> bool:
    return (isinstance(value, int) and not isinstance(value, bool) and 0 <= value < size) or (
        isinstance(value, str) and value.isdigit() and int(value) < size)
