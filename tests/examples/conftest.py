"""One platform for the LLM modules of this package: the workflow, the served QA and its ranking.

``kfbox example llm`` deploys ``review-qa`` (examples/llm/qa.yaml) as part of the workflow, and the
serving and ranking tests ask that same service: one ``kfbox up`` and one ``review-qa`` replica
(torch, transformers and MiniLM loaded once, several seconds of CPU) serve all three modules instead
of a server and a replica each plus the model loaded again in the test process. tests/conftest.py
places every module asking for these fixtures on one xdist worker.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml

from tests.examples.llm_support import NAMESPACE, SERVICES, ready_condition
from tests.support import ServerProcess

QA_MANIFEST = Path(__file__).resolve().parents[2] / "examples" / "llm" / "qa.yaml"


@pytest.fixture(scope="package")
def llm_platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """A real ``kfbox up``, offline for the hub, shared by the package's LLM modules, with a cache folder of its
    own: the QA model's safetensors copy of SmolLM2 (kfbox.serving.qa) is made in it, never in the user's.

    The spare pipeline worker stays on (tests/support.py's ``lean_env``): the workflow's torch tasks
    fork from the warm task server after its hand-over, which the workflow test checks.
    """
    cache = tmp_path_factory.mktemp("llm-cache")  # not the user's ~/.cache: each run loads SmolLM2 from its GGUF file
    proc = ServerProcess.start(tmp_path_factory.mktemp("llm-home"),
                               extra_env={"HF_HUB_OFFLINE": "1", "XDG_CACHE_HOME": str(cache)})
    yield proc
    proc.stop()


@pytest.fixture(scope="package")
def review_qa(llm_platform: ServerProcess) -> str:
    """``review-qa`` from examples/llm/qa.yaml, Ready: the path of its V1 predict.

    Created here from the manifest unless ``kfbox example llm`` (tests/examples/test_llm_workflow.py,
    first on an xdist worker: slow tests go first) already applied it on this platform.
    """
    with httpx.Client(base_url=llm_platform.url, timeout=120) as http:
        if http.get(f"{SERVICES}/review-qa").status_code == 404:
            reply = http.post(SERVICES, json=yaml.safe_load(QA_MANIFEST.read_text()))
            assert reply.status_code in (200, 201), reply.text
        ready = ready_condition(http, "review-qa", 120)
    assert ready["status"] == "True", ready
    return f"/serving/{NAMESPACE}/review-qa/v1/models/review-qa:predict"
