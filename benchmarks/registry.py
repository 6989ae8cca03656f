"""Model Registry benchmark: kfbox's registry against MLflow's model registry, in one run.

1. ``kfbox up`` start-to-ready time (fresh home: migrations included) and idle RSS.
2. Registration: a new model + version + model artifact through kfbox's HTTP API (three
   calls, what ``ModelRegistry.register_model`` sends) against ``MlflowClient
   .create_registered_model`` + ``create_model_version`` on ``mlflow server`` (SQLite).
3. Listing 10,000 versions of one model: kfbox ``GET .../registered_models/{id}/versions``
   pages against ``MlflowClient.search_model_versions`` pages. Both stores are seeded in
   bulk through their own storage layer first, so seeding time is not measured.

    .venv/bin/pip install -e '.[bench]'
    .venv/bin/python benchmarks/registry.py [--registrations 300] [--versions 10000]

Goals: both ratios >= 2x MLflow; start-to-ready < 1.5 s; idle RSS < 150 MB. Figures depend
on the machine and its load: compare the ratios, not absolute numbers.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx

V1 = "/api/model_registry/v1"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_ready(url: str, process: subprocess.Popen[bytes], timeout: float = 120) -> float:
    start = time.perf_counter()
    while time.perf_counter() - start < timeout:
        if process.poll() is not None:
            raise RuntimeError(f"{process.args} exited with {process.returncode}")
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return time.perf_counter() - start
        except httpx.HTTPError:
            pass
        time.sleep(0.005)
    raise RuntimeError(f"{url} not ready in {timeout}s")


@contextlib.contextmanager
def kfbox(home: Path) -> Iterator[tuple[str, subprocess.Popen[bytes], float]]:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("KFBOX_")}
    started = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "kfbox", "up", "--port", str(port), "--home", str(home)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(f"{url}/healthz", proc)
        yield url, proc, time.perf_counter() - started
    finally:
        proc.terminate()
        proc.wait(30)


@contextlib.contextmanager
def mlflow_server(root: Path) -> Iterator[str]:
    port = free_port()
    mlflow = Path(sys.executable).with_name("mlflow")
    proc = subprocess.Popen([str(mlflow), "server", "--backend-store-uri", f"sqlite:///{root / 'mlflow.db'}",
                             "--default-artifact-root", (root / "artifacts").as_uri(), "--host", "127.0.0.1",
                             "--port", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(f"{url}/health", proc, timeout=180)
        yield url
    finally:
        os.killpg(proc.pid, 15)
        proc.wait(30)


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def rate(count: int, fn: Callable[[int], None]) -> float:
    start = time.perf_counter()
    for i in range(count):
        fn(i)
    return count / (time.perf_counter() - start)


def seed_kfbox(home: Path, versions: int) -> None:
    """Bulk-create one model with ``versions`` versions through kfbox's own store."""
    from kfbox.config import Settings
    from kfbox.db import Database
    from kfbox.registry import kinds, store

    home.mkdir(parents=True, exist_ok=True)
    db = Database(Settings.load(home=home).db_url)
    db.upgrade()
    with db.write() as session:
        model = store.create(session, kinds.REGISTERED_MODEL, {"name": "bulk"})
        for i in range(versions):
            store.create(session, kinds.MODEL_VERSION, {"name": f"v{i}", "author": "bench",
                                                        "customProperties": {"accuracy": {
                                                            "metadataType": "MetadataDoubleValue",
                                                            "double_value": 0.9}}}, parent=model)
    db.dispose()


def seed_mlflow(root: Path, versions: int) -> None:
    """Bulk-create one model with ``versions`` versions through MLflow's own SQLAlchemy models."""
    from mlflow.store.model_registry.dbmodels.models import SqlModelVersion, SqlRegisteredModel
    from mlflow.store.model_registry.sqlalchemy_store import SqlAlchemyStore
    from sqlalchemy.orm import Session

    store = SqlAlchemyStore(f"sqlite:///{root / 'mlflow.db'}")
    store.create_registered_model("bulk")
    now = int(time.time() * 1000)
    with Session(store.engine) as session:
        session.add_all([SqlModelVersion(name="bulk", version=i + 1, creation_time=now, last_updated_time=now,
                                         user_id="bench", current_stage="None", source=f"s3://bulk/{i}",
                                         status="READY", **_workspace(SqlModelVersion))
                         for i in range(versions)])
        session.commit()
    assert SqlRegisteredModel is not None
    store.engine.dispose()


