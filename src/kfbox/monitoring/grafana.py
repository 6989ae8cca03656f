"""kfbox's Grafana dashboards: JSON shipped in :mod:`kfbox.monitoring.dashboards`, written out for import.

They query the Knative/KServe metric names (see docs/metrics.md), so one file works on a
kube-prometheus-stack Grafana and against kfbox's local Prometheus; the datasource is a
``${datasource}`` variable, picked at import.

Example::

    write_all(Path("out"))   # out/kfbox-serving.json, ..., out/kfbox-alerts.yaml
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from importlib import resources
from pathlib import Path
from typing import Any

from kfbox.monitoring.prometheus import RULE_FILE, rules_text

NAMES = ("kfbox-serving", "kfbox-pipelines", "kfbox-platform")


def load(name: str) -> dict[str, Any]:
    text = resources.files("kfbox.monitoring.dashboards").joinpath(f"{name}.json").read_text()
    dashboard: dict[str, Any] = json.loads(text)
    return dashboard


def expressions(dashboard: dict[str, Any]) -> Iterator[tuple[str, str]]:
    """(panel title, PromQL) for every target of every panel."""
    for panel in dashboard.get("panels", []):
        for target in panel.get("targets", []):
            yield panel["title"], target["expr"]


def write_all(folder: Path) -> list[Path]:
    """Write every dashboard and the alert rules into ``folder``; returns the paths written."""
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for name in NAMES:
        path = folder / f"{name}.json"
        path.write_text(json.dumps(load(name), indent=2) + "\n")
        written.append(path)
    rules = folder / RULE_FILE
    rules.write_text(rules_text())
    return [*written, rules]
