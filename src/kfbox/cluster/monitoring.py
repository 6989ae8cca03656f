"""Monitoring on the cluster: kube-prometheus-stack (Helm) plus kfbox's Grafana dashboard and predictor scrape.

The standalone ``grafana/grafana`` chart the original project used is deprecated (frozen
2026-01-30); kube-prometheus-stack bundles Grafana and the Prometheus Operator. Predictors
sit behind Istio sidecars and ``global-deny-all`` (a direct scrape gets 403, kserve#1558), so
kfbox scrapes the sidecar's Envoy endpoint (``http-envoy-prom``, ``/stats/prometheus``),
which carries ``istio_requests_total`` and the request-duration histogram per workload.

Example::

    monitoring_step(kube)    # helm upgrade --install ... then the dashboard ConfigMap
"""

from __future__ import annotations

import json
from typing import Any

import yaml

from kfbox.cluster.runner import Command
from kfbox.cluster.steps import Action, Kube, Step

NAMESPACE = "monitoring"
RELEASE = "kfbox-monitoring"
CHART_REPO = ("prometheus-community", "https://prometheus-community.github.io/helm-charts")
CHART = "prometheus-community/kube-prometheus-stack"
GRAFANA_SERVICE = f"{RELEASE}-grafana"
GRAFANA_SECRET = f"{RELEASE}-grafana"
PROMETHEUS_SERVICE = "prometheus-operated"
HELM_VALUES = {
    # pick up every ServiceMonitor/PodMonitor, not only the chart's own (Knative's promstack values)
    "prometheus.prometheusSpec.serviceMonitorSelectorNilUsesHelmValues": "false",
    "prometheus.prometheusSpec.podMonitorSelectorNilUsesHelmValues": "false",
    "prometheus.prometheusSpec.ruleSelectorNilUsesHelmValues": "false",
    "grafana.sidecar.dashboards.searchNamespace": "ALL",
    "alertmanager.enabled": "false",
}
_LABELS = {"app.kubernetes.io/managed-by": "kfbox", "app.kubernetes.io/part-of": "kfbox-monitoring"}


def _panel(panel_id: int, title: str, expr: str, unit: str, y: int) -> dict[str, Any]:
    return {"id": panel_id, "type": "timeseries", "title": title, "datasource": {"type": "prometheus"},
            "gridPos": {"h": 8, "w": 24, "x": 0, "y": y}, "fieldConfig": {"defaults": {"unit": unit}},
            "targets": [{"expr": expr, "legendFormat": "{{destination_workload}}", "refId": "A"}]}


def dashboard() -> dict[str, Any]:
    """KServe predictors seen from their Istio sidecars: requests/s, error ratio, p50/p95 latency."""
    match = 'reporter="destination",destination_workload_namespace=~"$namespace"'
    rate = f"sum by (destination_workload) (rate(istio_requests_total{{{match}}}[1m]))"
    errors = (f'sum by (destination_workload) (rate(istio_requests_total{{{match},response_code=~"5.."}}[1m])) / '
              f"{rate}")
    latency = ("histogram_quantile({q}, sum by (destination_workload, le) "
               f"(rate(istio_request_duration_milliseconds_bucket{{{match}}}[1m])))")
    return {
        "uid": "kfbox-kserve", "title": "kfbox: KServe predictors (Istio)", "schemaVersion": 39,
        "time": {"from": "now-1h", "to": "now"}, "refresh": "10s", "tags": ["kfbox", "kserve"],
        "templating": {"list": [{"name": "namespace", "type": "custom", "query": "kubeflow-user-example-com",
                                 "current": {"text": "kubeflow-user-example-com",
                                             "value": "kubeflow-user-example-com"}}]},
        "panels": [_panel(1, "Requests per second", rate, "reqps", 0),
                   _panel(2, "Error ratio (5xx)", errors, "percentunit", 8),
                   _panel(3, "Latency p50 (ms)", latency.replace("{q}", "0.5"), "ms", 16),
                   _panel(4, "Latency p95 (ms)", latency.replace("{q}", "0.95"), "ms", 24)],
    }


def dashboard_configmap() -> dict[str, Any]:
    """Picked up by Grafana's sidecar through the ``grafana_dashboard`` label."""
    return {"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "kfbox-dashboards", "namespace": NAMESPACE,
                         "labels": {**_LABELS, "grafana_dashboard": "1"}},
            "data": {"kfbox-kserve.json": json.dumps(dashboard(), indent=1, sort_keys=True)}}


def predictor_podmonitor() -> dict[str, Any]:
    """Scrape the predictors' sidecars (port ``http-envoy-prom``) in every namespace."""
    return {"apiVersion": "monitoring.coreos.com/v1", "kind": "PodMonitor",
            "metadata": {"name": "kfbox-kserve-predictors", "namespace": NAMESPACE, "labels": dict(_LABELS)},
            "spec": {"namespaceSelector": {"any": True},
                     "selector": {"matchExpressions": [{"key": "serving.kserve.io/inferenceservice",
                                                        "operator": "Exists"}]},
                     "podMetricsEndpoints": [{"port": "http-envoy-prom", "path": "/stats/prometheus",
                                              "interval": "15s"}]}}


def manifests() -> list[dict[str, Any]]:
    return [dashboard_configmap(), predictor_podmonitor()]


def monitoring_step(kube: Kube) -> Step:
    helm_context = ("--kube-context", kube.context)
    sets = [arg for key, value in HELM_VALUES.items() for arg in ("--set", f"{key}={value}")]
    repo = Command(("helm", "repo", "add", *CHART_REPO, "--force-update"), timeout=120)
    install = Command(("helm", "upgrade", "--install", RELEASE, CHART, "--namespace", NAMESPACE, "--create-namespace",
                       *helm_context, *sets, "--wait", "--timeout", "15m"), timeout=960)
    text = yaml.safe_dump_all(manifests(), sort_keys=False)
    return Step("monitoring", "Prometheus + Grafana (kube-prometheus-stack) and kfbox's dashboard", ("cluster",), (
        Action("run", repo),
        Action("run", Command(("helm", "repo", "update", CHART_REPO[0]), timeout=120)),
        Action("run", install),
        kube.established("podmonitors.monitoring.coreos.com"),
        kube.apply_text(text, "<kfbox dashboards ConfigMap + predictor PodMonitor>"),
        *kube.available(NAMESPACE, GRAFANA_SERVICE, f"{RELEASE}-kube-prom-operator", timeout=300),
    ))
