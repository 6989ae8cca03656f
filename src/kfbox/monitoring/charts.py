"""One JSON shape for the live charts, from Prometheus's HTTP API when it runs, else from :class:`History`.

``{"source": "prometheus"|"memory", "step": 5.0, "t": [unix seconds...], "rps": [...], "success": [...],
"p50": [...], "p95": [...], "p99": [...], "inflight": [...], "desired": [...], "ready": [...]}``
(latency in milliseconds, success as a 0-1 ratio, None where there is no value).

Example::

    await deployment_series(platform, history, "default", "iris", minutes=15)
"""

from __future__ import annotations

import asyncio
import math
import time
from typing import Any

from kfbox.monitoring.history import PIPELINE_FIELDS, PIPELINES, History

RATE_WINDOW = "30s"  # a live chart: a few scrapes wide (the dashboards use $__rate_interval)


def promql(namespace: str, name: str) -> dict[str, str]:
    """The Knative-named queries behind each chart field (the dashboards' queries, for one service)."""
    sel = f'namespace_name="{_quote(namespace)}",service_name="{_quote(name)}"'
    count = f"sum(rate(revision_app_request_count{{{sel}}}[{RATE_WINDOW}]))"
    latency = (f"histogram_quantile({{q}}, sum by (le) (rate(revision_app_request_latencies_bucket{{{{{sel}}}}}"
               f"[{RATE_WINDOW}])))")
    return {"rps": count,
            "success": f'sum(rate(revision_app_request_count{{{sel},response_code_class!="5xx"}}[{RATE_WINDOW}])) '
                       f"/ {count}",
            "p50": latency.format(q=0.5), "p95": latency.format(q=0.95), "p99": latency.format(q=0.99),
            "inflight": f"sum(autoscaler_stable_request_concurrency{{{sel}}})",
            "desired": f"sum(autoscaler_desired_pods{{{sel}}})", "ready": f"sum(autoscaler_actual_pods{{{sel}}})"}


async def deployment_series(prometheus_url: str | None, history: History, namespace: str, name: str,
                            minutes: float) -> dict[str, Any]:
    import httpx  # lazily: ~70 ms of CPU at server start otherwise
    if prometheus_url:
        try:
            return await _from_prometheus(prometheus_url, promql(namespace, name), minutes, history.interval)
        except (httpx.HTTPError, KeyError, ValueError):
            pass  # Prometheus is starting or gone: the charts keep drawing from memory
    return {"source": "memory", "step": history.interval, **history.series((namespace, name), minutes)}


async def pipeline_series(prometheus_url: str | None, history: History, minutes: float) -> dict[str, Any]:
    """Runs by state over time: ``{"source", "step", "t", "pending", "running", "succeeded", "failed"}``."""
    import httpx  # lazily: ~70 ms of CPU at server start otherwise
    if prometheus_url:
        queries = {f: f'sum(kfbox_pipeline_runs{{state="{f.upper()}"}})' for f in PIPELINE_FIELDS}
        try:
            return await _from_prometheus(prometheus_url, queries, minutes, history.interval)
        except (httpx.HTTPError, KeyError, ValueError):
            pass
    return {"source": "memory", "step": history.interval, **history.series(PIPELINES, minutes)}


async def _from_prometheus(url: str, queries: dict[str, str], minutes: float, step: float) -> dict[str, Any]:
    import httpx  # lazily: ~70 ms of CPU at server start otherwise
    end = math.floor(time.time() / step) * step
    start = end - minutes * 60
    grid = [start + i * step for i in range(int((end - start) / step) + 1)]
    async with httpx.AsyncClient(base_url=url, timeout=5) as client:
        replies = await asyncio.gather(*(client.get("/api/v1/query_range", params={
            "query": q, "start": start, "end": end, "step": step}) for q in queries.values()))
    out: dict[str, Any] = {"source": "prometheus", "step": step, "t": grid}
    for field, reply in zip(queries, replies, strict=True):
        reply.raise_for_status()
        result = reply.json()["data"]["result"]
        values = {float(t): float(v) for t, v in result[0]["values"]} if result else {}
        out[field] = [None if (v := values.get(t)) is None or math.isnan(v) else round(v, 4) for t in grid]
    return out


def _quote(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"')
