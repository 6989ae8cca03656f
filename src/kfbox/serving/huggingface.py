"""The ``huggingface`` model format: a transformers text classifier, safetensors only.

Follows KServe's Hugging Face runtime where it fits: V1 ``{"instances": ["text", ...]}`` answers
``{"predictions": [class_id, ...]}``; V2 takes a BYTES tensor of texts. Loading a model folder must
not run code: a ``config.json`` asking for ``trust_remote_code`` (an ``auto_map``, or ``.py`` files
next to it) and weights only in pickle formats (``.bin``, ``.pt``, ``.pth``, ``.ckpt``, ``.pkl``) are
refused unless the InferenceService opted in with ``serving.kfbox.io/allow-unsafe-pickle: "true"``
(both are code execution, one opt-in covers them).

Imported only inside a replica process, and torch/transformers only when the model loads: they
are the ``kfbox[llm]`` extra.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
from kserve import InferRequest, Model
from kserve.errors import InvalidInput as KserveInvalidInput
from kserve.utils.utils import get_predict_input, get_predict_response

from kfbox.errors import InvalidInput
from kfbox.storage.confine import check_canonical

PICKLE_WEIGHTS = (".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle")
OPT_IN = 'annotation serving.kfbox.io/allow-unsafe-pickle: "true"'
MAX_TEXTS = 256


def check_model_folder(path: Path, allow_unsafe: bool) -> None:
    """Refuse a folder that would run code when loaded, unless the service opted in; say which file."""
    if not path.is_dir() or not (path / "config.json").is_file():
        raise InvalidInput(f"{path} is not a Hugging Face model folder (no config.json). Point storageUri at the "
                           "folder save_pretrained() wrote.")
    if allow_unsafe:
        return
    config = json.loads((path / "config.json").read_text())
    code = sorted(p.name for p in path.glob("*.py"))
    if config.get("auto_map") or code:
        raise InvalidInput(f"Model {path} asks for trust_remote_code (config.json auto_map "
                           f"{sorted(config.get('auto_map') or {})}, code files {code}): loading it runs its code, "
                           f"so it is refused. Serve a model of a built-in architecture, or opt in with {OPT_IN}.")
    weights = sorted(p.name for p in path.iterdir() if p.suffix in (".safetensors", *PICKLE_WEIGHTS))
    if not any(name.endswith(".safetensors") for name in weights):
        raise InvalidInput(f"Model {path} has no .safetensors weights (found {weights or 'none'}): pickle formats "
                           "run code when loaded, so they are refused. Save with save_pretrained("
                           f"safe_serialization=True), or opt in with {OPT_IN}.")


class HuggingFaceClassifier(Model):  # type: ignore[misc]  # kserve ships no types
    """A sequence classifier from a ``save_pretrained`` folder, served over V1 and V2."""

    def __init__(self, name: str, path: Path, allow_unsafe: bool = False) -> None:
        super().__init__(name)
        self.path = path
        self.allow_unsafe = allow_unsafe
        self.labels: list[str] = []
        self._model: Any = None
        self._tokenizer: Any = None

    def load(self) -> bool:
        check_canonical(self.path)
        check_model_folder(self.path, self.allow_unsafe)
        try:
            import torch
            from transformers import AutoModelForSequenceClassification, AutoTokenizer
        except ImportError as exc:
            raise RuntimeError("Model format 'huggingface' needs the llm extra: pip install 'kfbox[llm]'") from exc
        torch.set_num_threads(max(1, min(2, torch.get_num_threads())))
        self._tokenizer = AutoTokenizer.from_pretrained(self.path, trust_remote_code=self.allow_unsafe)
        self._model = AutoModelForSequenceClassification.from_pretrained(
            self.path, trust_remote_code=self.allow_unsafe, use_safetensors=not self.allow_unsafe or None).eval()
        id2label = self._model.config.id2label or {}
        self.labels = [str(id2label.get(i, i)) for i in range(self._model.config.num_labels)]
        self.ready = True
        return True

    def predict(self, payload: dict[str, Any] | InferRequest, headers: dict[str, str] | None = None) -> Any:
        texts = _texts(payload)
        import torch

        with torch.no_grad():
            batch = self._tokenizer(texts, truncation=True, max_length=512, padding=True, return_tensors="pt")
            logits = self._model(**batch).logits
        classes = logits.argmax(-1).numpy()
        if isinstance(payload, dict) and payload.get("return_labels"):  # a kfbox addition for people
            return {"predictions": [self.labels[int(c)] for c in classes],
                    "probabilities": logits.softmax(-1).numpy().round(4).tolist()}
        return get_predict_response(payload, np.asarray(classes), self.name)


def _texts(payload: dict[str, Any] | InferRequest) -> list[str]:
    if isinstance(payload, dict):
        rows = payload.get("instances", payload.get("inputs"))
        if not isinstance(rows, list) or not rows:
            raise KserveInvalidInput('Expected "instances": a non-empty list of texts, e.g. '
                                     '{"instances": ["It worked well with no side effects."]}.')
    else:
        rows = list(np.asarray(get_predict_input(payload)).reshape(-1))
    texts = [r.decode("utf-8", errors="replace") if isinstance(r, bytes) else r for r in rows]
    if not all(isinstance(t, str) for t in texts):
        raise KserveInvalidInput(f"Every instance must be a text (string); got {[type(t).__name__ for t in texts]}.")
    if len(texts) > MAX_TEXTS:
        raise KserveInvalidInput(f"{len(texts)} texts in one request; send at most {MAX_TEXTS}.")
    return texts
