"""A stock KServe sklearn server for side-by-side protocol tests, run as ``python -m tests.serving.stock_sklearn``.

It is what upstream's ``sklearnserver`` does (that package is not installed here): joblib-load
the one model file, ``get_predict_input`` -> ``model.predict`` -> ``get_predict_response``, any
error an ``InferenceError`` — served by the installed ``kserve.ModelServer``.

    python -m tests.serving.stock_sklearn MODEL_DIR MODEL_NAME HTTP_PORT [kserve's own flags]

kserve's own flags (e.g. ``--log_config_file``) are read by ``kserve.model_server`` as upstream's are.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import joblib
from kserve import Model, ModelServer
from kserve.errors import InferenceError
from kserve.utils.utils import get_predict_input, get_predict_response


class StockSKLearnModel(Model):
    def __init__(self, name: str, model_dir: Path) -> None:
        super().__init__(name)
        self.model_dir = model_dir

    def load(self) -> bool:
        (model_file,) = [p for p in self.model_dir.iterdir() if p.suffix in (".joblib", ".pkl", ".pickle")]
        self._model = joblib.load(model_file)  # our own test model: a trusted file
        self.ready = True
        return True

    def predict(self, payload: Any, headers: dict[str, str] | None = None) -> Any:
        try:
            return get_predict_response(payload, self._model.predict(get_predict_input(payload)), self.name)
        except Exception as exc:  # upstream's sklearnserver turns every failure into this
            raise InferenceError(str(exc)) from exc


if __name__ == "__main__":
    model_dir, name, port = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3])
    model = StockSKLearnModel(name, model_dir)
    model.load()
    ModelServer(http_port=port, enable_grpc=False, enable_latency_logging=False).start([model])
