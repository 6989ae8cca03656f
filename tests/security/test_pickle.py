"""Model files are code: a pickle's ``__reduce__`` must not run when kfbox serves it, unless opted in.

Through a real server and real replicas: a ``.pkl`` and a ``.joblib`` whose ``__reduce__`` writes
a marker file are refused (the marker never appears, the service says why and how to opt in);
the annotation ``serving.kfbox.io/allow-unsafe-pickle: "true"`` loads them (and the server-wide
``KFBOX_ALLOW_UNSAFE_PICKLE=1`` sets the same replica flag); real scikit-learn models still
serve by default.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import pytest

from kfbox.config import Settings
from kfbox.serving.pool import PoolConfig, ReplicaPool
from kfbox.serving.spec import InferenceServiceSpec
from kfbox.serving.unpickle import UnsafePickle, load_model_file
from tests.serving.helpers import ROWS, apply, delete, manifest, ready, status, v1, wait_for, wait_ready
from tests.support import ServerProcess

OPT_IN = {"serving.kfbox.io/allow-unsafe-pickle": "true"}


class Booby:
    """Unpickles into a working iris model, after writing a marker file: code run at load time."""

    def __init__(self, marker: Path, model: Any) -> None:
        self.marker, self.model = marker, model

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        payload = pickle.dumps(self.model)
        code = f"[open({str(self.marker)!r}, 'w').write('pwned'), __import__('pickle').loads({payload!r})][1]"
        return (eval, (code,))


# numpy and sklearn are imported where used: every pytest worker imports this module (~1.7 s of CPU for them).
def iris_model(kind: str = "knn") -> Any:
    from sklearn.datasets import load_iris
    from sklearn.neighbors import KNeighborsClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    features, labels = load_iris(return_X_y=True)
    model = KNeighborsClassifier() if kind == "knn" else make_pipeline(StandardScaler(), KNeighborsClassifier(3))
    return model.fit(features, labels)


def dump(model: Any, path: Path) -> None:
    import joblib

    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".joblib":
        joblib.dump(model, path)
    else:
        path.write_bytes(pickle.dumps(model))


@pytest.fixture(scope="module")
def server(shared_server: ServerProcess) -> ServerProcess:
    return shared_server  # the package's plain server (tests/security/conftest.py)


def wait_failure(server: ServerProcess, name: str, marker: Path) -> str:
    with server.client() as client:
        def failed() -> str | None:
            assert not marker.exists(), "the model file's code ran"
            condition = ready(status(client, name))
            return condition.get("message") if condition.get("reason") == "ModelLoadFailed" else None
        return wait_for(failed, 90, f"{name} to fail loading")


@pytest.mark.parametrize("suffix", [".pkl", ".joblib"])
def test_code_in_a_model_file_does_not_run(server: ServerProcess, home: Path, suffix: str) -> None:
    marker = home / f"marker{suffix}"
    name = f"booby{suffix[1:]}"
    dump(Booby(marker, iris_model()), home / "pvc" / "models" / name / f"model{suffix}")
    with server.client() as client:
        apply(client, manifest(name, f"pvc://models/{name}"))
    message = wait_failure(server, name, marker)
    assert "builtins.eval" in message, message
    assert 'serving.kfbox.io/allow-unsafe-pickle: "true"' in message and "KFBOX_ALLOW_UNSAFE_PICKLE=1" in message
    assert not marker.exists()
    with server.client() as client:
        assert v1(client, name).status_code >= 500
        delete(client, name)
    assert not marker.exists()


def test_annotation_opts_in_to_unsafe_pickle(server: ServerProcess, home: Path) -> None:
    import numpy as np

    marker = home / "marker-opted-in"
    model = iris_model()
    dump(Booby(marker, model), home / "pvc" / "models" / "trusted" / "model.pkl")
    with server.client() as client:
        apply(client, manifest("trusted", "pvc://models/trusted", annotations=OPT_IN))
        wait_ready(client, "trusted")
        reply = v1(client, "trusted")
    assert reply.json()["predictions"] == model.predict(np.array(ROWS)).tolist()
    assert marker.read_text() == "pwned"  # it is the user's call, and it did run


def test_a_real_sklearn_model_serves_by_default(server: ServerProcess, home: Path) -> None:
    """An iris KNN behind a StandardScaler, as joblib (plain .pkl models: the loader test below)."""
    import numpy as np

    name = "pipeline-joblib"
    model = iris_model("pipeline")
    dump(model, home / "pvc" / "models" / name / "model.joblib")
    with server.client() as client:
        apply(client, manifest(name, f"pvc://models/{name}"))
        wait_ready(client, name)
        reply = v1(client, name)
    assert reply.status_code == 200, reply.text
    assert reply.json()["predictions"] == model.predict(np.array(ROWS)).tolist()


def test_server_wide_opt_in_reaches_every_replica(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """KFBOX_ALLOW_UNSAFE_PICKLE=1 puts the same replica flag on every service as the annotation does
    (the flag itself is proven end to end by test_annotation_opts_in_to_unsafe_pickle)."""
    monkeypatch.setenv("KFBOX_ALLOW_UNSAFE_PICKLE", "1")
    settings = Settings.load(home=str(tmp_path))
    assert settings.allow_unsafe_pickle

    class RecordingLauncher:
        """Stands in for ReplicaLauncher: records the replica's argv instead of starting a process."""

        argv: list[str] = []

        def launch(self, args: list[str], log_path: Path, env: dict[str, str] | None = None) -> Any:
            self.argv = list(args)
            return None

    spec = InferenceServiceSpec.parse(manifest("plain", "pvc://models/plain")).predictor
    for server_wide, expected_flag in ((True, True), (False, False)):
        launcher = RecordingLauncher()
        config = PoolConfig(model_name="plain", revision="plain-predictor-00001", log_dir=tmp_path, scale_window=60,
                            start_timeout=60, allow_unsafe_pickle=server_wide and settings.allow_unsafe_pickle)
        pool = ReplicaPool(config, spec, lambda uri: tmp_path, launcher)
        pool.model_path = tmp_path
        pool._spawn(0.0)
        assert ("--allow-unsafe-pickle" in launcher.argv) is expected_flag, launcher.argv


