"""``kfbox schedules create|list|get|enable|disable|delete``: KFP recurring runs, thin over the v2beta1 API.

Example::

    kfbox schedules create train.py:training --every 1h -p epochs=3
    kfbox schedules create train.yaml --cron "0 0 9 * * 1-5" --name weekday-train   # seconds first, as in KFP
    kfbox schedules disable RECURRING_RUN_ID
"""

from __future__ import annotations

import re
from typing import Annotated, Any

import typer

from kfbox.apis import KFP
from kfbox.cli.options import HomeOption, OutputOption, TokenOption, UrlOption
from kfbox.cli.output import Output, console, print_json, print_pairs, print_table
from kfbox.cli.runs import _experiment_id, _load, parse_parameters
from kfbox.client import ApiClient
from kfbox.errors import InvalidInput
from kfbox.pipelines import spec as specs

API = f"{KFP}/recurringruns"
UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}

schedules_app = typer.Typer(help="Recurring runs: start a pipeline on a cron or interval schedule.",
                            no_args_is_help=True)


def register(app: typer.Typer) -> None:
    app.add_typer(schedules_app, name="schedules")


def parse_every(text: str) -> int:
    """``90``, ``90s``, ``5m``, ``1h30m``, ``1d`` -> seconds."""
    if text.isdigit():
        return int(text)
    parts = re.findall(r"(\d+)([smhd])", text)
    if not parts or "".join(n + u for n, u in parts) != text:
        raise InvalidInput(f"--every {text!r} is not a duration; use e.g. 30s, 5m, 1h30m, 1d or plain seconds.")
    return sum(int(n) * UNITS[u] for n, u in parts)


@schedules_app.command("create")
def create(
    target: Annotated[str, typer.Argument(help="FILE.py[:PIPELINE] or FILE.yaml, as for kfbox run.", show_default=False)],
    every: Annotated[str | None, typer.Option("--every", help="Interval trigger: 30s, 5m, 1h30m, 1d.", show_default=False)] = None,
    cron: Annotated[str | None, typer.Option("--cron", help="Cron trigger, KFP's six fields with seconds first: '0 0 9 * * *'.", show_default=False)] = None,
    name: Annotated[str | None, typer.Option("--name", help="Schedule name.", show_default="pipeline name")] = None,
    param: Annotated[list[str] | None, typer.Option("--param", "-p", help="Pipeline parameter name=value (repeatable).")] = None,
    experiment: Annotated[str | None, typer.Option("--experiment", "-e", help="Experiment name (created when missing).", show_default="Default")] = None,
    max_concurrency: Annotated[int, typer.Option(help="Runs of this schedule that may be active at once (1-10).")] = 1,
    start: Annotated[str | None, typer.Option("--start", help="RFC 3339 time before which nothing starts.", show_default=False)] = None,
    end: Annotated[str | None, typer.Option("--end", help="RFC 3339 time after which nothing starts.", show_default=False)] = None,
    catchup: Annotated[bool, typer.Option("--catchup", help="After downtime, start every missed run instead of only the latest.")] = False,
    disabled: Annotated[bool, typer.Option("--disabled", help="Create it disabled; start it with: kfbox schedules enable ID.")] = False,
    url: UrlOption = None,
    home: HomeOption = None,
    token: TokenOption = None,
    output: OutputOption = Output.table,
) -> None:
    """Create a recurring run of a pipeline (interval with --every, or --cron)."""
    if (every is None) == (cron is None):
        raise InvalidInput("Give exactly one trigger: --every DURATION or --cron 'SEC MIN HOUR DOM MONTH DOW'.")
    spec = _load(target)
    times = {k: v for k, v in (("start_time", start), ("end_time", end)) if v}
    trigger = ({"periodic_schedule": {"interval_second": str(parse_every(every)), **times}} if every is not None
               else {"cron_schedule": {"cron": cron, **times}})
    api = ApiClient.connect(url, home, token)
    body: dict[str, Any] = {
        "display_name": name or specs.pipeline_name(spec), "pipeline_spec": spec, "trigger": trigger,
        "runtime_config": {"parameters": parse_parameters(spec, param or [])},
        "max_concurrency": str(max_concurrency), "no_catchup": not catchup,
        "mode": "DISABLE" if disabled else "ENABLE",
    }
    if experiment:
        body["experiment_id"] = _experiment_id(api, experiment)
    created = api.post(API, json=body)
    if output == Output.json:
        print_json(created)
        return
    when = created.get("next_run_at") or "never (disabled or past its end)"
    console.print(f"Schedule [bold]{created['recurring_run_id']}[/] ({created['display_name']}) created; "
                  f"next run: {when}.", highlight=False)


