"""``kfbox run``, ``kfbox compile`` and ``kfbox runs list|get|logs|cancel``: thin over the KFP API.

Example::

    kfbox run pipelines/train.py:training -p epochs=3 --watch
    kfbox run train.yaml --context kind     # same file, a Kubeflow cluster (kfbox context add kind ...)
    kfbox runs logs RUN_ID --task train
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Any

import typer

from kfbox.apis import KFP as API
from kfbox.cli.options import ContextOption, HomeOption, HostOption, OutputOption, TokenOption, UrlOption
from kfbox.cli.output import Output, console, print_json, print_table
from kfbox.cli.target import connect
from kfbox.client import ApiClient
from kfbox.client.run_watch import duration, styled, task_table, watch_run
from kfbox.errors import InvalidInput, KfboxError
from kfbox.pipelines import spec as specs

runs_app = typer.Typer(help="Inspect and control pipeline runs.", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    app.command("run")(run)
    app.command("compile")(compile_pipeline)
    app.add_typer(runs_app, name="runs")


def parse_parameters(spec: dict[str, Any], pairs: list[str]) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for pair in pairs:
        name, sep, raw = pair.partition("=")
        if not sep or not name:
            raise InvalidInput(f"Parameter {pair!r} is not name=value.")
        values[name] = specs.coerce_parameter(spec, name, raw)
    specs.check_parameters(spec, values)
    return values


def run(
    target: Annotated[str, typer.Argument(help="FILE.py[:PIPELINE] (compiled here with the KFP compiler) or FILE.yaml.", show_default=False)],
    param: Annotated[list[str] | None, typer.Option("--param", "-p", help="Pipeline parameter name=value (repeatable).")] = None,
    experiment: Annotated[str | None, typer.Option("--experiment", "-e", help="Experiment name (created when missing).", show_default="Default")] = None,
    name: Annotated[str | None, typer.Option("--name", help="Run name.", show_default="pipeline name + time")] = None,
    no_cache: Annotated[bool, typer.Option("--no-cache", help="Execute every task even when an identical one ran before.")] = False,
    watch: Annotated[bool, typer.Option("--watch", "-w", help="Show live task progress until the run ends.")] = False,
    url: UrlOption = None,
    host: HostOption = None,
    context: ContextOption = None,
    home: HomeOption = None,
    token: TokenOption = None,
    output: OutputOption = Output.table,
) -> None:
    """Compile and submit a pipeline run; with --watch, follow it to the end (exit 1 unless it succeeds)."""
    spec = _load(target)
    parameters = parse_parameters(spec, param or [])
    if no_cache:
        specs.override_caching(spec, False)
    run_name = name or f"{specs.pipeline_name(spec)} {time.strftime('%Y-%m-%d %H-%M-%S')}"
    api = connect(url, home, token, host=host, context=context)
    body: dict[str, Any] = {"display_name": run_name, "pipeline_spec": spec,
                            "runtime_config": {"parameters": parameters}}
    if experiment:
        body["experiment_id"] = _experiment_id(api, experiment)
    created = api.post(f"{API}/runs", json=body)
    run_id = created["run_id"]
    if not watch:
        if output == Output.json:
            print_json(created)
        else:
            console.print(f"Run [bold]{run_id}[/] submitted ({created['state']}). Follow it with: "
                          f"kfbox runs get {run_id}")
        return
    final = watch_run(api, run_id, live=output == Output.table, console=console)
    if output == Output.json:
        print_json(final)
    _report(final, quiet=output == Output.json)


def compile_pipeline(
    target: Annotated[str, typer.Argument(help="FILE.py[:PIPELINE]", show_default=False)],
    output_file: Annotated[Path | None, typer.Option("--output", "-o", help="Where to write the compiled pipeline YAML.", show_default="PIPELINE-NAME.yaml")] = None,
    for_: Annotated[str, typer.Option("--for", help="local: the KFP compiler's output, as kfbox runs it; cluster: plus what a Kubeflow cluster needs (registry client it serves, S3 keys, no localhost).")] = "local",
) -> None:
    """Compile a pipeline with the KFP compiler; --for cluster emits the form a Kubeflow 26.03 cluster runs."""
    from kfbox.pipelines.source import compile_file, load_spec

    if for_ not in ("local", "cluster"):
        raise InvalidInput(f"--for {for_!r} is not local or cluster")
    if for_ == "local":
        output_file = output_file or Path(f"{specs.pipeline_name(_load(target))}.yaml")
        compile_file(target, output_file)
        console.print(f"Compiled {target} -> {output_file}")
        return
    from kfbox.cluster.compile import for_cluster, to_yaml

    form = for_cluster(load_spec(target))
    output_file = output_file or Path(f"{specs.pipeline_name(form.spec)}.yaml")
    output_file.parent.mkdir(parents=True, exist_ok=True)
    output_file.write_text(to_yaml(form.spec))
    console.print(f"Compiled {target} for a cluster -> {output_file}", highlight=False)
    for note in form.notes:
        console.print(f"  {note}", highlight=False)
    console.print(f"  images: {', '.join(sorted(set(form.images.values()))) or 'none'}", highlight=False)


@runs_app.command("list")
def list_runs(
    experiment: Annotated[str | None, typer.Option("--experiment", "-e", help="Only runs of this experiment (name).")] = None,
    limit: Annotated[int, typer.Option(help="How many runs, newest first.")] = 20,
    url: UrlOption = None,
    host: HostOption = None,
    context: ContextOption = None,
    home: HomeOption = None,
    token: TokenOption = None,
    output: OutputOption = Output.table,
) -> None:
    """List runs, newest first."""
    api = connect(url, home, token, host=host, context=context)
    query: dict[str, Any] = {"page_size": limit, "sort_by": "created_at desc"}
    if experiment:
        query["experiment_id"] = _experiment_id(api, experiment, create=False)
    body = api.get(f"{API}/runs", params=query)
    runs = body.get("runs", [])
    if output == Output.json:
        print_json(runs)
        return
    print_table(None, ["RUN ID", "NAME", "STATE", "CREATED", "DURATION"],
                [[r["run_id"], r["display_name"], styled(r["state"]), r["created_at"], duration(r)] for r in runs])


@runs_app.command("get")
def get_run(
    run_id: Annotated[str, typer.Argument(show_default=False)],
    url: UrlOption = None,
    host: HostOption = None,
    context: ContextOption = None,
    home: HomeOption = None,
    token: TokenOption = None,
    output: OutputOption = Output.table,
) -> None:
    """Show a run: its state, error and every task with its outputs."""
    api = connect(url, home, token, host=host, context=context)
    body = api.get(f"{API}/runs/{run_id}")
    if output == Output.json:
        print_json(body)
        return
    console.print(f"[bold]{body['display_name']}[/] ({body['run_id']}): {styled(body['state'])}"
                  f"  {duration(body)}", highlight=False)
    if body.get("error"):
        console.print(f"[red]{body['error']['message']}[/]", highlight=False)
    console.print(task_table(body))


@runs_app.command("logs")
def logs(
    run_id: Annotated[str, typer.Argument(show_default=False)],
    task: Annotated[str | None, typer.Option("--task", "-t", help="Task path or name; default: every task.")] = None,
    tail: Annotated[int, typer.Option(help="Only the last N lines of each log (0 = all).")] = 0,
    url: UrlOption = None,
    host: HostOption = None,
    context: ContextOption = None,
    home: HomeOption = None,
    token: TokenOption = None,
) -> None:
    """Print task logs (stdout and stderr of the component)."""
    api = connect(url, home, token, host=host, context=context)
    if task:
        console.out(api.get(f"{API}/runs/{run_id}/tasks/{task}/logs", params={"tail": tail}), end="")
        return
    body = api.get(f"{API}/runs/{run_id}")
    for detail in body.get("run_details", {}).get("task_details", []):
        if detail.get("kind") == "dag":
            continue
        console.rule(f"{detail['pod_name']} ({detail['state']})")
        console.out(api.get(f"{API}/runs/{run_id}/tasks/{detail['task_id']}/logs", params={"tail": tail}), end="")


@runs_app.command("cancel")
def cancel(
    run_id: Annotated[str, typer.Argument(show_default=False)],
    url: UrlOption = None,
    host: HostOption = None,
    context: ContextOption = None,
    home: HomeOption = None,
    token: TokenOption = None,
) -> None:
    """Terminate a run: its worker and every task process are killed."""
    api = connect(url, home, token, host=host, context=context)
    api.post(f"{API}/runs/{run_id}:terminate")
    state = api.get(f"{API}/runs/{run_id}")["state"]
    console.print(f"Run {run_id}: {styled(state)}", highlight=False)


@runs_app.command("retry")
def retry(
    run_id: Annotated[str, typer.Argument(show_default=False)],
    url: UrlOption = None,
    host: HostOption = None,
    context: ContextOption = None,
    home: HomeOption = None,
    token: TokenOption = None,
) -> None:
    """Retry a FAILED or CANCELED run in place: its failed and skipped tasks run again, the rest are reused."""
    api = connect(url, home, token, host=host, context=context)
    api.post(f"{API}/runs/{run_id}:retry")
    state = api.get(f"{API}/runs/{run_id}")["state"]
    console.print(f"Run {run_id}: {styled(state)}", highlight=False)


def _load(target: str) -> dict[str, Any]:
    from kfbox.pipelines.source import load_spec

    return load_spec(target)


def _experiment_id(api: ApiClient, name: str, create: bool = True) -> str:
    import json

    flt = json.dumps({"predicates": [{"key": "display_name", "operation": "EQUALS", "string_value": name}]})
    found = api.get(f"{API}/experiments", params={"filter": flt}).get("experiments", [])
    if found:
        return str(found[0]["experiment_id"])
    if not create:
        raise InvalidInput(f"No experiment is named {name!r}.")
    return str(api.post(f"{API}/experiments", json={"display_name": name})["experiment_id"])


def _report(body: dict[str, Any], quiet: bool = False) -> None:
    state = body["state"]
    if not quiet:
        console.print(f"Run {body['run_id']} {styled(state)} in {duration(body)}", highlight=False)
    if state != "SUCCEEDED":
        message = (body.get("error") or {}).get("message") or f"Run ended {state}."
        raise KfboxError(message)

