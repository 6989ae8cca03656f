"""kfbox's alert rules for a cluster: the rule file's groups wrapped as a prometheus-operator ``PrometheusRule``.

kube-prometheus-stack loads rules from ``monitoring.coreos.com/v1 PrometheusRule`` objects
whose labels match its ``ruleSelector`` (by default ``release: <helm release>``), so the
object carries that label. :func:`structural_errors` checks what the CRD's schema
(prometheus-operator's ``monitoring.coreos.com_prometheusrules.yaml``) requires of the
fields kfbox writes: ``spec.groups[].name`` present and unique, each rule an ``expr`` with
exactly one of ``alert``/``record``, durations in its pattern, string-valued labels and
annotations. The PromQL itself is checked by ``promtool check rules`` on the unwrapped groups.

Example::

    obj = prometheus_rule(namespace="monitoring", labels={"release": "kube-prometheus-stack"})
"""

from __future__ import annotations

import re
from typing import Any

import yaml

from kfbox.monitoring.prometheus import rules_text

API_VERSION = "monitoring.coreos.com/v1"
KIND = "PrometheusRule"
NAME = "kfbox-alerts"
DEFAULT_LABELS = {"release": "kube-prometheus-stack", "app.kubernetes.io/part-of": "kfbox"}
DURATION = re.compile(r"^(0|(([0-9]+)y)?(([0-9]+)w)?(([0-9]+)d)?(([0-9]+)h)?(([0-9]+)m)?(([0-9]+)s)?(([0-9]+)ms)?)$")
DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$")


def prometheus_rule(namespace: str = "monitoring", labels: dict[str, str] | None = None,
                    name: str = NAME) -> dict[str, Any]:
    """The shipped rule groups as a PrometheusRule object (a dict, ready for ``yaml.safe_dump``)."""
    groups = yaml.safe_load(rules_text())["groups"]
    obj = {"apiVersion": API_VERSION, "kind": KIND,
           "metadata": {"name": name, "namespace": namespace, "labels": dict(DEFAULT_LABELS if labels is None
                                                                             else labels)},
           "spec": {"groups": groups}}
    errors = structural_errors(obj)
    if errors:  # a shipped rule file that breaks the CRD is kfbox's bug, not the user's
        raise ValueError("; ".join(errors))
    return obj


def structural_errors(obj: Any) -> list[str]:
    """What the PrometheusRule CRD's schema would refuse in ``obj`` (empty when none)."""
    errors: list[str] = []
    if not isinstance(obj, dict):
        return ["the document is not an object"]
    if obj.get("apiVersion") != API_VERSION or obj.get("kind") != KIND:
        errors.append(f"apiVersion/kind must be {API_VERSION}/{KIND}")
    metadata = obj.get("metadata") or {}
    if not DNS_SUBDOMAIN.match(str(metadata.get("name", ""))):
        errors.append("metadata.name must be a DNS subdomain")
    _check_strings(metadata.get("labels", {}), "metadata.labels", errors)
    spec = obj.get("spec")
    if not isinstance(spec, dict):
        return [*errors, "spec is required"]
    groups = spec.get("groups", [])
    if not isinstance(groups, list):
        return [*errors, "spec.groups must be a list"]
    names = [g.get("name") if isinstance(g, dict) else None for g in groups]
    if len(set(names)) != len(names):
        errors.append("spec.groups[].name must be unique (a list-map keyed by name)")
    for i, group in enumerate(groups):
        where = f"spec.groups[{i}]"
        if not isinstance(group, dict) or not isinstance(group.get("name"), str) or not group["name"]:
            errors.append(f"{where}.name is required")
            continue
        for key in ("interval", "query_offset"):
            if key in group and not DURATION.match(str(group[key])):
                errors.append(f"{where}.{key} is not a duration")
        for j, rule in enumerate(group.get("rules", [])):
            errors.extend(_rule_errors(rule, f"{where}.rules[{j}]"))
    return errors


def _rule_errors(rule: Any, where: str) -> list[str]:
    if not isinstance(rule, dict):
        return [f"{where} is not an object"]
    errors = []
    if not isinstance(rule.get("expr"), str | int) or rule.get("expr") == "":
        errors.append(f"{where}.expr is required")
    if ("alert" in rule) == ("record" in rule):
        errors.append(f"{where}: exactly one of alert and record")
    for key in ("for", "keep_firing_for"):
        if key in rule and not (isinstance(rule[key], str) and DURATION.match(rule[key])):
            errors.append(f"{where}.{key} is not a duration such as 5m")
    for key in ("labels", "annotations"):
        _check_strings(rule.get(key, {}), f"{where}.{key}", errors)
    return errors


def _check_strings(mapping: Any, where: str, errors: list[str]) -> None:
    if not isinstance(mapping, dict) or not all(isinstance(k, str) and isinstance(v, str)
                                                for k, v in mapping.items()):
        errors.append(f"{where} must map strings to strings")
