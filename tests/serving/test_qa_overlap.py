"""The QA service's lexical score, in process: the words a sentence shares with the question, scaled over
the context. The ranking it feeds, with the real MiniLM model, is tested on the served ``review-qa`` in
tests/examples/test_llm_qa.py."""

from __future__ import annotations

import importlib.util

import pytest

if importlib.util.find_spec("rank_bm25") is None:  # tests.support.require, without marking this module `processes`
    pytest.skip("the llm extra is not installed: pip install -e '.[llm]'", allow_module_level=True)


def test_word_overlap_is_scaled_over_the_context() -> None:
    from kfbox.serving.qa import word_overlap  # here: it imports kserve, and every pytest worker imports this module

    sentences = ["It treats pain.", "A common side effect is a cough.", "Take it once a day."]
    shares_nothing, answers, shares_a = word_overlap("What is a common side effect?", sentences)
    assert (shares_nothing, answers) == (0.0, 1.0) and shares_a < 0.1  # "a" is in 2 of 3: next to no weight
    # in two sentences every word is in half of them: no weight, the embeddings alone decide
    assert word_overlap("What is a side effect?", sentences[:2]) == [0.0, 0.0]
    assert word_overlap("Anything?", ["One sentence."]) == [0.0]
