"""``kfbox cluster doctor|up|status|expose|creds|down``: Kubeflow on Kind, with upstream's workarounds built in.

Example::

    kfbox cluster doctor
    kfbox cluster up --dry-run                  # every command, in order, with its waits
    kfbox cluster up --components pipelines,kserve,model-registry
    kfbox cluster expose dashboard              # http://127.0.0.1:8080, user@example.com
    kfbox cluster creds s3
    kfbox cluster down
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from kfbox.cli.options import HomeOption, OutputOption
from kfbox.cli.output import Output, console, err_console, print_json, print_pairs, print_table
from kfbox.cluster import access, dex
from kfbox.cluster.doctor import FAIL, OK, WARN, failed, run_checks
from kfbox.cluster.engine import Outcome, plan_text, run_plan
from kfbox.cluster.health import step_health
from kfbox.cluster.names import check_cluster_name
from kfbox.cluster.plan import DEFAULT_COMPONENTS, PROFILE_NAMESPACE, PlanOptions, build_plan, parse_components
from kfbox.cluster.release import DEFAULT_REF, release
from kfbox.cluster.runner import Command, SubprocessRunner
from kfbox.cluster.state import InstallState, cluster_dir
from kfbox.cluster.steps import Action, Step
from kfbox.config import default_home
from kfbox.errors import InvalidInput, Unavailable

cluster_app = typer.Typer(help="Install Kubeflow on Kind (doctor, up, status, expose, creds, down).",
                          no_args_is_help=True)
NameOption = Annotated[str, typer.Option("--name", help="Kind cluster name (a DNS-1123 label).")]
RefOption = Annotated[str, typer.Option("--manifests-ref", help="Pinned release of kubeflow/community-distribution.")]
_STYLE = {OK: "[green]ok[/]", WARN: "[yellow]warn[/]", FAIL: "[red]FAIL[/]"}


def register(app: typer.Typer) -> None:
    app.add_typer(cluster_app, name="cluster")


@cluster_app.command()
def doctor(manifests_ref: RefOption = DEFAULT_REF, output: OutputOption = Output.table) -> None:
    """Check this machine for Kubeflow on Kind: engine, tools, inotify, memory, CPUs, disk, cgroup, ports."""
    rel = release(manifests_ref)
    checks = run_checks(SubprocessRunner(), rel)
    if output is Output.json:
        print_json({"manifests_ref": rel.ref, "ok": not failed(checks), "checks": [c.as_dict() for c in checks]})
    else:
        print_table(f"kfbox cluster doctor (Kubeflow {rel.ref})", ["CHECK", "STATUS", "FOUND", "NEEDED"],
                    [[c.name, _STYLE[c.status], c.found, c.needed] for c in checks])
        for check in checks:
            if check.fix:
                colour = "red" if check.status == FAIL else "yellow"
                console.print(f"[{colour}]{check.name}[/]: {check.fix}", highlight=False, soft_wrap=True)
        bad = failed(checks)
        if bad:
            console.print(f"[red]{len(bad)} check(s) failed[/]: {', '.join(c.name for c in bad)}. "
                          "Fix them, then run: kfbox cluster doctor")
        else:
            console.print("[green]Ready for:[/] kfbox cluster up")
    if failed(checks):
        raise typer.Exit(1)



class RichReporter:
    """One line per step as it finishes; a spinner naming the command running now."""

    def __init__(self) -> None:
        self.status = console.status("")

    def step_started(self, step: Step, index: int, total: int) -> None:
        self.prefix = f"[{index}/{total}] {step.title}"
        self.status.update(self.prefix)
        self.status.start()

    def action_started(self, step: Step, action: Action) -> None:
        shown = action.display()
        self.status.update(f"{self.prefix}: [dim]{shown[:110]}{'...' if len(shown) > 110 else ''}[/]")

    def retrying(self, step: Step, attempt: int, delay: float, error: str) -> None:
        console.print(f"  [yellow]retry[/] {step.name} in {delay:.0f}s (attempt {attempt} failed: {error})",
                      highlight=False)

    def step_finished(self, step: Step, outcome: Outcome) -> None:
        self.status.stop()
        note = {"skipped": "[dim]finished before, skipped[/]", "found": "[dim]already there[/]",
                "applied": f"[green]done[/]{f' after {outcome.attempts} attempts' if outcome.attempts > 1 else ''}"}
        console.print(f"[green]✓[/] {self.prefix}: {note[outcome.status]}", highlight=False)


def _home(home: Path | None) -> Path:
    return (home or default_home()).expanduser()


def _renderer(runner: SubprocessRunner) -> tuple[str, ...]:
    """Standalone kustomize (what upstream CI pins) when installed, else kubectl's embedded one."""
    if runner.run(Command(("kustomize", "version"), timeout=30)).ok:
        return ("kustomize", "build")
    return ("kubectl", "kustomize")


