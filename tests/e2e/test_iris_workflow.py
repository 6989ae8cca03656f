"""The main job, end to end through a real server: ``kfbox example iris`` as a user runs it.

The checks go through the same public APIs a user has: the upstream Model Registry client,
the KServe V1 protocol at the gateway, the serving API for the InferenceService.
"""

from __future__ import annotations

import re
import subprocess
import sys
import warnings
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.support import ServerProcess, run_cli

pytestmark = pytest.mark.slow
NAMESPACE = "kubeflow-user-example-com"
ISVC = f"/apis/serving.kserve.io/v1beta1/namespaces/{NAMESPACE}/inferenceservices/sklearn-inference"
PREDICT = f"/serving/{NAMESPACE}/sklearn-inference/v1/models/sklearn-inference:predict"
# one flower of each class from the UCI data set, and their classes
SAMPLES = [[5.0, 3.4, 1.5, 0.2], [5.9, 3.0, 4.2, 1.5], [6.9, 3.1, 5.4, 2.1]]
CLASSES = [0, 1, 2]


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    proc = ServerProcess.start(tmp_path_factory.mktemp("iris-home"))
    yield proc
    proc.stop()


def example(platform: ServerProcess, *args: str) -> subprocess.CompletedProcess[str]:
    """``kfbox example iris`` as a user runs it: a fresh process, with a bare environment."""
    return subprocess.run([sys.executable, "-m", "kfbox", "example", "iris", "--url", platform.url,
                           "--loadtest-seconds", "1", *args],
                          capture_output=True, text=True, timeout=600, env={"COLUMNS": "200", "PATH": "/usr/bin:/bin"})


def example_again(platform: ServerProcess, *args: str) -> subprocess.CompletedProcess[str]:
    """The same command through the console script's entry in this process (:func:`run_cli`): the later runs
    test what the platform does with them, and a fresh process would import kfp and the registry client again
    (~3 s of CPU a run); the first test runs the real process. Without the load test: the first run's
    covers it (a second of 8 clients saturating both cores, again for each run, adds nothing these check)."""
    return run_cli("example", "iris", "--url", platform.url, "--loadtest-seconds", "0", *args)


def registry(platform: ServerProcess) -> Any:
    from model_registry import ModelRegistry

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return ModelRegistry("http://127.0.0.1", platform.port, author="test", is_secure=False)


def accuracy(mr: Any, name: str, version: str) -> float:
    return float(mr.get_model_version(name, version).custom_properties["accuracy"])


def served_storage_uri(platform: ServerProcess) -> str:
    manifest = httpx.get(platform.url + ISVC).json()
    return str(manifest["spec"]["predictor"]["model"]["storageUri"])


def test_first_run_trains_registers_selects_serves_and_predicts(platform: ServerProcess) -> None:
    done = example(platform)
    assert done.returncode == 0, done.stdout + done.stderr
    mr = registry(platform)
    scores = {f"KNN_{k}": accuracy(mr, f"KNN_{k}", "v1") for k in (2, 6, 9)}
    best = sorted(scores, key=lambda name: (-scores[name], name))[0]
    assert f"{best} v1" in done.stdout  # the summary names the selected model
    assert mr.get_model_version(best, "v1").custom_properties["scaler"] == "standard_scaler"
    assert mr.get_model_artifact(best, "v1").uri.startswith("file://")
    assert served_storage_uri(platform) == f"pvc://model-pvc/models/{best}/v1/model"
    assert (platform.home / "pvc" / "model-pvc" / "models" / best / "v1" / "model" / "model.joblib").is_file()
    reply = httpx.post(platform.url + PREDICT, json={"instances": SAMPLES})
    assert reply.status_code == 200
    assert reply.json()["predictions"] == CLASSES
    assert "setosa, versicolor, virginica" in done.stdout
    assert "load test" in done.stdout and "errors 0" in done.stdout


def test_rerun_takes_the_next_version_selects_only_among_it_and_reuses_the_cache(platform: ServerProcess) -> None:
    done = example_again(platform, "--neighbors", "4")
    assert done.returncode == 0, done.stdout + done.stderr
    mr = registry(platform)
    assert mr.get_model_version("KNN_4", "v2") is not None  # no --version: the run took the next one
    # KNN_9 v1 may score higher, but selection looks at v2 only
    assert mr.get_model_version("KNN_9", "v2") is None
    assert served_storage_uri(platform) == "pvc://model-pvc/models/KNN_4/v2/model"
    reply = httpx.post(platform.url + PREDICT, json={"instances": SAMPLES})
    assert reply.json()["predictions"] == CLASSES
    # loading and scaling the same data were answered from the KFP cache, and the summary says so
    assert cached_in_summary(done.stdout) >= 2


def test_no_cache_runs_every_task_and_a_failed_training_task_registers_nothing(platform: ServerProcess) -> None:
    """One run checks both (a run fewer, ~7 s of CPU): without the cache, loading and scaling the same data run
    again; k=500 is more neighbours than training rows, so that training task fails and the run with it."""
    done = example_again(platform, "--neighbors", "4,500", "--version", "v3", "--no-cache")
    assert done.returncode != 0
    assert "train-knn" in done.stderr + done.stdout
    mr = registry(platform)
    assert mr.get_registered_model("KNN_500") is None
    assert mr.get_model_version("KNN_4", "v3") is not None  # the other training task still registered its model
    runs = httpx.get(platform.url + "/apis/v2beta1/runs", params={"page_size": 1, "sort_by": "created_at desc"})
    (run,) = runs.json()["runs"]
    assert run["display_name"] == "iris-training-v3" and run["state"] == "FAILED"
    tasks = httpx.get(platform.url + f"/apis/v2beta1/runs/{run['run_id']}").json()["run_details"]["task_details"]
    names = {task["display_name"] for task in tasks}
    assert {"load-iris-data", "normalize-data"} <= names, names  # the tasks the rerun answered from the cache ran again
    assert not any(task.get("cache_hit") for task in tasks), tasks
    assert served_storage_uri(platform) == "pvc://model-pvc/models/KNN_4/v2/model"  # a failed run deploys nothing


def cached_in_summary(stdout: str) -> int:
    found = re.search(r"(\d+) tasks from the cache", " ".join(stdout.split()))
    assert found, stdout
    return int(found.group(1))
