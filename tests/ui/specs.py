"""Pipeline specs for the dashboard's tests, as plain data (no server, no compiler): importing this
keeps an in-process test in the in-process tier."""

from __future__ import annotations

from typing import Any


def wide_spec(tasks: int = 600, width: int = 20) -> dict[str, Any]:
    """A compiled-IR-shaped pipeline of ``tasks`` tasks in rows of ``width``, each waiting for the task
    above it, plus one loop and one condition group. Its executor is a container image, so a run of
    it is refused at creation (no container runtime) and kept FAILED: the graph is all that is drawn."""
    names = [f"step-{i}" for i in range(tasks)]
    dag_tasks: dict[str, Any] = {
        name: {"taskInfo": {"name": name}, "componentRef": {"name": "comp-step"},
               **({"dependentTasks": [names[i - width]]} if i >= width else {})}
        for i, name in enumerate(names)}
    dag_tasks["for-loop-1"] = {"taskInfo": {"name": "for-loop-1"}, "componentRef": {"name": "comp-for-loop-1"},
                               "dependentTasks": [names[-1]],
                               "parameterIterator": {"itemInput": "item", "items": {"raw": "[1, 2, 3]"}}}
    dag_tasks["condition-2"] = {"taskInfo": {"name": "condition-2"}, "componentRef": {"name": "comp-condition-2"},
                                "dependentTasks": [names[-1]], "triggerPolicy": {"condition": "1 == 1"}}
    inner = {"tasks": {"inner": {"taskInfo": {"name": "inner"}, "componentRef": {"name": "comp-step"}}}}
    return {"pipelineInfo": {"name": f"wide-{tasks}"}, "schemaVersion": "2.1.0", "sdkVersion": "kfp-2.17.3",
            "root": {"dag": {"tasks": dag_tasks}},
            "components": {"comp-step": {"executorLabel": "exec-step"},
                           "comp-for-loop-1": {"dag": inner}, "comp-condition-2": {"dag": inner}},
            "deploymentSpec": {"executors": {"exec-step": {"container": {"image": "alpine:3",
                                                                          "command": ["echo", "hi"]}}}}}