def _dex_password(password: str | None, dry_run: bool) -> str | None:
    if password is None and not dry_run and sys.stdin.isatty():
        password = typer.prompt(f"Password for {dex.USER} (Enter keeps upstream's default)", default="",
                                hide_input=True, show_default=False) or None
    if password is None or password == dex.DEFAULT_PASSWORD:
        err_console.print(f"[yellow]Warning:[/] {dex.USER} keeps upstream's default password "
                          f"{dex.DEFAULT_PASSWORD!r}; anyone who reaches the gateway can log in. "
                          "Set one with --password or KFBOX_DEX_PASSWORD.", highlight=False)
        return None
    if len(password) < dex.MIN_LENGTH:
        raise InvalidInput(f"The Dex password must have at least {dex.MIN_LENGTH} characters.")
    return password


@cluster_app.command()
def up(
    name: NameOption = "kubeflow",
    manifests_ref: RefOption = DEFAULT_REF,
    components: Annotated[str, typer.Option("--components", help="Comma-separated: pipelines,kserve,model-registry,monitoring.")] = ",".join(DEFAULT_COMPONENTS),
    password: Annotated[str | None, typer.Option("--password", envvar="KFBOX_DEX_PASSWORD", help="Password of user@example.com (Dex). Prompted for when omitted on a terminal.", show_default=False)] = None,
    workers: Annotated[int, typer.Option("--workers", min=0, max=8, help="Kind worker nodes.")] = 2,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print every command in order, with its wait points; run nothing.")] = False,
    redo: Annotated[list[str] | None, typer.Option("--redo", help="Run this step again even if it finished (repeatable).", show_default=False)] = None,
    until: Annotated[str | None, typer.Option("--until", help="Stop after this step (e.g. cluster: only the kind cluster).", show_default=False)] = None,
    home: HomeOption = None,
) -> None:
    """Install Kubeflow on Kind: upstream CI's order and waits, server-side apply, retries; re-runs resume."""
    home = _home(home)
    runner = SubprocessRunner()
    chosen = parse_components(components)
    secret = _dex_password(password, dry_run)
    opts = PlanOptions(name=check_cluster_name(name), home=home, manifests_ref=release(manifests_ref).ref,
                       components=chosen, workers=workers,
                       renderer=("kubectl", "kustomize") if dry_run else _renderer(runner),
                       dex_password_hash=dex.hash_password(secret) if secret else None)
    steps = build_plan(opts)
    names = [step.name for step in steps]
    for step_name in [*(redo or ()), *([until] if until else [])]:
        if step_name not in names:
            raise InvalidInput(f"No step {step_name!r} in this plan. Steps: {', '.join(names)}")
    if until:
        steps = steps[:names.index(until) + 1]
    state = InstallState.load(home, name)
    if dry_run:
        console.print(plan_text(steps, state), highlight=False, markup=False, soft_wrap=True)
        return
    redo_steps = set(redo or ())
    if secret:
        if dex.load_password(cluster_dir(home, name))[0] != secret and state.steps.get("dex"):
            redo_steps.add("dex")  # a new password on an installed cluster: set it now
        dex.save_password(cluster_dir(home, name), secret)
    state.info.update({"manifests_ref": opts.manifests_ref, "components": list(chosen), "context": opts.context})
    outcomes = run_plan(steps, runner, state, redo=redo_steps, reporter=RichReporter())
    applied = sum(1 for o in outcomes if o.status == "applied")
    console.print(f"[green]Kubeflow {opts.manifests_ref} is up[/] on kind cluster {name!r} "
                  f"({applied} step(s) applied, {len(outcomes) - applied} already done). "
                  f"Next: kfbox cluster expose dashboard, then http://localhost:8080 as {dex.USER}.")


