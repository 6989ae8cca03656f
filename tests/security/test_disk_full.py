"""A full disk: writes answer 507 with a message, nothing half-written stays, reads keep working.

The server's home (SQLite database, logs, everything) lives on a small tmpfs mounted for this
module (we run as root; where mounting is not permitted the module skips with the mount error).
Once the tmpfs is filled to the last byte: creating an experiment, uploading a pipeline,
registering a model and applying an InferenceService answer 507 Insufficient Storage, none of
them leaves a trace (nor does an s3:// model download into the serving cache), every read
answers 200, and after the filler is removed the same writes succeed.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from kfp import compiler

from kfbox.config import Settings
from kfbox.errors import InsufficientStorage
from kfbox.storage import UriResolver
from tests.pipelines import sample_pipelines as samples
from tests.serving.helpers import API, manifest
from tests.support import ServerProcess, moto_s3

REGISTRY = "/api/model_registry/v1alpha3"
SIZE = "48m"


def fill(path: Path) -> None:
    """Write ``path`` until the filesystem has not one byte left."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    try:
        for chunk in (1 << 20, 1 << 16, 1 << 12, 1 << 8, 1):
            with contextlib.suppress(OSError):
                while True:
                    os.write(fd, b"\0" * chunk)
    finally:
        os.close(fd)


@pytest.fixture(scope="module")
def mount(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    point = tmp_path_factory.mktemp("tmpfs")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={SIZE}", "tmpfs", str(point)], capture_output=True,
                          text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a {SIZE} tmpfs at {point} to fill: {done.stderr.strip() or done.returncode}")
    yield point
    subprocess.run(["umount", "-l", str(point)], check=False)


@pytest.fixture(scope="module")
def package(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    path = tmp_path_factory.mktemp("package") / "pipeline.yaml"
    compiler.Compiler().compile(samples.failing, str(path))
    return path.read_bytes()


@pytest.fixture(scope="module")
def server(mount: Path, package: bytes) -> Iterator[ServerProcess]:
    proc = ServerProcess.start(mount / "home")
    with proc.client() as client:  # what the reads will find once the disk is full
        assert client.post("/apis/v2beta1/experiments", json={"display_name": "kept"}).status_code == 200
        assert upload(client, "kept", package).status_code == 200
        assert client.post(f"{REGISTRY}/registered_models", json={"name": "kept"}).status_code in (200, 201)
    fill(mount / "filler")
    yield proc
    (mount / "filler").unlink(missing_ok=True)
    proc.stop()


def upload(client: httpx.Client, name: str, package: bytes) -> httpx.Response:
    return client.post("/apis/v2beta1/pipelines/upload", params={"name": name},
                       files={"uploadfile": ("pipeline.yaml", package, "application/x-yaml")})


def writes(client: httpx.Client, package: bytes) -> dict[str, httpx.Response]:
    return {
        "experiment": client.post("/apis/v2beta1/experiments", json={"display_name": "new"}),
        "pipeline": upload(client, "new", package),
        "model": client.post(f"{REGISTRY}/registered_models", json={"name": "new"}),
        "service": client.post(API.format(ns="default"), json=manifest("new", "pvc://models/new")),
    }


def test_writes_answer_507_with_a_message(server: ServerProcess, mount: Path, package: bytes) -> None:
    assert os.statvfs(mount).f_bavail == 0
    with server.client() as client:
        replies = writes(client, package)
    for what, reply in replies.items():
        assert reply.status_code == 507, (what, reply.status_code, reply.text)
        assert "No space left" in reply.text and "nothing was saved" in reply.text, (what, reply.text)


def test_s3_model_download_leaves_no_partial_copy(mount: Path, server: ServerProcess) -> None:
    """The serving cache downloads an s3:// model into a staging folder; on a full disk it is removed."""
    with moto_s3("models") as (endpoint, s3):
        s3.put_object(Bucket="models", Key="iris/model.joblib", Body=os.urandom(256 * 1024))
        settings = Settings(home=mount / "home", s3_endpoint=endpoint, s3_access_key="test", s3_secret_key="test")
        with pytest.raises(InsufficientStorage, match="No space left"):
            UriResolver(settings).localize("s3://models/iris")
        cache = settings.serving_dir / "cache"
        assert not cache.exists() or list(cache.iterdir()) == []


def test_nothing_half_written_and_reads_still_work(server: ServerProcess) -> None:
    with server.client() as client:
        assert client.get("/healthz").status_code == 200
        experiments = client.get("/apis/v2beta1/experiments")
        pipelines = client.get("/apis/v2beta1/pipelines")
        models = client.get(f"{REGISTRY}/registered_models")
        services = client.get(API.format(ns="default"))
        assert [r.status_code for r in (experiments, pipelines, models, services)] == [200] * 4
        assert "new" not in [e["display_name"] for e in experiments.json()["experiments"]]
        assert [p["display_name"] for p in pipelines.json()["pipelines"]] == ["kept"]
        assert [m["name"] for m in models.json()["items"]] == ["kept"]
        assert services.json()["items"] == []
        assert client.get("/").status_code == 200


def test_writes_work_again_once_space_is_freed(server: ServerProcess, mount: Path, package: bytes) -> None:
    (mount / "filler").unlink()
    with server.client() as client:
        replies = writes(client, package)
        assert {what: r.status_code for what, r in replies.items()} == \
            {"experiment": 200, "pipeline": 200, "model": 201, "service": 201}, {w: r.text for w, r in replies.items()}
        assert client.get(API.format(ns="default") + "/new").status_code == 200
