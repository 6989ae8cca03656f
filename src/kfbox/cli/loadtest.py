"""``kfbox loadtest TARGET``: a built-in ``hey`` for InferenceServices and any HTTP URL.

Live progress while it runs, then requests/s, latency percentiles, status counts, error
kinds and a histogram; ``--plot out.svg`` draws the run as the dashboard's live chart.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeElapsedColumn

from kfbox.cli.options import HomeOption, OutputOption, TokenOption, UrlOption
from kfbox.cli.output import Output, console, err_console, print_json
from kfbox.client import ApiClient
from kfbox.durations import parse_duration
from kfbox.errors import InvalidInput, KfboxError, Unavailable
from kfbox.loadtest import plot as loadtest_plot
from kfbox.loadtest.report import Report
from kfbox.loadtest.runner import DEFAULT_CONCURRENCY, DEFAULT_TIMEOUT, LoadSpec, Snapshot, run_load
from kfbox.loadtest.target import DEFAULT_NAMESPACE, ReplicaGauge, Target, is_url, resolve_target

EXAMPLE_BODY = '{"instances": [[6.8, 2.8, 4.8, 1.4]]}'


def register(app: typer.Typer) -> None:
    app.command("loadtest")(loadtest)


def loadtest(
    target: Annotated[str, typer.Argument(help="An InferenceService name (resolved through the server to its gateway URL) or an http(s) URL.", show_default=False)],
    duration: Annotated[str | None, typer.Option("--duration", "-z", help="Run for this long: 30s, 2m, 500ms, 1m30s. With -n too, whichever ends first.", show_default=False)] = None,
    requests: Annotated[int | None, typer.Option("--requests", "-n", help="Send this many requests. Default 200 when -z is not given.", show_default=False)] = None,
    concurrency: Annotated[int, typer.Option("--concurrency", "-c", help="Requests in flight at once, one keep-alive connection each.")] = DEFAULT_CONCURRENCY,
    data: Annotated[str | None, typer.Option("--data", "-d", help="Request body: JSON text or @file. Sent as POST application/json.", show_default=False)] = None,
    v2: Annotated[bool, typer.Option("--v2", help="For a name target: the V2 infer path instead of V1 predict.")] = False,
    namespace: Annotated[str | None, typer.Option("--namespace", help=f"Namespace of a name target. Default: the one namespace that has it ({DEFAULT_NAMESPACE} if several do).", show_default=False)] = None,
    method: Annotated[str | None, typer.Option("--method", "-m", help="HTTP method. Default: POST with -d, else GET.", show_default=False)] = None,
    header: Annotated[list[str] | None, typer.Option("--header", "-H", help="Extra header 'Name: value'; repeatable.", show_default=False)] = None,
    timeout: Annotated[float, typer.Option("--timeout", "-t", help="Seconds before a request counts as a timeout.")] = DEFAULT_TIMEOUT,
    plot: Annotated[Path | None, typer.Option("--plot", help="Draw the run as the dashboard's live chart (load, success, latency percentiles, replicas) to this .svg file.", show_default=False)] = None,
    url: UrlOption = None,
    home: HomeOption = None,
    token: TokenOption = None,
    output: OutputOption = Output.table,
) -> None:
    """Load-test an InferenceService or a URL, like `hey`.

    Examples:

      kfbox loadtest iris -z 30s -c 50 -d '{"instances": [[6.8, 2.8, 4.8, 1.4]]}' --plot load.svg

      kfbox loadtest http://127.0.0.1:8080/healthz -n 1000 -c 8 -o json

    Exits 1 when any request failed (no reply, or a status >= 400), after the report.
    """
    seconds = parse_duration(duration, "Duration") if duration is not None else None
    body = read_body(data, header or [])
    headers = parse_headers(header or [])
    if plot is not None:
        loadtest_plot.check_plot_path(plot)
    resolved = _resolve(target, v2=v2, namespace=namespace, url=url, home=home, token=token)
    if resolved.is_service and body is None:
        raise InvalidInput(f"A predict request needs a body; pass e.g. -d '{EXAMPLE_BODY}' or -d @input.json.")
    spec = LoadSpec(url=resolved.url, method=(method or ("POST" if body is not None else "GET")).upper(),
                    body=body, headers={**resolved.headers, **headers}, concurrency=concurrency,
                    requests=requests, duration=seconds, timeout=timeout)
    sampler = None
    if resolved.is_service and resolved.metrics_url:
        assert resolved.name is not None and resolved.namespace is not None
        sampler = ReplicaGauge(resolved.metrics_url, resolved.name, resolved.namespace, resolved.headers)
    report = _run_with_progress(spec, sampler)
    if output is Output.json:
        print_json(report.to_dict())
    else:
        print_report(report)
    if plot is not None:
        written = loadtest_plot.write_plot(report, plot)
        err_console.print(f"Plot written to {written}")
    _exit_status(report)


def _resolve(target: str, *, v2: bool, namespace: str | None, url: str | None, home: Path | None,
             token: str | None) -> Target:
    if is_url(target):
        return resolve_target(target, api=None, v2=v2)
    api = ApiClient.connect(url, home, token)
    try:
        return resolve_target(target, api=api, namespace=namespace, v2=v2, token=token)
    finally:
        api.close()


def _run_with_progress(spec: LoadSpec, sampler: ReplicaGauge | None) -> Report:
    columns = [TextColumn("[bold]{task.description}"), BarColumn(), TextColumn("{task.fields[status]}"),
               TimeElapsedColumn()]
    with Progress(*columns, console=err_console, transient=True, auto_refresh=False,
                  disable=not err_console.is_terminal) as progress:
        total = spec.duration if spec.request_limit is None else float(spec.request_limit)
        task = progress.add_task("loading", total=total, status="starting")

        def show(snap: Snapshot) -> None:
            _update(progress, task, snap)

        return run_load(spec, sampler=sampler, on_progress=show)


def _update(progress: Progress, task: TaskID, snap: Snapshot) -> None:
    done = float(snap.done) if snap.limit is not None else min(snap.elapsed, snap.duration or snap.elapsed)
    status = f"{snap.done} done  {snap.rps:7.1f} req/s  {snap.errors} errors"
    progress.update(task, completed=done, status=status)
    progress.refresh()


def read_body(data: str | None, header: list[str]) -> bytes | None:
    """-d JSON or -d @file; JSON is checked unless a Content-Type header says otherwise."""
    if data is None:
        return None
    if data.startswith("@"):
        path = Path(data[1:]).expanduser()
        try:
            raw = path.read_bytes()
        except OSError as exc:
            raise InvalidInput(f"Cannot read the request body file {str(path)!r}: {exc.strerror}.") from exc
    else:
        raw = data.encode()
    if not any(h.split(":", 1)[0].strip().lower() == "content-type" for h in header):
        try:
            json.loads(raw)
        except ValueError as exc:
            raise InvalidInput(f"Request body is not valid JSON ({exc}): {raw[:80]!r}. "
                               f"Example: -d '{EXAMPLE_BODY}'.") from exc
    return raw


def parse_headers(header: list[str]) -> dict[str, str]:
    headers = {}
    for item in header:
        name, sep, value = item.partition(":")
        if not sep or not name.strip() or any(c in item for c in "\r\n"):
            raise InvalidInput(f"Header {item!r} is not 'Name: value'.")
        headers[name.strip()] = value.strip()
    return headers


def print_report(report: Report) -> None:
    ms = 1000.0
    title = f"{report.method} {report.url}  c={report.concurrency}"
    if report.interrupted:
        title += "  [yellow](interrupted: partial report)[/]"
    console.print(title, highlight=False)
    console.print("\n[bold]Summary[/]")
    console.print(f"  Requests:     {report.total} ({report.failed} failed)")
    console.print(f"  Duration:     {report.duration:.2f} s")
    console.print(f"  Requests/s:   {report.rps:.1f}")
    if report.latencies:
        console.print("\n[bold]Latency[/]")
        console.print(f"  mean {report.mean * ms:.2f} ms   p50 {report.percentile(50) * ms:.2f} ms   "
                      f"p90 {report.percentile(90) * ms:.2f} ms   p99 {report.percentile(99) * ms:.2f} ms   "
                      f"max {report.max * ms:.2f} ms")
    if report.statuses:
        console.print("\n[bold]Status codes[/]")
        for code, count in report.statuses.items():
            console.print(f"  [{code}] {count} responses", highlight=False)
    if report.errors:
        console.print("\n[bold]Errors[/]")
        for kind, count in report.errors.items():
            console.print(f"  [red]{kind}[/]: {count}", highlight=False)
    histogram = report.histogram()
    if histogram:
        console.print("\n[bold]Latency histogram[/]")
        peak = max(count for _, count in histogram) or 1
        for bound, count in histogram:
            bar = "■" * round(40 * count / peak)
            console.print(f"  {bound * ms:9.2f} ms [{count:>7}] {bar}", highlight=False)


def _exit_status(report: Report) -> None:
    if report.failed:
        raise Unavailable(f"{report.failed} of {report.total} requests to {report.url} failed "
                          f"({failure_summary(report)}). {_hint(report)}")
    if report.interrupted:
        raise typer.Exit(130)
    if report.total == 0:
        raise KfboxError(f"No request completed against {report.url}.")


def failure_summary(report: Report) -> str:
    parts = [f"{kind}: {n}" for kind, n in report.errors.items()]
    parts += [f"HTTP {code}: {n}" for code, n in report.statuses.items() if code >= 400]
    return ", ".join(parts)


def _hint(report: Report) -> str:
    if "connection refused" in report.errors:
        return "Nothing listens there: is the server (or the replica) running?"
    if "timeout" in report.errors:
        return "Raise --timeout or lower -c if the target is overloaded."
    return "See the status codes above; the target's log says why."
