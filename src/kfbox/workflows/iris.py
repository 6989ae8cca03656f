"""The iris workflow end to end, through the platform's public APIs only.

train (KFP run) -> registry -> select + deploy (KFP run) -> wait Ready -> predict -> load test.
Every step goes through the same HTTP APIs a user's own code would call: ``kfp.Client``
for the pipelines, the Model Registry REST API (kfbox's :class:`RegistryClient`, which
speaks it like the upstream ``model_registry`` client without its second of import), the
KServe V1 protocol for predictions. The load test is its own phase, after the first
prediction; the summary times each phase.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib.util
import io
import json
import re
import sys
import tempfile
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import httpx
from rich.console import Console

from kfbox.client import ApiClient, RegistryClient
from kfbox.client.inference_services import wait_ready
from kfbox.client.run_watch import watch_run
from kfbox.errors import InvalidInput, KfboxError
from kfbox.extras import missing
from kfbox.workflows.example_files import find_example_dir, load_example_module

NAMESPACE = "kubeflow-user-example-com"
SERVICE = "sklearn-inference"
IRIS_CLASSES = ("setosa", "versicolor", "virginica")
VERSION_RE = re.compile(r"^v(\d+)$")
# what the workflow and its tasks import (module -> package): the kfbox[examples] extra. A task
# whose packages are missing would build a venv from the network instead of running here.
EXAMPLE_PACKAGES = {"sklearn": "scikit-learn", "model_registry": "model-registry", "kfp.kubernetes": "kfp-kubernetes",
                    "boto3": "boto3"}


def require_examples() -> None:
    """Refuse up front, naming the extra, when the packages of ``kfbox[examples]`` are not installed."""
    for module, package in EXAMPLE_PACKAGES.items():
        try:
            found = importlib.util.find_spec(module) is not None
        except (ImportError, ValueError):  # a parent package missing, or a module set to None
            found = False
        if not found:
            raise missing(package, extra="examples", feature="kfbox example iris")


@dataclasses.dataclass
class IrisOptions:
    neighbors: list[int] = dataclasses.field(default_factory=lambda: [2, 6, 9])
    version: str | None = None
    scaler: str = "standard_scaler"
    metric: str = "accuracy"
    loadtest_seconds: float = 3.0
    loadtest_concurrency: int = 8
    timeout: float = 600.0
    cache: bool = True
    """False runs every task (``enable_caching=False`` for both runs); True keeps the pipelines' own settings."""


@dataclasses.dataclass
class IrisSummary:
    platform_url: str
    version: str
    metric: str
    models: list[tuple[str, float | None]]
    selected: str
    selected_metric: float | None
    endpoint: str
    request: dict[str, Any]
    response: dict[str, Any]
    predicted_classes: list[str]
    loadtest: dict[str, Any] | None
    phases: dict[str, float]
    """Seconds per phase in order: prepare, training, selection+deploy, ready+predict, load test."""
    cached_tasks: int
    """Tasks of the two runs answered from the KFP cache instead of run (none with ``cache=False``)."""
    first_prediction_seconds: float
    """From the start of the command to the first prediction's answer."""
    total_seconds: float

    @property
    def training_seconds(self) -> float:
        return self.phases.get("training", 0.0)

    @property
    def selection_seconds(self) -> float:
        return self.phases.get("selection+deploy", 0.0)


def next_version(registry: RegistryClient) -> str:
    """``v<N+1>`` for the highest ``v<N>`` any KNN model has: re-running never collides."""
    highest = 0
    for model in registry.get_registered_models():
        if not model.name.startswith("KNN_"):
            continue
        for version in registry.get_model_versions(model.name):
            match = VERSION_RE.match(version.name or "")
            if match:
                highest = max(highest, int(match.group(1)))
    return f"v{highest + 1}"


def registry_client(platform_url: str, token: str | None) -> RegistryClient:
    parsed = urlparse(platform_url)
    return RegistryClient(f"{parsed.scheme}://{parsed.hostname}", parsed.port, author="kfbox-example",
                          is_secure=False, user_token=token)


@contextlib.contextmanager
def quiet_kfp_client() -> Iterator[None]:
    """Around ``kfp.Client`` calls: no printed links to a cluster UI we don't have, and no IPython import.

    kfp asks whether it runs in a notebook by importing IPython (0.4 s of CPU, 1-2 s on a busy
    machine, inside the timed phases). When IPython is not imported yet this is no notebook, so
    the import is made to fail at once: kfp's answer (False) is the same, without the import.
    """
    blocked = "IPython" not in sys.modules
    if blocked:
        sys.modules["IPython"] = None  # type: ignore[assignment]  # "import IPython" raises ImportError
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            yield
    finally:
        if blocked and sys.modules.get("IPython", 0) is None:
            del sys.modules["IPython"]


def run_pipeline(client: Any, api: ApiClient, package: Path, arguments: dict[str, Any], title: str,
                 console: Console, cache: bool = True) -> tuple[float, int]:
    """Submit with the upstream ``kfp.Client``, follow with kfbox's live task table; seconds taken and the
    number of tasks answered from the cache. ``cache=False`` runs every task (``enable_caching=False``)."""
    started = time.monotonic()
    with quiet_kfp_client():
        result = client.create_run_from_pipeline_package(str(package), arguments=arguments, run_name=title,
                                                         experiment_name="iris",
                                                         enable_caching=None if cache else False)
    console.print(f"Run {result.run_id} submitted ({title}); details: kfbox runs get {result.run_id}")
    run = watch_run(api, result.run_id, console=console, interval=0.1)
    if run["state"] != "SUCCEEDED":
        message = (run.get("error") or {}).get("message") or "no error message"
        raise KfboxError(f"Pipeline run '{title}' ({result.run_id}) ended {run['state']}: {message}. "
                         f"See its logs with: kfbox runs logs {result.run_id}")
    cached = sum(1 for task in run.get("run_details", {}).get("task_details", []) if task.get("cache_hit"))
    return time.monotonic() - started, cached


