"""What ``kfbox loadtest TARGET`` points at: a URL as given, or an InferenceService name
resolved through the platform to its gateway path (on the ingress port while the HAProxy data plane is up),
plus the replica gauge to sample.

Example::

    target = resolve_target("iris", api=ApiClient.connect(), namespace="kubeflow-user-example-com", v2=False)
    target.url   # http://127.0.0.1:8080/serving/kubeflow-user-example-com/iris/v1/models/iris:predict
"""

from __future__ import annotations

import dataclasses
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

from kfbox.apis import SERVING as API
from kfbox.apis import served_model
from kfbox.client import ApiClient as Api
from kfbox.errors import InvalidInput, NotFound

DEFAULT_NAMESPACE = "kubeflow-user-example-com"
REPLICAS_METRIC = "kfbox_serving_replicas"
"""Gauge the serving subsystem exports on /metrics, labelled by namespace and name."""
DESIRED_METRIC = "kfbox_serving_desired_replicas"


@dataclasses.dataclass(frozen=True)
class Target:
    url: str
    headers: dict[str, str] = dataclasses.field(default_factory=dict)
    name: str | None = None
    namespace: str | None = None
    metrics_url: str | None = None
    """The platform's /metrics, to sample replicas from; None for a plain URL."""

    @property
    def is_service(self) -> bool:
        return self.name is not None


def is_url(target: str) -> bool:
    return target.startswith(("http://", "https://"))


def inference_path(namespace: str, name: str, v2: bool, model: str | None = None) -> str:
    """The gateway path of an InferenceService's V1 predict or V2 infer endpoint (``model``: its
    ``--model_name`` when it has one)."""
    model = model or name
    if v2:
        return f"/serving/{namespace}/{name}/v2/models/{model}/infer"
    return f"/serving/{namespace}/{name}/v1/models/{model}:predict"


def resolve_target(target: str, *, api: Api | None, namespace: str | None = None, v2: bool = False,
                   token: str | None = None) -> Target:
    """A URL is used as-is; a name must be an InferenceService the platform knows.

    Without a namespace the name is looked up in every namespace (``kfbox serve apply``
    defaults to ``default``, Kubeflow profiles to ``kubeflow-user-example-com``).
    """
    if is_url(target):
        if v2:
            raise InvalidInput("--v2 picks the path for an InferenceService name; with a URL target, "
                               "put the path in the URL (…/v2/models/NAME/infer).")
        return Target(url=target)
    if "/" in target or not target:
        raise InvalidInput(f"Target {target!r} is neither an http(s) URL nor an InferenceService name.")
    if api is None:
        raise InvalidInput(f"Target {target!r} is an InferenceService name; it needs a running kfbox server.")
    found = _find(api, target) if namespace is None else _get(api, namespace, target)
    namespace = str(found["metadata"]["namespace"])
    base = api.base_url.rstrip("/")
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    path = inference_path(namespace, target, v2, served_model(found))
    return Target(url=api.inference_base() + path, headers=headers, name=target,
                  namespace=namespace, metrics_url=f"{base}/metrics")


def _get(api: Api, namespace: str, name: str) -> dict[str, Any]:
    try:
        found: dict[str, Any] = api.get(f"{API}/namespaces/{namespace}/inferenceservices/{name}")
    except NotFound as exc:
        raise NotFound(f"InferenceService {name!r} not found in namespace {namespace!r}. "
                       "List them with: kfbox serve list (or pass a URL).") from exc
    found.setdefault("metadata", {}).setdefault("namespace", namespace)
    return found


def _find(api: Api, name: str) -> dict[str, Any]:
    items = (api.get(f"{API}/inferenceservices") or {}).get("items", [])
    by_namespace: dict[str, dict[str, Any]] = {}
    for item in items:
        meta = item.get("metadata", {})
        if meta.get("name") == name:
            by_namespace[meta.setdefault("namespace", "default")] = item
    if not by_namespace:
        raise NotFound(f"InferenceService {name!r} not found in any namespace. "
                       "List them with: kfbox serve list (or pass a URL).")
    if len(by_namespace) > 1:
        if DEFAULT_NAMESPACE in by_namespace:
            return by_namespace[DEFAULT_NAMESPACE]
        raise InvalidInput(f"InferenceService {name!r} exists in namespaces {', '.join(sorted(by_namespace))}; "
                           "pick one with --namespace.")
    return next(iter(by_namespace.values()))


class ReplicaGauge:
    """Samples the serving replica gauge of one InferenceService from the platform's /metrics."""

    def __init__(self, metrics_url: str, name: str, namespace: str, headers: dict[str, str] | None = None) -> None:
        self.metrics_url = metrics_url
        self.name = name
        self.namespace = namespace
        self.headers = headers or {}
        self._client: httpx.AsyncClient | None = None

    async def __call__(self) -> tuple[float, float | None] | None:
        """(ready, desired) replicas now, or None when /metrics does not say."""
        if self._client is None:
            self._client = httpx.AsyncClient(headers=self.headers, timeout=2.0)
        reply = await self._client.get(self.metrics_url)
        if reply.status_code != 200:
            return None
        found = gauges_from_metrics(reply.text, self.name, self.namespace, (REPLICAS_METRIC, DESIRED_METRIC))
        if REPLICAS_METRIC not in found:
            return None
        return found[REPLICAS_METRIC], found.get(DESIRED_METRIC)

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()


def gauges_from_metrics(text: str, name: str, namespace: str, metrics: tuple[str, ...]) -> dict[str, float]:
    """The values of some per-InferenceService gauges in a Prometheus exposition (those present)."""
    found: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        if family.name not in metrics:
            continue
        for sample in family.samples:
            labels = sample.labels
            if labels.get("name", labels.get("inferenceservice")) == name and \
                    labels.get("namespace", namespace) == namespace:
                found[family.name] = float(sample.value)
                break
    return found