@cluster_app.command()
def status(name: NameOption = "kubeflow", home: HomeOption = None, output: OutputOption = Output.table) -> None:
    """Installed steps (from the state file) and whether their Deployments are Available now."""
    home = _home(home)
    state = InstallState.load(home, check_cluster_name(name))
    if not state.steps:
        raise Unavailable(f"No install of cluster {name!r} recorded in {home}. Start one with: kfbox cluster up")
    runner = SubprocessRunner()
    opts = PlanOptions(name=name, home=home, manifests_ref=state.info.get("manifests_ref", DEFAULT_REF),
                       components=tuple(state.info.get("components", DEFAULT_COMPONENTS)))
    steps = build_plan(opts)
    result = runner.run(Command(("kubectl", "--context", opts.context, "get", "deployments", "-A", "-o", "json"),
                                timeout=60))
    live = json.loads(result.stdout) if result.ok else None
    rows = []
    for step, health in zip(steps, step_health(steps, live or {}), strict=True):
        record = state.steps.get(step.name, {})
        rows.append({"step": step.name, "installed": record.get("finished_at", ""),
                     "healthy": None if live is None else health["healthy"], "missing": health["missing"]})
    forwards = access.running_forwards(home, name)
    if output is Output.json:
        print_json({"cluster": name, "reachable": live is not None, "steps": rows, "forwards": forwards})
        return
    if live is None:
        console.print(f"[red]Cluster {name!r} is not reachable[/]: {result.first_error_line()}")
    print_table(f"Kubeflow on kind {name!r}", ["STEP", "INSTALLED", "HEALTHY", "NOT AVAILABLE"],
                [[r["step"], r["installed"] or "-", {True: "yes", False: "NO", None: "?"}[r["healthy"]],
                  ", ".join(r["missing"])] for r in rows])
    for service_name, record in forwards.items():
        console.print(f"{service_name}: {record['url']} (pid {record['pid']})")


@cluster_app.command()
def expose(
    service: Annotated[str, typer.Argument(help="dashboard | registry | s3 | grafana | prometheus", show_default=False)],
    name: NameOption = "kubeflow",
    port: Annotated[int | None, typer.Option("--port", help="Local port (default: 8080, 8081, 8333, 3000, 9090).", show_default=False)] = None,
    home: HomeOption = None,
) -> None:
    """Port-forward a service to 127.0.0.1 in the background (stopped by kfbox cluster down)."""
    svc = access.service(service)
    record = access.start_forward(_home(home), check_cluster_name(name), svc, port)
    console.print(f"{svc.what}: {record['url']}{svc.path} (pid {record['pid']})", highlight=False)


@cluster_app.command()
def creds(
    service: Annotated[str, typer.Argument(help="dex | s3 | grafana | token", show_default=False)],
    name: NameOption = "kubeflow", home: HomeOption = None, output: OutputOption = Output.table,
) -> None:
    """Credentials from their Secrets: Dex login, SeaweedFS S3 keys, Grafana admin, a gateway token."""
    home = _home(home)
    context = f"kind-{check_cluster_name(name)}"
    runner = SubprocessRunner()
    pairs: list[tuple[str, str]]
    if service == "dex":
        password, default = dex.load_password(cluster_dir(home, name))
        pairs = [("user", dex.USER), ("password", password + (" (upstream default)" if default else "")),
                 ("url", "http://localhost:8080 (kfbox cluster expose dashboard)")]
    elif service == "s3":
        keys = access.read_secret(runner, context, PROFILE_NAMESPACE, "mlpipeline-minio-artifact")
        pairs = [("endpoint", "http://localhost:8333 (kfbox cluster expose s3)"), ("bucket", "mlpipeline"),
                 ("access key", keys.get("accesskey", "")), ("secret key", keys.get("secretkey", "")),
                 ("scope", f"profile {PROFILE_NAMESPACE}")]
    elif service == "grafana":
        from kfbox.cluster import monitoring

        keys = access.read_secret(runner, context, monitoring.NAMESPACE, monitoring.GRAFANA_SECRET)
        pairs = [("user", keys.get("admin-user", "admin")), ("password", keys.get("admin-password", "")),
                 ("url", "http://localhost:3000 (kfbox cluster expose grafana)")]
    elif service == "token":
        pairs = [("token", access.create_token(runner, context)),
                 ("use", "Authorization: Bearer <token> at http://localhost:8080 (valid 24h)")]
    else:
        raise InvalidInput(f"Unknown service {service!r} for creds. Choose from: dex, s3, grafana, token")
    if output is Output.json:
        print_json(dict(pairs))
    else:
        print_pairs(f"{service} credentials", pairs)


@cluster_app.command()
def down(
    name: NameOption = "kubeflow", home: HomeOption = None,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
) -> None:
    """Delete the kind cluster, stop kfbox's port-forwards, forget the install state."""
    home = _home(home)
    check_cluster_name(name)
    if not yes and sys.stdin.isatty():
        typer.confirm(f"Delete kind cluster {name!r} and everything in it?", abort=True)
    stopped = access.stop_forwards(home, name)
    result = SubprocessRunner().run(Command(("kind", "delete", "cluster", "--name", name), timeout=300))
    if not result.ok:
        raise Unavailable(f"kind delete cluster --name {name} failed: {result.first_error_line()}")
    (cluster_dir(home, name) / "state.json").unlink(missing_ok=True)
    console.print(f"Deleted kind cluster {name!r}; stopped {len(stopped)} port-forward(s).")