def _trigger(body: dict[str, Any]) -> str:
    trigger = body.get("trigger") or {}
    if trigger.get("cron_schedule"):
        return f"cron {trigger['cron_schedule']['cron']}"
    return f"every {trigger.get('periodic_schedule', {}).get('interval_second')}s"


@schedules_app.command("list")
def list_schedules(url: UrlOption = None, home: HomeOption = None, token: TokenOption = None,
                   output: OutputOption = Output.table) -> None:
    """List recurring runs, newest first."""
    api = ApiClient.connect(url, home, token)
    rows = api.get(API, params={"page_size": 100, "sort_by": "created_at desc"}).get("recurringRuns", [])
    if output == Output.json:
        print_json(rows)
        return
    print_table(None, ["ID", "NAME", "TRIGGER", "STATUS", "NEXT RUN"],
                [[r["recurring_run_id"], r["display_name"], _trigger(r), r["status"], r.get("next_run_at")]
                 for r in rows])


@schedules_app.command("get")
def get(recurring_run_id: Annotated[str, typer.Argument(show_default=False)], url: UrlOption = None,
        home: HomeOption = None, token: TokenOption = None, output: OutputOption = Output.table) -> None:
    """Show a recurring run: trigger, status, next run, the runs it started."""
    body = ApiClient.connect(url, home, token).get(f"{API}/{recurring_run_id}")
    if output == Output.json:
        print_json(body)
        return
    print_pairs(body["display_name"], [
        ("id", body["recurring_run_id"]), ("trigger", _trigger(body)), ("status", body["status"]),
        ("max concurrency", body["max_concurrency"]), ("catch-up", "no" if body["no_catchup"] else "yes"),
        ("last run at", body.get("last_run_at")), ("next run at", body.get("next_run_at")),
        ("error", (body.get("error") or {}).get("message")),
        ("runs", ", ".join(body.get("run_ids") or []) or "none yet")])


def _action(recurring_run_id: str, verb: str, url: str | None, home: Any, token: str | None) -> None:
    api = ApiClient.connect(url, home, token)
    if verb == "delete":
        api.delete(f"{API}/{recurring_run_id}")
    else:
        api.post(f"{API}/{recurring_run_id}:{verb}")
    console.print(f"Schedule {recurring_run_id}: {verb}d.", highlight=False)


@schedules_app.command("enable")
def enable(recurring_run_id: Annotated[str, typer.Argument(show_default=False)], url: UrlOption = None,
           home: HomeOption = None, token: TokenOption = None) -> None:
    """Enable a recurring run (a missed tick starts one run at once, as in KFP)."""
    _action(recurring_run_id, "enable", url, home, token)


@schedules_app.command("disable")
def disable(recurring_run_id: Annotated[str, typer.Argument(show_default=False)], url: UrlOption = None,
            home: HomeOption = None, token: TokenOption = None) -> None:
    """Disable a recurring run; runs already started go on."""
    _action(recurring_run_id, "disable", url, home, token)


@schedules_app.command("delete")
def delete(recurring_run_id: Annotated[str, typer.Argument(show_default=False)], url: UrlOption = None,
           home: HomeOption = None, token: TokenOption = None) -> None:
    """Delete a recurring run; the runs it started stay."""
    _action(recurring_run_id, "delete", url, home, token)