def test_nested_and_foreign_globals_are_refused(tmp_path: Path) -> None:
    """Object arrays inside a joblib file and classes outside the allowlist go through the same check."""
    import os

    import joblib
    import numpy as np
    import pandas as pd
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import FunctionTransformer, StandardScaler

    cases = {"object-array.joblib": np.array([{"a": 1}, os.system], dtype=object),
             "frame.pkl": pd.DataFrame({"a": [1]}),
             "compressed.joblib": [Booby(tmp_path / "m", None)]}
    for file, value in cases.items():
        path = tmp_path / file
        joblib.dump(value, path, compress=3 if "compressed" in file else 0) if path.suffix == ".joblib" else \
            path.write_bytes(pickle.dumps(value))
        with pytest.raises(UnsafePickle, match="allow-unsafe-pickle"):
            load_model_file(path)
    assert not (tmp_path / "m").exists()
    safe = make_pipeline(FunctionTransformer(np.log1p), StandardScaler()).fit(np.ones((3, 2)))
    joblib.dump(safe, tmp_path / "ufunc.joblib", compress=3)
    assert load_model_file(tmp_path / "ufunc.joblib").transform(np.ones((1, 2))).shape == (1, 2)
    for file in ("pipeline.pkl", "knn.pkl"):
        model = iris_model(file.split(".")[0])
        dump(model, tmp_path / file)
        assert load_model_file(tmp_path / file).predict(np.array(ROWS)).tolist() == \
            model.predict(np.array(ROWS)).tolist()
