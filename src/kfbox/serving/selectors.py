"""``labelSelector`` and ``fieldSelector`` as the Kubernetes API reads them.

Label selectors: ``a=b``, ``a==b``, ``a!=b``, ``a in (x,y)``, ``a notin (x,y)``, ``a`` (exists)
and ``!a`` (does not exist), joined by commas. Field selectors: ``metadata.name`` and
``metadata.namespace`` with ``=``, ``==`` or ``!=``.

Example::

    matches = label_selector("team=a,tier in (gold,silver)")
    matches({"team": "a", "tier": "gold"})   # True
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from kfbox.serving.kube_api import bad_request

Matcher = Callable[[dict[str, Any]], bool]
_SET = re.compile(r"^\s*(!?)\s*([A-Za-z0-9./_-]+)\s*(?:(in|notin)\s*\(([^)]*)\))?\s*$")
_EQ = re.compile(r"^\s*([A-Za-z0-9./_-]+)\s*(==|=|!=)\s*([A-Za-z0-9._-]*)\s*$")
FIELDS = ("metadata.name", "metadata.namespace")


def _split(selector: str) -> list[str]:
    """Split on commas outside parentheses."""
    parts, depth, current = [], 0, ""
    for char in selector:
        depth += (char == "(") - (char == ")")
        if char == "," and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += char
    parts.append(current)
    return [p for p in parts if p.strip()]


def _requirement(text: str) -> Callable[[dict[str, str]], bool]:
    eq = _EQ.match(text)
    if eq:
        key, op, value = eq.groups()
        if op == "!=":
            return lambda labels: labels.get(key) != value
        return lambda labels: labels.get(key) == value
    match = _SET.match(text)
    if not match:
        raise bad_request(f"unable to parse requirement {text.strip()!r} of the label selector; write e.g. "
                          "'team=a', 'team!=b', 'tier in (gold,silver)', 'team' or '!team'.")
    negate, key, op, values = match.groups()
    if op:
        if negate:
            raise bad_request(f"unable to parse requirement {text.strip()!r}: '!' goes with a key alone.")
        wanted = {v.strip() for v in values.split(",") if v.strip()}
        if op == "in":
            return lambda labels: labels.get(key) in wanted
        return lambda labels: labels.get(key) not in wanted
    if negate:
        return lambda labels: key not in labels
    return lambda labels: key in labels


def label_selector(selector: str | None) -> Matcher:
    """A predicate on an object's ``metadata.labels``."""
    requirements = [_requirement(part) for part in _split(selector or "")]

    def matches(obj: dict[str, Any]) -> bool:
        labels = (obj.get("metadata") or {}).get("labels") or {}
        return all(req(labels) for req in requirements)
    return matches


def field_selector(selector: str | None, fields: tuple[str, ...] = FIELDS) -> Matcher:
    """A predicate on ``metadata.name`` / ``metadata.namespace``, or on the kind's own ``fields`` (dotted paths)."""
    checks = []
    for part in _split(selector or ""):
        match = _EQ.match(part)
        if not match or match.group(1) not in fields:
            raise bad_request(f"field selector {part.strip()!r} is not supported; use "
                              f"{' or '.join(fields)} with =, == or !=.")
        field, op, value = match.groups()
        checks.append((field.split("."), op != "!=", value))

    def matches(obj: dict[str, Any]) -> bool:
        return all((_at(obj, path) == value) == equal for path, equal, value in checks)
    return matches


def _at(obj: dict[str, Any], path: list[str]) -> Any:
    """The value at a dotted path (``involvedObject.name``); None where a step is missing."""
    value: Any = obj
    for step in path:
        value = value.get(step) if isinstance(value, dict) else None
    return value
