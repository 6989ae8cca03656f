"""A V2 model for the dashboard's tests: the user's own kserve ``Model`` class (``serving.kfbox.io/model-class``)
around a trained iris classifier, declaring its four inputs as a model with a signature does (the stock sklearn
server declares none, and keeps the V1 form)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

IRIS_V2 = '''
import os
import joblib
import numpy as np
from kserve import Model
from kserve.utils.utils import get_predict_response

NAMES = ["sepal_length", "sepal_width", "petal_length", "petal_width"]


class IrisV2(Model):
    """Iris with a V2 signature: four FP64 inputs, one class index out."""

    def load(self):
        folder = os.environ["KFBOX_MODEL_DIR"]
        self.model = joblib.load(os.path.join(folder, "model.joblib"))
        self.ready = True
        return True

    def get_input_types(self):
        return [{"name": n, "datatype": "FP64", "shape": [-1, 1]} for n in NAMES]

    def get_output_types(self):
        return [{"name": "output-0", "datatype": "INT64", "shape": [-1]}]

    def predict(self, payload, headers=None):
        by_name = {i.name: i.as_numpy().reshape(-1) for i in payload.inputs}
        rows = np.column_stack([by_name[n] for n in NAMES])
        print(f"scored {len(rows)} row(s): {rows.tolist()}", flush=True)
        return get_predict_response(payload, self.model.predict(rows), self.name)
'''


def write_iris_v2(code: Path) -> Path:
    """The model's module (``iris_v2.py``) in the folder ``code``, for ``serving.kfbox.io/python-path``."""
    code.mkdir(parents=True, exist_ok=True)
    (code / "iris_v2.py").write_text(IRIS_V2)
    return code


def iris_v2_manifest(uri: str, code: Path) -> dict[str, Any]:
    """The InferenceService ``iris-v2`` (V2 protocol): :data:`IRIS_V2` from ``code`` serving the model at ``uri``."""
    return {"apiVersion": "serving.kserve.io/v1beta1", "kind": "InferenceService",
            "metadata": {"name": "iris-v2", "namespace": "default",
                         "annotations": {"serving.kfbox.io/model-class": "iris_v2:IrisV2",
                                         "serving.kfbox.io/python-path": str(code)}},
            "spec": {"predictor": {"model": {"modelFormat": {"name": "custom"}, "protocolVersion": "v2",
                                             "storageUri": uri}}}}
