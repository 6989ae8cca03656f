"""Corrections to kfp.local 2.17 that kfbox applies in the run worker, until upstream has them.

Each fix is a small wrapper around one upstream function, kept here so that it is easy to
see what kfbox changes in the engine and easy to drop when upstream is fixed.

* ``create_parameter_loop_iteration_task_spec`` replaces *every* upstream task output that
  a ``dsl.ParallelFor`` body consumes with the loop item. A body task reading a value made
  before the loop (``register(k=k, scaler=normalise.output)``) would silently get ``k``.
  The wrapper restores those inputs; only the loop's own items stay replaced.
"""

from __future__ import annotations

from typing import Any

_applied = False


def apply() -> None:
    global _applied
    if _applied:
        return
    from kfp.local.orchestrator import task_spec_utils

    original = task_spec_utils.create_parameter_loop_iteration_task_spec

    def iteration_task_spec(original_task_spec: Any, loop_item: Any, loop_task_name: str) -> Any:
        spec = original(original_task_spec, loop_item, loop_task_name)
        items_input = original_task_spec.parameter_iterator.items.input_parameter
        for name, source in original_task_spec.inputs.parameters.items():
            if source.HasField("task_output_parameter") and name != items_input:
                spec.inputs.parameters[name].CopyFrom(source)
        return spec

    task_spec_utils.create_parameter_loop_iteration_task_spec = iteration_task_spec
    _applied = True
