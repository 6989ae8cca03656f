"""Model runtimes: small ``kserve.Model`` subclasses that load a model file and predict.

Imported only inside a replica process (``kfbox.serving.replica``), never by the server:
loading a model runs its code. Upstream ships the sklearn/xgboost/lightgbm servers as
separate packages that are not installed here; these classes do the same job and are
served by the upstream ``kserve.ModelServer``.

The model file is opened once, inside its checked folder (``kfbox.storage.confine``: a link
swapped in since the InferenceService was applied is refused), and that open file is what is
read. Pickle/joblib files go through the restricted unpickler (``kfbox.serving.unpickle``)
unless the service opted in to unsafe pickles; xgboost and lightgbm load their native formats.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import shutil
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
from kserve import InferRequest, Model
from kserve.errors import InvalidInput
from kserve.utils.utils import get_predict_input, get_predict_response

from kfbox.errors import KfboxError
from kfbox.serving.sklearn_calls import serving_predict
from kfbox.serving.unpickle import UnsafePickle, load_model_file
from kfbox.storage.confine import check_canonical, open_inside

MODEL_FILES = {
    "sklearn": (".joblib", ".pkl", ".pickle"),
    "xgboost": (".bst", ".json", ".ubj"),
    "lightgbm": (".bst", ".txt"),
}


def find_model_file(path: Path, model_format: str) -> Path:
    """The model file itself, or the one file with a known extension in a folder."""
    if path.is_file():
        return path
    suffixes = MODEL_FILES[model_format]
    found = sorted(p for p in path.iterdir() if p.is_file() and p.suffix in suffixes) if path.is_dir() else []
    if len(found) != 1:
        names = ", ".join(p.name for p in found) or "none"
        raise FileNotFoundError(f"Expected exactly one {'/'.join(suffixes)} model file in {path}; found {names}.")
    return found[0]


class TabularModel(Model):  # type: ignore[misc]  # kserve ships no types
    """A model that predicts rows of numbers: V1 ``instances``/``inputs`` or a V2 tensor."""

    def __init__(self, name: str, path: Path, model_format: str, allow_unsafe_pickle: bool = False) -> None:
        super().__init__(name)
        self.path = path
        self.model_format = model_format
        self.allow_unsafe_pickle = allow_unsafe_pickle
        self._predict: Callable[[Any], Any] | None = None

    def load(self) -> bool:
        check_canonical(self.path)
        model_file = find_model_file(self.path, self.model_format)
        with open_inside(model_file, self.path, str(self.path)) as handle:
            try:
                self._predict = LOADERS[self.model_format](model_file, handle, self.allow_unsafe_pickle)
            except (UnsafePickle, KfboxError):
                raise
            except Exception as exc:  # whatever a corrupt file raises, say which file it was
                raise RuntimeError(f"cannot load {model_file} as a {self.model_format} model "
                                   f"({type(exc).__name__}: {exc})") from exc
        self.ready = True
        return True

    def predict(self, payload: dict[str, Any] | InferRequest, headers: dict[str, str] | None = None) -> Any:
        if isinstance(payload, dict):
            rows = payload.get("inputs", payload.get("instances"))
            if rows is None:
                raise InvalidInput('Expected "instances" (or "inputs") in the request body: {"instances": [[...]]}.')
            if not isinstance(rows, list) or not rows:
                raise InvalidInput('"instances" must be a non-empty list of rows, e.g. [[5.1, 3.5, 1.4, 0.2]].')
        try:
            data = get_predict_input(payload)
            assert self._predict is not None
            if hasattr(data, "columns"):  # V2 with content_type "pd": a DataFrame of mixed column types goes to
                result = self._predict(data)  # the model as is (a Pipeline encodes it), as upstream's sklearnserver
            else:
                array = np.asarray(data)
                if array.dtype.kind not in "biuf":
                    array = array.astype(np.float64)
                if array.ndim != 2:
                    raise ValueError(f"expected a 2-D batch of rows, got an array of shape {list(array.shape)}")
                result = self._predict(array)
        except (ValueError, TypeError, IndexError) as exc:
            raise InvalidInput(f"Cannot predict on this input: {exc}") from exc
        result = np.asarray(result)
        if result.dtype.kind == "U":  # class names: kserve's V2 encoder takes str from an object array only
            result = result.astype(object)  # (from a "U" array it fails, a 500); V1 lists the same strings
        return get_predict_response(payload, result, self.name)


def _load_sklearn(path: Path, handle: BinaryIO, allow_unsafe: bool) -> Callable[[Any], Any]:
    model = load_model_file(path, handle, allow_unsafe=allow_unsafe)
    if not hasattr(model, "predict"):
        raise TypeError(f"{path} holds a {type(model).__name__}, which has no predict() method.")
    return serving_predict(model)


@contextlib.contextmanager
def private_copy(path: Path, handle: BinaryIO) -> Iterator[str]:
    """The checked open file's bytes in a private temporary file with the same name, for libraries
    that load by file name (and pick the format by its extension): nothing can swap it under them."""
    with tempfile.TemporaryDirectory(prefix="kfbox-model-") as folder:
        copy = Path(folder) / path.name
        with open(copy, "wb") as out:
            shutil.copyfileobj(handle, out)
        yield str(copy)


def _load_xgboost(path: Path, handle: BinaryIO, allow_unsafe: bool) -> Callable[[Any], Any]:
    xgb = _optional("xgboost")
    with private_copy(path, handle) as model_file:
        booster = xgb.Booster(model_file=model_file)
    return lambda rows: booster.predict(xgb.DMatrix(rows))


def _load_lightgbm(path: Path, handle: BinaryIO, allow_unsafe: bool) -> Callable[[Any], Any]:
    lgb = _optional("lightgbm")
    with private_copy(path, handle) as model_file:
        booster = lgb.Booster(model_file=model_file)
    predict: Callable[[Any], Any] = booster.predict
    return predict


def _optional(name: str) -> Any:
    try:
        return importlib.import_module(name)
    except ImportError as exc:
        raise RuntimeError(f"Model format {name!r} needs the {name} package: pip install {name}") from exc


LOADERS: dict[str, Callable[[Path, BinaryIO, bool], Callable[[Any], Any]]] = {
    "sklearn": _load_sklearn, "xgboost": _load_xgboost, "lightgbm": _load_lightgbm,
}


def custom_model(name: str, model_class: str, python_path: str | None, model_dir: Path | None) -> Any:
    """Instantiate a user's ``kserve.Model`` subclass; it finds its files in ``KFBOX_MODEL_DIR``."""
    if python_path:
        sys.path.insert(0, python_path)
    if model_dir is not None:
        check_canonical(model_dir)  # a link swapped in since the URI was checked
        os.environ["KFBOX_MODEL_DIR"] = str(model_dir)
    module_name, _, class_name = model_class.partition(":")
    cls = getattr(importlib.import_module(module_name), class_name)
    if not (isinstance(cls, type) and issubclass(cls, Model)):
        raise TypeError(f"{model_class} is not a kserve.Model subclass.")
    model = cls(name)
    model.load()
    return model


def build_model(name: str, model_format: str, model_path: Path | None, model_class: str | None,
                python_path: str | None, allow_unsafe_pickle: bool = False) -> Any:
    if model_format == "custom":
        assert model_class is not None
        return custom_model(name, model_class, python_path, model_path)
    assert model_path is not None
    if model_format == "huggingface":  # torch/transformers: imported only for this format (kfbox[llm])
        from kfbox.serving.huggingface import HuggingFaceClassifier

        classifier = HuggingFaceClassifier(name, model_path, allow_unsafe_pickle)
        classifier.load()
        return classifier
    model = TabularModel(name, model_path, model_format, allow_unsafe_pickle)
    model.load()
    return model
