"""Runs an install plan: each step's actions in order, retries with backoff, state recorded per step.

* a step recorded in the state file with the same fingerprint is skipped (idempotent re-run);
* a step whose probe finds its result (the kind cluster exists, the checkout is at the
  pinned commit) is recorded as ``found`` without running;
* a failed action restarts its step after ``backoff * 2**(attempt-1)`` seconds (the
  upstream README's "retry until CRDs are ready" loop, bounded); a failed ``verify`` is final;
* an interrupted run (Ctrl-C, a crash) leaves finished steps recorded: the next run resumes
  at the step that was running.

Example::

    outcomes = run_plan(build_plan(opts), SubprocessRunner(), InstallState.load(home, "kubeflow"))
"""

from __future__ import annotations

import dataclasses
import shutil
import time
from collections.abc import Callable, Collection, Sequence
from typing import Protocol

from kfbox.cluster.runner import NOT_FOUND, Command, CommandRunner, Result
from kfbox.cluster.state import InstallState
from kfbox.cluster.steps import Action, Step
from kfbox.errors import KfboxError, Unavailable

SKIPPED, FOUND, APPLIED = "skipped", "found", "applied"


@dataclasses.dataclass(frozen=True)
class Outcome:
    step: str
    status: str
    attempts: int = 0


class ActionFailed(Exception):
    def __init__(self, action: Action, result: Result, *, final: bool = False, detail: str | None = None) -> None:
        super().__init__(detail or result.first_error_line())
        self.action = action
        self.result = result
        self.final = final
        self.detail = detail or result.first_error_line()


class Reporter(Protocol):
    def step_started(self, step: Step, index: int, total: int) -> None: ...
    def action_started(self, step: Step, action: Action) -> None: ...
    def retrying(self, step: Step, attempt: int, delay: float, error: str) -> None: ...
    def step_finished(self, step: Step, outcome: Outcome) -> None: ...


class SilentReporter:
    def step_started(self, step: Step, index: int, total: int) -> None:
        pass

    def action_started(self, step: Step, action: Action) -> None:
        pass

    def retrying(self, step: Step, attempt: int, delay: float, error: str) -> None:
        pass

    def step_finished(self, step: Step, outcome: Outcome) -> None:
        pass


def execute(action: Action, runner: CommandRunner) -> None:
    """One action for real; raises :class:`ActionFailed` with the command's own error."""
    if action.kind == "remove":
        _remove_partial_checkout(action, runner)
        return
    command = action.command
    if action.render is not None:
        rendered = runner.run(action.render)
        if not rendered.ok:
            raise ActionFailed(action, rendered)
        command = dataclasses.replace(command, stdin=rendered.stdout)
    result = runner.run(command)
    if action.kind == "verify":
        got = result.stdout.strip()
        if not result.ok or got != action.expect:
            raise ActionFailed(action, result, final=True,
                               detail=f"expected {action.expect}, got {got or result.first_error_line()!r}")
        return
    if not result.ok and not action.tolerate:
        raise ActionFailed(action, result)


def _remove_partial_checkout(action: Action, runner: CommandRunner) -> None:
    """Delete what an interrupted clone left; refuse to touch a complete checkout at another commit."""
    path = action.path
    if path is None or not path.is_dir() or "cluster" not in path.parts:
        return
    head = runner.run(Command(("git", "-C", str(path), "rev-parse", "HEAD"), timeout=30))
    if head.ok:
        raise ActionFailed(action, head, final=True,
                           detail=f"{path} is a checkout at {head.stdout.strip()[:12]}, not the pinned commit; "
                                  f"remove it (rm -rf {path}) and run again")
    shutil.rmtree(path)


def _probe_found(step: Step, runner: CommandRunner) -> bool:
    if step.probe is None:
        return False
    result = runner.run(step.probe.command)
    return result.ok and step.probe.satisfied(result.stdout)


def run_step(step: Step, runner: CommandRunner, reporter: Reporter, sleep: Callable[[float], None],
             backoff: float) -> int:
    """Run one step until it passes or its attempts run out; returns the attempts it took."""
    for attempt in range(1, step.attempts + 1):
        try:
            for action in step.actions:
                reporter.action_started(step, action)
                execute(action, runner)
            return attempt
        except ActionFailed as exc:
            missing_tool = exc.result.returncode == NOT_FOUND
            if exc.final or missing_tool or attempt == step.attempts:
                hint = "" if exc.final else f" (after {attempt} attempt{'s' * (attempt > 1)})"
                fix = "Install it (see: kfbox cluster doctor)" if missing_tool else "Fix the cause"
                raise Unavailable(
                    f"Step {step.name!r} failed{hint} at: {exc.action.display()}: {exc.detail}. "
                    f"{fix}, then run kfbox cluster up again: finished steps are skipped.") from None
            delay = backoff * 2 ** (attempt - 1)
            reporter.retrying(step, attempt, delay, exc.detail)
            sleep(delay)
    raise KfboxError(f"Step {step.name!r} has no attempts")  # attempts < 1: a programming error


def run_plan(steps: Sequence[Step], runner: CommandRunner, state: InstallState, *, redo: Collection[str] = (),
             reporter: Reporter | None = None, sleep: Callable[[float], None] = time.sleep,
             backoff: float = 10.0) -> list[Outcome]:
    reporter = reporter or SilentReporter()
    outcomes = []
    for index, step in enumerate(steps, 1):
        reporter.step_started(step, index, len(steps))
        fingerprint = step.fingerprint()
        if step.name not in redo and state.finished(step.name, fingerprint):
            outcome = Outcome(step.name, SKIPPED)
        elif step.name not in redo and _probe_found(step, runner):
            state.record(step.name, fingerprint, FOUND)
            outcome = Outcome(step.name, FOUND)
        else:
            attempts = run_step(step, runner, reporter, sleep, backoff)
            state.record(step.name, fingerprint, APPLIED)
            outcome = Outcome(step.name, APPLIED, attempts)
        reporter.step_finished(step, outcome)
        outcomes.append(outcome)
    return outcomes


def plan_text(steps: Sequence[Step], state: InstallState | None = None) -> str:
    """The dry-run: every step with its commands in order; wait points marked; finished steps noted."""
    lines = []
    for index, step in enumerate(steps, 1):
        done = state is not None and state.finished(step.name, step.fingerprint())
        needs = f"  (after {', '.join(step.needs)})" if step.needs else ""
        lines.append(f"# {index}. {step.name}: {step.title}{needs}{'  [finished: skipped]' if done else ''}")
        if step.probe is not None:
            lines.append(f"#    skipped if `{step.probe.command.display()}` prints {step.probe.line}")
        for action in step.actions:
            marker = "wait " if action.kind == "wait" else "     "
            lines.append(f"{marker}{action.display()}")
        lines.append("")
    waits = sum(len(step.waits()) for step in steps)
    commands = sum(len(step.actions) for step in steps)
    lines.append(f"# {len(steps)} steps, {commands} commands, {waits} wait points")
    return "\n".join(lines)
