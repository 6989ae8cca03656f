"""``kfbox example iris``: the whole MLOps workflow by one command."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from kfbox.cli.options import HomeOption, TokenOption, UrlOption
from kfbox.cli.output import console, print_pairs, print_table
from kfbox.client import resolve_url
from kfbox.config import Settings
from kfbox.errors import Unavailable
from kfbox.workflows.iris import IrisOptions, IrisSummary, require_examples, run_iris

if TYPE_CHECKING:
    from kfbox.workflows.llm import LlmSummary

example_app = typer.Typer(help="Runnable end-to-end workflows.", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    app.add_typer(example_app, name="example")


def _platform_url(url: str | None, home: Path | None, token: str | None) -> str:
    """The running platform, or a new detached one for this home when none runs."""
    try:
        return resolve_url(url, home)
    except Unavailable:
        if url or os.environ.get("KFBOX_URL"):
            raise
    from kfbox.cli.server import start_detached

    start_detached(Settings.load(home=home, token=token))
    return resolve_url(None, home)


@example_app.command("iris")
def iris(
    neighbors: Annotated[str, typer.Option(help="Comma-separated k values, one KNN model each.")] = "2,6,9",
    version: Annotated[str | None, typer.Option(help="Model version to register. Default: the next vN.", show_default=False)] = None,
    scaler: Annotated[str, typer.Option(help="standard_scaler or min_max_scaler.")] = "standard_scaler",
    metric: Annotated[str, typer.Option(help="Custom property that ranks the models.")] = "accuracy",
    loadtest_seconds: Annotated[float, typer.Option("--loadtest-seconds", help="Length of the closing load test; 0 skips it.")] = 3.0,
    examples_dir: Annotated[Path | None, typer.Option("--examples-dir", help="Folder holding pipelines.py, inference.yaml, request.json.", show_default="examples/iris of this checkout")] = None,
    cache: Annotated[bool, typer.Option("--cache/--no-cache", help="--no-cache runs every task instead of answering unchanged ones from the KFP cache.")] = True,
    url: UrlOption = None,
    home: HomeOption = None,
    token: TokenOption = None,
) -> None:
    """Train KNN models on iris, register them, select the best, serve it, predict and load-test it.

    Starts the platform in the background when none runs (stop it with `kfbox down`).
    Re-running registers the next version; --version picks one.

    Example: kfbox example iris --neighbors 3,5,7 --scaler min_max_scaler
    """
    try:
        ks = [int(k) for k in neighbors.split(",") if k.strip()]
    except ValueError as exc:
        raise typer.BadParameter(f"--neighbors must be integers like 2,6,9, got {neighbors!r}") from exc
    require_examples()  # before a platform is started for nothing
    platform_url = _platform_url(url, home, token)
    options = IrisOptions(neighbors=ks, version=version, scaler=scaler, metric=metric,
                          loadtest_seconds=loadtest_seconds, cache=cache)
    summary = run_iris(platform_url, token, options, console, examples_dir)
    print_summary(summary)


def print_summary(summary: IrisSummary) -> None:
    print_table(f"Models registered as version {summary.version}", ["model", summary.metric, "selected"],
                [(name, f"{value:.4f}" if value is not None else "-", "yes" if name == summary.selected else "")
                 for name, value in summary.models])
    rows = [
        ("selected model", f"{summary.selected} {summary.version}" + (
            f" ({summary.metric} {summary.selected_metric:.4f})" if summary.selected_metric is not None else "")),
        ("endpoint", summary.endpoint),
        ("sample request", json.dumps(summary.request)),
        ("answer", f"{json.dumps(summary.response)} -> {', '.join(summary.predicted_classes)}"),
    ]
    if summary.loadtest:
        lt = summary.loadtest
        rows.append(("load test", f"{lt['requests']} requests in {lt['seconds']:.1f}s: {lt['rps']:.0f} req/s, "
                                  f"p50 {lt['p50_ms']:.1f} ms, p99 {lt['p99_ms']:.1f} ms, errors {lt['errors']}"))
    rows += [
        ("timings", ", ".join(f"{phase} {seconds:.1f}s" for phase, seconds in summary.phases.items())
                    + f"; {summary.cached_tasks} tasks from the cache"
                    + f"; first prediction after {summary.first_prediction_seconds:.1f}s, "
                      f"total {summary.total_seconds:.1f}s"),
        ("platform", f"{summary.platform_url} (dashboard); stop it with: kfbox down"),
    ]
    print_pairs("iris workflow", rows)


@example_app.command("llm")
def llm(
    source: Annotated[str, typer.Option(help="drugreview, a CSV/JSONL file with text and label columns, or hf:NAME.")] = "drugreview",
    subset: Annotated[int, typer.Option(help="Texts to sample (class-balanced, seeded); 0 uses all.")] = 0,
    epochs: Annotated[int, typer.Option(help="Training epochs.")] = 3,
    max_steps: Annotated[int, typer.Option("--max-steps", help="Stop after this many optimiser steps; 0: no limit.")] = 0,
    max_length: Annotated[int, typer.Option("--max-length", help="Tokens per text.")] = 64,
    learning_rate: Annotated[float, typer.Option("--learning-rate", help="Peak learning rate (warm-up, then linear decay).")] = 3e-3,
    version: Annotated[str | None, typer.Option(help="Model version to register. Default: the next vN.", show_default=False)] = None,
    qa_mode: Annotated[str, typer.Option("--qa-mode", help="auto (SmolLM2 when installed), generate or extractive.")] = "auto",
    examples_dir: Annotated[Path | None, typer.Option("--examples-dir", help="Folder holding pipeline.py, inference.yaml, qa.yaml.", show_default="examples/llm of this checkout")] = None,
    url: UrlOption = None,
    home: HomeOption = None,
    token: TokenOption = None,
) -> None:
    """LoRA fine-tune MiniLM on drug reviews in a pipeline, register and serve it, then ask the QA service.

    Offline and on the CPU by default (a GPU is used when torch sees one). Needs `make install-llm`.
    Starts the platform in the background when none runs (stop it with `kfbox down`).

    Example: kfbox example llm --subset 0 --epochs 2 --max-length 128
    """
    from kfbox.workflows.llm import LlmOptions, run_llm

    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # no hub calls (and their minute of retries) offline
    platform_url = _platform_url(url, home, token)
    options = LlmOptions(source=source, subset=subset, epochs=epochs, max_steps=max_steps, max_length=max_length,
                         learning_rate=learning_rate, version=version, qa_mode=qa_mode)
    print_llm_summary(run_llm(platform_url, token, options, console, examples_dir))


def print_llm_summary(summary: LlmSummary) -> None:
    def pct(value: float | None) -> str:
        return f"{value:.3f}" if value is not None else "-"

    answer = summary.answer
    sources = "; ".join(s["sentence"] for s in answer.get("sources", []))
    rows = [
        ("model", f"{summary.model_name} {summary.version} ({summary.model_uri})"),
        ("accuracy", f"{pct(summary.base_accuracy)} base -> {pct(summary.accuracy)} fine-tuned (held-out texts)"),
        ("fine-tune", (f"{summary.epoch_seconds:.1f}s an epoch" if summary.epoch_seconds is not None else "-")
                      + (f", peak RSS {summary.peak_rss_mb:.0f} MB" if summary.peak_rss_mb is not None else "")),
        ("classifier", summary.classifier_endpoint),
        *[(f"  {label}", text) for text, label in summary.classified],
        ("question answering", summary.qa_endpoint),
        ("  question", summary.question),
        ("  answer", f"{answer.get('answer')} ({answer.get('mode')}, {answer.get('seconds', 0):.2f}s, "
                     f"{answer.get('tokens', 0)} tokens)"),
        ("  sources", sources),
        ("timings", f"total {summary.total_seconds:.1f}s"),
        *[(f"  {phase}", f"{seconds:.1f}s") for phase, seconds in summary.phases.items()],  # tasks: 2 more spaces
        ("platform", f"{summary.platform_url} (dashboard); stop it with: kfbox down"),
    ]
    print_pairs("LLM workflow", rows)
