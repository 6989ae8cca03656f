"""Grafana dashboards and alert rules: JSON schema, promtool, and every query answered by real Prometheus on real data.

The server (tests/monitoring/conftest.py) has two InferenceServices with traffic (one 4xx),
a FAILED pipeline run, and a Model Registry call; each dashboard and rule query must return series.
"""

from __future__ import annotations

import copy
import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from jsonschema import Draft7Validator

from kfbox.monitoring import grafana
from kfbox.monitoring.prometheus import rules_text
from kfbox.monitoring.prometheus_rule import structural_errors
from tests.monitoring.conftest import Monitored
from tests.support import run_cli

VARIABLES = {"$__rate_interval": "1m", "$namespace": ".*", "$service": ".*"}


def _concrete(expr: str) -> str:
    for name, value in VARIABLES.items():
        expr = expr.replace(name, value)
    return expr


def _rules() -> list[dict[str, Any]]:
    return [rule for group in yaml.safe_load(rules_text())["groups"] for rule in group["rules"]]


SCHEMA = json.loads((Path(__file__).parent / "grafana_dashboard.schema.json").read_text())


@pytest.mark.parametrize("name", grafana.NAMES)
def test_dashboard_passes_the_schema(name: str) -> None:
    board = grafana.load(name)
    errors = [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in Draft7Validator(SCHEMA).iter_errors(board)]
    assert errors == [], errors
    assert board["uid"] == name
    variables = {v["name"] for v in board["templating"]["list"]}
    ids = [p["id"] for p in board["panels"]]
    assert len(ids) == len(set(ids))
    for panel in board["panels"]:
        assert panel["gridPos"]["x"] + panel["gridPos"]["w"] <= 24, panel["title"]
        assert len({t["refId"] for t in panel["targets"]}) == len(panel["targets"]), panel["title"]
        for target in panel["targets"]:
            used = set(re.findall(r"\$\w+", target["expr"]))
            assert used <= {"$__rate_interval", *(f"${v}" for v in variables)}, used


def test_the_schema_refuses_what_grafana_would() -> None:
    """The schema is ours: it must refuse each mistake it is there to catch (Grafana's published schemas
    flagged the first two in the shipped files)."""
    validator = Draft7Validator(SCHEMA)
    board = grafana.load("kfbox-serving")
    mistakes = {
        "a variable's current without text/value": lambda b: b["templating"]["list"][0].update(current={}),
        "a query variable's query as an object": lambda b: b["templating"]["list"][1].update(query={"query": "x"}),
        "a legend without showLegend": lambda b: b["panels"][0]["options"]["legend"].pop("showLegend"),
        "a panel on another datasource": lambda b: b["panels"][0]["datasource"].update(uid="abc"),
        "no datasource variable": lambda b: b["templating"].update(list=b["templating"]["list"][1:]),
        "an empty query": lambda b: b["panels"][0]["targets"][0].update(expr=" "),
        "a panel past the grid": lambda b: b["panels"][0]["gridPos"].update(w=25),
    }
    for mistake, apply in mistakes.items():
        broken = copy.deepcopy(board)
        apply(broken)
        assert not validator.is_valid(broken), mistake


def test_rules_pass_promtool(tmp_path: Path) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text(rules_text())
    done = subprocess.run([shutil.which("promtool") or "promtool", "check", "rules", str(rules)],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS: 4 rules found" in done.stdout


def test_prometheus_rule_for_clusters(tmp_path: Path) -> None:
    """``--for cluster``: the rule groups wrapped as a prometheus-operator PrometheusRule.

    The CRD's schema is not available offline here: :func:`structural_errors` checks what it
    requires of these fields; promtool checks the unwrapped groups' PromQL.
    """
    out = tmp_path / "kfbox-alerts.prometheusrule.yaml"
    done = run_cli("monitoring", "rules", "--for", "cluster", "-n", "obs", "-l", "release=prom", "-o", str(out))
    assert done.returncode == 0, done.stderr
    obj = yaml.safe_load(out.read_text())
    assert structural_errors(obj) == []
    assert (obj["apiVersion"], obj["kind"]) == ("monitoring.coreos.com/v1", "PrometheusRule")
    assert obj["metadata"]["namespace"] == "obs" and obj["metadata"]["labels"]["release"] == "prom"
    assert obj["spec"]["groups"] == yaml.safe_load(rules_text())["groups"]  # the same rules as the local ones
    unwrapped = tmp_path / "groups.yaml"
    unwrapped.write_text(yaml.safe_dump({"groups": obj["spec"]["groups"]}))
    check = subprocess.run([shutil.which("promtool") or "promtool", "check", "rules", str(unwrapped)],
                           capture_output=True, text=True, timeout=60)
    assert check.returncode == 0 and "SUCCESS: 4 rules found" in check.stdout, check.stdout + check.stderr
    # what the CRD would refuse is refused here too
    broken = yaml.safe_load(out.read_text())
    broken["spec"]["groups"][0]["rules"][0]["for"] = "one minute"
    broken["spec"]["groups"].append({"name": broken["spec"]["groups"][0]["name"], "rules": [{"alert": "x"}]})
    errors = " ".join(structural_errors(broken))
    assert "not a duration" in errors and "unique" in errors and ".expr is required" in errors
    bad = run_cli("monitoring", "rules", "--for", "cluster", "-l", "nolabel")
    assert bad.returncode != 0 and "is not KEY=VALUE" in bad.stderr


def test_cli_writes_dashboards_and_rules(tmp_path: Path) -> None:
    done = run_cli("monitoring", "dashboards", "-o", str(tmp_path))
    assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "kfbox-alerts.yaml", "kfbox-pipelines.json", "kfbox-platform.json", "kfbox-serving.json"]


@pytest.mark.parametrize("name", grafana.NAMES)
def test_every_dashboard_query_returns_series(monitored: Monitored, name: str) -> None:
    for title, expr in grafana.expressions(grafana.load(name)):
        found = monitored.wait_series(_concrete(expr), timeout=30)
        assert found, f"{name} / {title}: {expr}"


def test_every_rule_query_returns_series_below_its_threshold(monitored: Monitored) -> None:
    """Each rule with its numeric threshold lowered to -1, so the query itself is checked, not whether it fires."""
    for rule in _rules():
        lowered = re.sub(r"(>=?)\s*[\d.]+[ \t]*$", ">= -1", rule["expr"].strip(), flags=re.M)
        assert lowered != rule["expr"].strip()
        assert monitored.wait_series(lowered, timeout=30), f"{rule['alert']}: {lowered}"
