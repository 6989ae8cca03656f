"""A replica's environment: its native thread pools (OpenMP, BLAS) get one thread unless the server's or the
InferenceService's environment sets their variables, and ``spec.predictor.model.env`` reaches the replica.

The replicas are real processes (started cold and forked from the replica fork server) serving a brute-force KNN, whose
predict runs scikit-learn's OpenMP ``ArgKmin``: an OpenMP pool of more than one thread shows as a worker
thread that appears in ``/proc/PID/task`` at the first prediction, and none appears with one thread.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from kfbox.db import Database
from kfbox.serving.launcher import ReplicaLauncher
from kfbox.serving.pool import free_port
from kfbox.serving.spec import InferenceServiceSpec
from kfbox.serving.store import ServingStore
from tests.serving.helpers import ROWS, apply, manifest, v1, wait_for, wait_ready
from tests.serving.test_schema import ISVC, create
from tests.serving.test_schema import manifest as bare_manifest
from tests.support import ServerProcess


@pytest.fixture(scope="module")
def brute_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import joblib
    from sklearn.datasets import load_iris  # here, not at the top: every pytest worker imports this module
    from sklearn.neighbors import KNeighborsClassifier

    folder = tmp_path_factory.mktemp("brute")
    features, labels = load_iris(return_X_y=True)
    joblib.dump(KNeighborsClassifier(n_neighbors=3, algorithm="brute").fit(features, labels), folder / "model.joblib")
    return folder


@pytest.fixture(scope="module")
def forking(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ReplicaLauncher]:
    """One launcher with its replica fork server for the module: each fork server imports kserve (~2 s of CPU)."""
    launcher = ReplicaLauncher(tmp_path_factory.mktemp("forked"))
    yield launcher
    launcher.close()


def workers_started_by_predictions(launcher: ReplicaLauncher, model: Path, log: Path,
                                   env: dict[str, str] | None = None) -> tuple[int, int]:
    """Launch a replica of ``model``, wait until it is ready (no prediction yet), predict a few times;
    the replica's pid and how many threads the predictions added."""
    port = free_port()
    child = launcher.launch(["--name", "knn", "--format", "sklearn", "--model-path", str(model), "--port", str(port)],
                            log, env)
    base = f"http://127.0.0.1:{port}/v1/models/knn"
    try:
        def ready() -> bool:
            try:
                return httpx.get(base, timeout=5).status_code == 200
            except httpx.HTTPError:
                assert child.alive, log.read_text()
                return False

        wait_for(ready, timeout=120, what="the replica")
        before = len(os.listdir(f"/proc/{child.pid}/task"))
        for _ in range(5):
            reply = httpx.post(base + ":predict", json={"instances": ROWS}, timeout=10)
            assert reply.status_code == 200, reply.text
        time.sleep(0.2)
        return child.pid, len(os.listdir(f"/proc/{child.pid}/task")) - before
    finally:
        child.stop(2.0)


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="threads are counted in Linux's /proc")
def test_native_pools_get_one_thread_unless_the_services_env_says_otherwise(brute_model: Path, tmp_path: Path,
                                                                             forking: ReplicaLauncher) -> None:
    cold = ReplicaLauncher(tmp_path / "cold", warm=False)
    try:
        _, added = workers_started_by_predictions(cold, brute_model, tmp_path / "cold.log")
        assert added == 0, "a cold replica's OpenMP pool has one thread: no worker thread"
    finally:
        cold.close()
    _, added = workers_started_by_predictions(forking, brute_model, tmp_path / "forked.log")
    assert added == 0, "a forked replica's OpenMP pool has one thread: no worker thread"
    pid, added = workers_started_by_predictions(forking, brute_model, tmp_path / "forked-2.log",
                                                {"OMP_NUM_THREADS": "2"})
    fork_server = forking.fork_server
    assert fork_server is not None
    assert Path(f"/proc/{fork_server.pid}").is_dir() and pid != fork_server.pid
    assert added == 1, "the InferenceService's OMP_NUM_THREADS=2 resized the loaded pool: one worker"


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="threads are counted in Linux's /proc")
def test_the_servers_own_thread_setting_is_honoured(brute_model: Path, tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OMP_NUM_THREADS", "2")  # as in `OMP_NUM_THREADS=2 kfbox up`
    launcher = ReplicaLauncher(tmp_path / "standby")
    try:
        _, added = workers_started_by_predictions(launcher, brute_model, tmp_path / "cold.log")
        assert added == 1
    finally:
        launcher.close()


def test_the_services_env_is_parsed_and_a_change_is_a_new_revision(tmp_path: Path) -> None:
    def spec(env: list[dict[str, Any]] | None) -> InferenceServiceSpec:
        body = manifest("iris", "pvc://m/v1")
        if env is not None:
            body["spec"]["predictor"]["model"]["env"] = env
        return InferenceServiceSpec.parse(body)

    pairs = [{"name": "OMP_NUM_THREADS", "value": "2"}, {"name": "EMPTY"}, {"name": "OMP_NUM_THREADS", "value": "3"}]
    assert spec(pairs).predictor.env == {"OMP_NUM_THREADS": "3", "EMPTY": ""}  # the last one wins, as in a pod
    db = Database(f"sqlite:///{tmp_path / 'kfbox.db'}")
    try:
        db.upgrade()
        store = ServingStore(db)
        record, created = store.apply(spec(None))
        assert (record.latest, created) == (1, True)
        record, created = store.apply(spec([]))
        assert (record.latest, created) == (1, False), "no env and an empty env are the same revision"
        record, created = store.apply(spec([{"name": "OMP_NUM_THREADS", "value": "2"}]))
        assert (record.latest, created) == (2, True)
        assert record.revisions[2].env == {"OMP_NUM_THREADS": "2"}
        record, created = store.apply(spec([{"name": "OMP_NUM_THREADS", "value": "2"}]))
        assert (record.latest, created) == (2, False)
    finally:
        db.dispose()


@pytest.mark.parametrize(("entry", "field", "message"), [
    ({"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}}, "env[0].valueFrom",
     "not supported here; set value"),
    ({"name": "1BAD", "value": "x"}, "env[0].name", "must be a variable name"),
    ({"name": "OMP_NUM_THREADS", "value": 2}, "env[0].value", "must be a string"),
    ({"name": "A", "value": "x", "vaule": "y"}, "env[0]", "unknown field(s) vaule"),
])
def test_env_entries_kfbox_cannot_honour_get_422_naming_them(app_client: TestClient, entry: dict[str, Any],
                                                             field: str, message: str) -> None:
    reply = create(app_client, bare_manifest("spec.predictor.model.env", [entry]))
    assert reply.status_code == 422, reply.text
    status = reply.json()
    assert status["reason"] == "Invalid" and message in status["message"]
    assert status["details"]["causes"][0]["field"] == f"spec.predictor.model.{field}"
    assert app_client.get(f"{ISVC}/iris").status_code == 404  # nothing stored


def test_a_replica_checks_the_rows_as_sklearn_does(tmp_path: Path, forking: ReplicaLauncher) -> None:
    """The replica skips sklearn's checks of its own internal arguments (``skip_parameter_validation``), not
    of the request's rows: predictions and the errors for bad rows are the ones sklearn gives with every check."""
    import joblib
    from sklearn.datasets import load_iris
    from sklearn.neighbors import KNeighborsClassifier

    features, labels = load_iris(return_X_y=True)
    model = KNeighborsClassifier(n_neighbors=3).fit(features, labels)
    folder = tmp_path / "knn"
    folder.mkdir()
    joblib.dump(model, folder / "model.joblib")
    port = free_port()
    child = forking.launch(["--name", "knn", "--format", "sklearn", "--model-path", str(folder), "--port", str(port)],
                            tmp_path / "replica.log")
    url = f"http://127.0.0.1:{port}/v1/models/knn:predict"
    try:
        wait_for(lambda: _answers(url), timeout=120, what="the replica")
        reply = httpx.post(url, json={"instances": ROWS})
        assert reply.status_code == 200 and reply.json() == {"predictions": model.predict(ROWS).tolist()}
        for rows in ([[5.1, 3.5, 1.4]], [[5.1, 3.5, 1.4, 0.2, 9.9]]):
            with pytest.raises(ValueError) as local:
                model.predict(rows)
            reply = httpx.post(url, content=json.dumps({"instances": rows}))
            assert reply.status_code == 400, reply.text
            assert reply.json() == {"error": f"Cannot predict on this input: {local.value}"}
    finally:
        child.stop(2.0)


def _answers(url: str) -> bool:
    try:
        return httpx.post(url, json={"instances": ROWS}, timeout=5).status_code == 200
    except httpx.HTTPError:
        return False


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="threads are counted in Linux's /proc")
def test_kfbox_up_starts_the_replica_with_the_services_env(server: ServerProcess) -> None:
    """Through ``kfbox up`` (the serving package's shared server): the InferenceService's ``env`` reaches its
    replica (an OpenMP worker appears)."""
    import joblib
    from sklearn.datasets import load_iris
    from sklearn.neighbors import KNeighborsClassifier

    model = server.home / "pvc" / "models" / "knn"
    model.mkdir(parents=True)
    features, labels = load_iris(return_X_y=True)
    joblib.dump(KNeighborsClassifier(n_neighbors=3, algorithm="brute").fit(features, labels), model / "model.joblib")
    body = manifest("knn", "pvc://models/knn")
    body["spec"]["predictor"]["model"]["env"] = [{"name": "OMP_NUM_THREADS", "value": "2"}]
    with server.client() as client:
        apply(client, body)
        revision = wait_ready(client, "knn")["revisions"]["knn-predictor-00001"]
        pid = revision["pids"][0]
        before = len(os.listdir(f"/proc/{pid}/task"))
        for _ in range(5):
            assert v1(client, "knn").status_code == 200
        time.sleep(0.2)
        assert len(os.listdir(f"/proc/{pid}/task")) - before == 1
