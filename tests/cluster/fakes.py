"""A fake Kind + Kubernetes for the step engine: a RecordingRunner with a little state.

There is no Docker engine or Kubernetes on the test machines; this fake answers the few
commands whose output the engine reads (git rev-parse, kind get clusters, renders) and lets
a test make any command fail N times or raise (an interruption).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from kfbox.cluster.plan import PlanOptions
from kfbox.cluster.release import release
from kfbox.cluster.runner import Command, RecordingRunner, Result

COMMIT = release("26.03").commit


class FakeCluster(RecordingRunner):
    def __init__(self, cluster: str = "kubeflow", *, checkout: bool = False, exists: bool = False) -> None:
        super().__init__()
        self.cluster = cluster
        self.cloned = checkout
        self.exists = exists
        self.failures: list[tuple[Callable[[Command], bool], list[Result]]] = []
        self.answer(["git", "-C"], lambda c: Result(0, COMMIT + "\n") if self.cloned
                    else Result(128, "", "fatal: not a git repository"))
        self.answer(["git", "-c"], self._clone)
        self.answer(["kind", "get", "clusters"], lambda c: Result(0, f"{self.cluster}\n" if self.exists else ""))
        self.answer(["kind", "create"], self._create)
        self.answer(["kubectl", "kustomize"], lambda c: Result(0, f"# rendered {c.argv[-1]}\n"))

    def _clone(self, command: Command) -> Result:
        self.cloned = True
        return Result(0)

    def _create(self, command: Command) -> Result:
        self.exists = True
        return Result(0)

    def fail(self, matches: Callable[[Command], bool], *results: Result) -> None:
        """The next len(results) commands that match get these results, in order."""
        self.failures.append((matches, list(results)))

    def run(self, command: Command) -> Result:
        for matches, results in self.failures:
            if results and matches(command):
                self.commands.append(command)
                outcome = results.pop(0)
                if isinstance(outcome, BaseException):
                    raise outcome
                return outcome
        return super().run(command)


def options(home: Path, **kw: object) -> PlanOptions:
    values: dict[str, object] = {"name": "kubeflow", "home": home,
                                 "components": ("pipelines", "kserve", "model-registry")}
    values.update(kw)
    return PlanOptions(**values)  # type: ignore[arg-type]


def has(*words: str) -> Callable[[Command], bool]:
    """Matches a command whose argv contains every word (as one argument each)."""
    return lambda command: all(word in command.argv for word in words)
