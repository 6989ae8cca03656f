"""The vocabulary of an install: a :class:`Step` is a list of :class:`Action` s with a probe.

Actions are fully concrete :class:`~kfbox.cluster.runner.Command` s (argv lists), so the
dry-run prints exactly what a real run executes and tests assert on the same objects.

* ``apply``: a render (``kustomize build DIR``) piped into ``kubectl apply --server-side
  --force-conflicts`` (the stdin of the second command is the stdout of the first);
* ``run``: one command that must succeed;
* ``wait``: a wait point (``kubectl wait``/``rollout status``); a failure retries the step;
* ``verify``: a command whose output must equal ``expect`` (a pinned commit); no retry;
* ``remove``: delete a partial folder kfbox owns (an interrupted clone).

Example::

    kube = Kube(context="kind-kubeflow", renderer=("kubectl", "kustomize"), checkout=Path("..."))
    Step("cert-manager", "cert-manager", needs=("kubeflow-namespace",),
         actions=(kube.apply("common/cert-manager/base"),
                  kube.wait("pod", "-l", "app=webhook", "-n", "cert-manager", condition="Ready")))
"""

from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path

from kfbox.cluster.runner import Command

FIELD_MANAGER = "kfbox"


@dataclasses.dataclass(frozen=True)
class Action:
    kind: str
    command: Command
    render: Command | None = None
    expect: str | None = None
    path: Path | None = None
    tolerate: bool = False
    """A first-pass apply: custom resources may be refused until their CRDs and webhooks are up."""

    def display(self) -> str:
        if self.kind == "remove":
            return f"rm -rf {self.path}  # only if a previous clone was interrupted"
        text = self.command.display()
        if self.render is not None:
            text = f"{self.render.display()} | {text}"
        if self.kind == "verify":
            text += f"  # must print {self.expect}"
        if self.tolerate:
            text += "  # first pass: CRs may be refused until their CRDs/webhooks are up"
        return text


@dataclasses.dataclass(frozen=True)
class Probe:
    """A read-only command that says whether a step's result already exists (outside the state file)."""

    command: Command
    line: str

    def satisfied(self, stdout: str) -> bool:
        return self.line in (line.strip() for line in stdout.splitlines())


@dataclasses.dataclass(frozen=True)
class Step:
    name: str
    title: str
    needs: tuple[str, ...] = ()
    actions: tuple[Action, ...] = ()
    probe: Probe | None = None
    attempts: int = 3

    def fingerprint(self) -> str:
        """What the step does, as text; a changed plan (other ref, other components) re-runs the step."""
        # the render's folder, not its program: switching kubectl kustomize <-> kustomize re-runs nothing
        text = "\n".join(f"{action.render.argv[-1] if action.render else ''} {action.command.display()}"
                         for action in self.actions)
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def waits(self) -> list[Action]:
        return [action for action in self.actions if action.kind == "wait"]


@dataclasses.dataclass(frozen=True)
class Kube:
    """Builds kubectl/kustomize commands for one cluster: always ``--context`` (never the current one)."""

    context: str
    renderer: tuple[str, ...]
    checkout: Path

    def kubectl(self, *args: str, stdin: str | None = None, stdin_label: str | None = None,
                timeout: float | None = 300) -> Command:
        return Command(("kubectl", "--context", self.context, *args), stdin=stdin, stdin_label=stdin_label,
                       cwd=self.checkout, timeout=timeout)

    def _apply_command(self, namespace: str | None) -> Command:
        ns = ("-n", namespace) if namespace else ()
        return self.kubectl("apply", "--server-side", "--force-conflicts", f"--field-manager={FIELD_MANAGER}",
                            *ns, "-f", "-")

    def apply(self, path: str, namespace: str | None = None, first_pass: bool = False) -> Action:
        """Render a kustomize folder of the pinned checkout and server-side apply it."""
        render = Command((*self.renderer, path), cwd=self.checkout, timeout=300)
        return Action("apply", self._apply_command(namespace), render=render, tolerate=first_pass)

    def apply_text(self, text: str, label: str, namespace: str | None = None) -> Action:
        """Server-side apply YAML kfbox generated (``label`` is what a printed plan shows instead)."""
        apply = self._apply_command(namespace)
        return Action("apply", dataclasses.replace(apply, stdin=text, stdin_label=label))

    def apply_file(self, path: str) -> Action:
        return Action("run", self.kubectl("apply", "--server-side", "--force-conflicts",
                                          f"--field-manager={FIELD_MANAGER}", "-f", path))

    def run(self, *args: str) -> Action:
        return Action("run", self.kubectl(*args))

    def wait(self, *target: str, condition: str = "Available", timeout: int = 180) -> Action:
        """``kubectl wait --for=condition=X`` (or ``--for=create``/``jsonpath=`` when given as ``condition``)."""
        for_ = condition if condition.startswith(("create", "delete", "jsonpath=")) else f"condition={condition}"
        return Action("wait", self.kubectl("wait", f"--for={for_}", *target, f"--timeout={timeout}s",
                                           timeout=timeout + 30))

    def rollout(self, target: str, namespace: str, timeout: int = 180) -> Action:
        return Action("wait", self.kubectl("rollout", "status", target, "-n", namespace, f"--timeout={timeout}s",
                                           timeout=timeout + 30))

    def available(self, namespace: str, *deployments: str, timeout: int = 180) -> list[Action]:
        return [self.wait(f"deployment/{name}", "-n", namespace, timeout=timeout) for name in deployments]

    def established(self, crd: str, timeout: int = 60) -> Action:
        return self.wait(f"crd/{crd}", condition="established", timeout=timeout)

    def endpoints_have_pod(self, namespace: str, *selector: str, timeout: int = 180) -> Action:
        """A webhook serves only when its Service has a Pod behind it (cert-manager#2004 ordering)."""
        return self.wait("endpoints", *selector, "-n", namespace,
                         condition="jsonpath={.subsets[0].addresses[0].targetRef.kind}=Pod", timeout=timeout)
