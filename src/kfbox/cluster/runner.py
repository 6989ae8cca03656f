"""Running the cluster tools (docker, kind, kubectl, kustomize, helm, git): argv lists, never a shell.

Every external command of the cluster path goes through a :class:`CommandRunner`, so the
installer can be tested without Docker or Kubernetes and ``--dry-run`` is the same code path
as a real install. :class:`SubprocessRunner` runs for real; :class:`RecordingRunner` records
every command and answers from rules (the dry-run, and the tests' fake cluster).

Example::

    runner = SubprocessRunner()
    result = runner.run(Command(("kind", "get", "clusters")))
    result.ok, result.stdout
"""

from __future__ import annotations

import dataclasses
import shlex
import subprocess
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Protocol

NOT_FOUND = 127


@dataclasses.dataclass(frozen=True)
class Command:
    """One program invocation: ``argv`` as a tuple (never a shell string), optional stdin text.

    ``stdin_label`` is what a printed plan shows in place of the stdin text: the render it
    came from (``kustomize build X``) or ``<secret>`` for text that must not be printed.
    """

    argv: tuple[str, ...]
    stdin: str | None = None
    stdin_label: str | None = None
    cwd: Path | None = None
    timeout: float | None = None

    def __post_init__(self) -> None:
        if isinstance(self.argv, str) or not all(isinstance(arg, str) for arg in self.argv):
            raise TypeError(f"Command argv must be a tuple of strings, got {self.argv!r}")

    def display(self) -> str:
        """The command as a person would type it (quoted); a piped render shows as ``render | cmd``."""
        text = shlex.join(self.argv)
        if self.stdin_label:
            text = f"{self.stdin_label} | {text}"
        return text


@dataclasses.dataclass(frozen=True)
class Result:
    returncode: int
    stdout: str = ""
    stderr: str = ""

    @property
    def ok(self) -> bool:
        return self.returncode == 0

    def first_error_line(self) -> str:
        lines = [line.strip() for line in (self.stderr or self.stdout).splitlines() if line.strip()]
        return lines[0] if lines else f"exit status {self.returncode}"


class CommandRunner(Protocol):
    def run(self, command: Command) -> Result: ...


class SubprocessRunner:
    """Runs commands with :func:`subprocess.run` on an argv list (``shell=False``), capturing output."""

    def run(self, command: Command) -> Result:
        if command.cwd is not None and not command.cwd.is_dir():
            # checked first: subprocess reports a missing cwd as a missing program
            return Result(126, "", f"folder {command.cwd} does not exist (needed by {command.argv[0]})")
        try:
            done = subprocess.run(list(command.argv), input=command.stdin, capture_output=True, text=True,
                                  cwd=command.cwd, timeout=command.timeout, check=False, shell=False)
        except FileNotFoundError:
            return Result(NOT_FOUND, "", f"{command.argv[0]}: command not found")
        except subprocess.TimeoutExpired:
            return Result(124, "", f"{command.argv[0]}: timed out after {command.timeout:.0f}s")
        except OSError as exc:
            return Result(126, "", f"{command.argv[0]}: {exc}")
        return Result(done.returncode, done.stdout, done.stderr)

    def run_argv(self, *argv: str, timeout: float = 30) -> Result:
        return self.run(Command(tuple(argv), timeout=timeout))


Rule = tuple[Sequence[str], Result | Callable[[Command], Result]]


class RecordingRunner:
    """Records every command; answers the first rule whose argv prefix matches, else ``default``.

    A real implementation, not a mock: the dry-run uses it with no rules (every command
    "succeeds" with empty output), and the tests use it as a fake cluster with canned answers.
    """

    def __init__(self, rules: Sequence[Rule] = (), default: Result | None = None) -> None:
        self.rules = list(rules)
        self.default = default or Result(0)
        self.commands: list[Command] = []

    def answer(self, prefix: Sequence[str], result: Result | Callable[[Command], Result]) -> None:
        """Add a rule in front of the existing ones (the newest rule wins)."""
        self.rules.insert(0, (tuple(prefix), result))

    def run(self, command: Command) -> Result:
        self.commands.append(command)
        for prefix, result in self.rules:
            if tuple(command.argv[:len(prefix)]) == tuple(prefix):
                return result(command) if callable(result) else result
        return self.default

    def lines(self) -> list[str]:
        return [command.display() for command in self.commands]