def _workspace(model: Any) -> dict[str, str]:
    return {"workspace": "default"} if "workspace" in model.__table__.c else {}


def bench_kfbox(url: str, registrations: int, versions: int) -> tuple[float, float]:
    with httpx.Client(base_url=url, timeout=60) as http:
        def register(i: int) -> None:
            model = http.post(f"{V1}/registered_models", json={"name": f"bench-{i}", "owner": "bench"}).json()
            version = http.post(f"{V1}/model_versions", json={
                "name": "v1", "registeredModelId": model["id"], "author": "bench",
                "customProperties": {"accuracy": {"metadataType": "MetadataDoubleValue", "double_value": 0.97}}}
            ).json()
            reply = http.post(f"{V1}/model_versions/{version['id']}/artifacts", json={
                "artifactType": "model-artifact", "name": f"bench-{i}", "uri": f"s3://bench/{i}",
                "modelFormatName": "sklearn", "modelFormatVersion": "1"})
            assert reply.status_code == 201, reply.text

        register_rate = rate(registrations, register)
        model_id = http.get(f"{V1}/registered_model", params={"name": "bulk"}).json()["id"]

        def list_all(_: int) -> None:
            token, seen = "", 0
            while True:
                page = http.get(f"{V1}/registered_models/{model_id}/versions",
                                params={"pageSize": "10000", "nextPageToken": token}).json()
                seen += page["size"]
                token = page["nextPageToken"]
                if not token:
                    break
            assert seen == versions, seen

        list_rates = [versions * rate(1, list_all) for _ in range(3)]
    return register_rate, statistics.median(list_rates)


def bench_mlflow(url: str, registrations: int, versions: int) -> tuple[float, float]:
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=url, registry_uri=url)

    def register(i: int) -> None:
        client.create_registered_model(f"bench-{i}")
        # await_creation_for=0: the server marks versions READY at once; don't count the client's polling
        client.create_model_version(f"bench-{i}", f"s3://bench/{i}", tags={"accuracy": "0.97"}, await_creation_for=0)

    register_rate = rate(registrations, register)

    def list_all(_: int) -> None:
        token, seen = None, 0
        while True:
            page = client.search_model_versions("name='bulk'", max_results=10_000, page_token=token)
            seen += len(page)
            token = page.token
            if not token:
                break
        assert seen == versions, seen

    list_rates = [versions * rate(1, list_all) for _ in range(3)]
    return register_rate, statistics.median(list_rates)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--registrations", type=int, default=300)
    parser.add_argument("--versions", type=int, default=10_000)
    args = parser.parse_args()
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")  # no network here, and not what we measure

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        starts, rss = [], []
        for i in range(3):
            with kfbox(root / f"fresh-{i}") as (_, proc, ready):
                starts.append(ready)
                time.sleep(2)
                rss.append(rss_mb(proc.pid))
        seed_kfbox(root / "kfbox", args.versions)
        with kfbox(root / "kfbox") as (url, _, _):
            kf_register, kf_list = bench_kfbox(url, args.registrations, args.versions)
        (root / "mlflow").mkdir()
        seed_mlflow(root / "mlflow", args.versions)
        with mlflow_server(root / "mlflow") as url:
            ml_register, ml_list = bench_mlflow(url, args.registrations, args.versions)

    print(f"kfbox up start-to-ready: median {statistics.median(starts):.2f} s "
          f"(runs: {', '.join(f'{s:.2f}' for s in starts)}; goal < 1.5 s)")
    print(f"kfbox idle RSS: {statistics.median(rss):.0f} MB (goal < 150 MB)")
    print(f"{'':28}{'kfbox':>12}{'MLflow':>12}{'ratio':>9}")
    print(f"{'register model+version /s':28}{kf_register:12.1f}{ml_register:12.1f}{kf_register / ml_register:8.2f}x")
    print(f"{'list versions /s':28}{kf_list:12.0f}{ml_list:12.0f}{kf_list / ml_list:8.2f}x")
    print("goal: ratio >= 2x MLflow")


if __name__ == "__main__":
    main()