def run_iris(platform_url: str, token: str | None, options: IrisOptions, console: Console,
             examples_dir: Path | None = None) -> IrisSummary:
    """Run the whole workflow against the platform at ``platform_url``."""
    import kfp

    require_examples()
    if options.scaler not in ("standard_scaler", "min_max_scaler"):
        raise InvalidInput(f"Scaler {options.scaler!r} is not known; use standard_scaler or min_max_scaler.")
    if not options.neighbors or any(k < 1 for k in options.neighbors):
        raise InvalidInput(f"Neighbors {options.neighbors} must be a non-empty list of positive integers.")
    started = time.monotonic()
    phases: dict[str, float] = {}
    examples_dir = examples_dir or find_example_dir("iris", "pipelines.py", "make run")
    pipelines = load_example_module(examples_dir, "pipelines.py")
    with registry_client(platform_url, token) as registry:
        version = options.version or next_version(registry)
        if not version.strip() or any(c.isspace() or not c.isprintable() for c in version):
            raise InvalidInput(f"Version {version!r} must be a non-empty name without spaces, e.g. v3.")
        console.print(f"Training iris KNN models {options.neighbors} as version [bold]{version}[/] "
                      f"with {options.scaler} on {platform_url}")

        with warnings.catch_warnings(), quiet_kfp_client():
            warnings.simplefilter("ignore", FutureWarning)  # "only works with KFP v2.0.0-beta.2 and later": we are
            client = kfp.Client(host=f"{platform_url}/pipeline", existing_token=token)
        api = ApiClient(platform_url, token)
        with tempfile.TemporaryDirectory(prefix="kfbox-iris-") as tmp:
            from kfp import compiler

            training_yaml = Path(tmp) / "iris-training.yaml"
            selection_yaml = Path(tmp) / "iris-model-selection.yaml"
            compiler.Compiler().compile(pipelines.iris_training, str(training_yaml))
            compiler.Compiler().compile(pipelines.iris_model_selection, str(selection_yaml))
            phases["prepare"] = time.monotonic() - started
            phases["training"], cached_training = run_pipeline(
                client, api, training_yaml,
                {"neighbors": options.neighbors, "version": version,
                 "standard_scaler": options.scaler == "standard_scaler",
                 "min_max_scaler": options.scaler == "min_max_scaler"},
                f"iris-training-{version}", console, options.cache)
            phases["selection+deploy"], cached_selection = run_pipeline(
                client, api, selection_yaml, {"version": version, "metric": options.metric},
                f"iris-model-selection-{version}", console, options.cache)

        models = []
        for k in options.neighbors:
            found = registry.get_model_version(f"KNN_{k}", version)
            value = (found.custom_properties or {}).get(options.metric) if found else None
            models.append((f"KNN_{k}", float(value) if isinstance(value, int | float) else None))
    ranked = sorted((m for m in models if m[1] is not None), key=lambda m: (-(m[1] or 0.0), m[0]))
    selected, selected_metric = ranked[0] if ranked else ("?", None)

    ready_started = time.monotonic()
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    with httpx.Client(base_url=platform_url, headers=headers, timeout=60) as http:
        with console.status(f"Waiting for InferenceService {SERVICE} to be Ready..."):
            wait_ready(api, NAMESPACE, SERVICE, options.timeout, poll=0.05)
        # the ingress port while HAProxy is up: it hands a service it does not route yet to kfbox
        endpoint = f"{api.inference_base()}/serving/{NAMESPACE}/{SERVICE}/v1/models/{SERVICE}:predict"
        request = json.loads((examples_dir / "request.json").read_text())
        reply = http.post(endpoint, json=request)
        if reply.status_code != 200:
            raise KfboxError(f"Prediction at {endpoint} failed with HTTP {reply.status_code}: {reply.text}")
        response = reply.json()
    first_prediction = time.monotonic()
    phases["ready+predict"] = first_prediction - ready_started
    predicted = [IRIS_CLASSES[int(p)] if str(p).isdigit() else str(p) for p in response.get("predictions", [])]
    console.print(f"First prediction {time.monotonic() - started:.1f}s after start: "
                  f"{', '.join(predicted)}")
    loadtest = _short_loadtest(endpoint, request, token, options, console)
    if loadtest is not None:
        phases["load test"] = time.monotonic() - first_prediction
    return IrisSummary(platform_url=platform_url, version=version, metric=options.metric, models=models,
                       selected=selected, selected_metric=selected_metric, endpoint=endpoint, request=request,
                       response=response, predicted_classes=predicted, loadtest=loadtest, phases=phases,
                       cached_tasks=cached_training + cached_selection,
                       first_prediction_seconds=first_prediction - started,
                       total_seconds=time.monotonic() - started)


def _short_loadtest(endpoint: str, request: dict[str, Any], token: str | None, options: IrisOptions,
                    console: Console) -> dict[str, Any] | None:
    if options.loadtest_seconds <= 0:
        return None
    from kfbox.workflows.loadtest_step import short_loadtest

    return short_loadtest(endpoint, request, token, options.loadtest_seconds, options.loadtest_concurrency, console)
