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

from typing import Annotated

import typer

from kfbox.cli.options import OutputOption
from kfbox.cli.output import Output, console, print_json, print_table
from kfbox.cluster.doctor import FAIL, OK, WARN, failed, run_checks
from kfbox.cluster.release import DEFAULT_REF, release
from kfbox.cluster.runner import SubprocessRunner

cluster_app = typer.Typer(help="Install Kubeflow on Kind (doctor, up, status, expose, creds, down).",
                          no_args_is_help=True)
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

