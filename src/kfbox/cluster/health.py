"""``kfbox cluster status``: which installed steps are healthy, from one ``kubectl get deployments -A``.

Pure functions of the JSON kubectl prints, so they are tested with fixtures.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from kfbox.cluster.steps import Step


def available_deployments(deployments: dict[str, Any]) -> set[tuple[str, str]]:
    """(namespace, name) of every Deployment whose Available condition is True."""
    found = set()
    for item in deployments.get("items", []):
        conditions = item.get("status", {}).get("conditions", [])
        if any(c.get("type") == "Available" and c.get("status") == "True" for c in conditions):
            found.add((item["metadata"]["namespace"], item["metadata"]["name"]))
    return found


def expected_deployments(step: Step) -> list[tuple[str, str]]:
    """The Deployments a step waits to be Available (``wait ... deployment/X -n NS``)."""
    expected = []
    for action in step.waits():
        argv = action.command.argv
        target = next((arg for arg in argv if arg.startswith("deployment/")), None)
        if target and "-n" in argv:
            expected.append((argv[argv.index("-n") + 1], target.split("/", 1)[1]))
    return expected


def step_health(steps: Iterable[Step], deployments: dict[str, Any]) -> list[dict[str, Any]]:
    available = available_deployments(deployments)
    rows = []
    for step in steps:
        expected = expected_deployments(step)
        missing = [f"{ns}/{name}" for ns, name in expected if (ns, name) not in available]
        rows.append({"step": step.name, "deployments": len(expected), "missing": missing,
                     "healthy": not missing})
    return rows
