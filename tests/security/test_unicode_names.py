"""One name, one identity: ``café`` typed as NFC or NFD is the same pipeline, experiment or service.

Through the real API with the upstream ``kfp.Client``: the second spelling is a conflict (409),
not a second object that looks identical, and names are stored in NFC. InferenceService names are
Kubernetes names (DNS labels, ASCII), so a non-ASCII one is refused with a 4xx that says so.
"""

from __future__ import annotations

import unicodedata
import warnings
from pathlib import Path

import kfp_server_api
import pytest
from kfp import Client, compiler

from tests.pipelines import sample_pipelines as samples
from tests.serving.helpers import API, manifest
from tests.support import ServerProcess

NFC = "caf\u00e9 model"
NFD = "cafe\u0301 model"


@pytest.fixture(scope="module")
def server(shared_server: ServerProcess) -> ServerProcess:
    return shared_server  # the package's plain server (tests/security/conftest.py)


@pytest.fixture(scope="module")
def kfp_client(server: ServerProcess) -> Client:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        return Client(host=f"{server.url}/pipeline")


@pytest.fixture(scope="module")
def package(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("package") / "pipeline.yaml"
    compiler.Compiler().compile(samples.failing, str(path))
    return path


def test_spellings_differ_but_look_alike() -> None:
    assert NFC != NFD and unicodedata.normalize("NFC", NFD) == NFC


def test_experiment_names_are_one_identity(server: ServerProcess, kfp_client: Client) -> None:
    created = kfp_client.create_experiment(NFD)
    assert created.display_name == NFC  # stored normalised
    assert kfp_client.create_experiment(NFC).experiment_id == created.experiment_id  # get-or-create finds it
    assert kfp_client.create_experiment(NFD).experiment_id == created.experiment_id  # by either spelling
    assert kfp_client.get_experiment(experiment_name=NFD).experiment_id == created.experiment_id
    with server.client() as client:
        twin = client.post("/apis/v2beta1/experiments", json={"display_name": NFD})
    assert twin.status_code == 409 and "already exists" in twin.text, twin.text
    names = [e.display_name for e in kfp_client.list_experiments(page_size=100).experiments or []]
    assert [unicodedata.normalize("NFC", n) for n in names].count(NFC) == 1, names


def test_pipeline_names_are_one_identity(kfp_client: Client, package: Path) -> None:
    first = kfp_client.upload_pipeline(str(package), pipeline_name=NFC)
    with pytest.raises(kfp_server_api.ApiException) as exc:
        kfp_client.upload_pipeline(str(package), pipeline_name=NFD)
    assert exc.value.status == 409 and "already exists" in str(exc.value.body)
    names = [p.display_name for p in kfp_client.list_pipelines(page_size=100).pipelines or []]
    assert [unicodedata.normalize("NFC", n) for n in names].count(NFC) == 1, names
    assert kfp_client.get_pipeline(first.pipeline_id).display_name == NFC
    assert kfp_client.get_pipeline_id(NFD) == first.pipeline_id


def test_a_nul_in_a_name_is_refused(server: ServerProcess) -> None:
    """SQLite would store it and PostgreSQL would fail with a 500: refused alike on every database."""
    with server.client() as client:
        reply = client.post("/apis/v2beta1/experiments", json={"display_name": "a\u0000b"})
    assert reply.status_code == 400 and "control characters (found U+0000)" in reply.json()["message"], reply.text


@pytest.mark.parametrize("name", ["caf\u00e9", "cafe\u0301", "iris\n"])
def test_inference_service_names_must_be_ascii_dns_labels(server: ServerProcess, name: str) -> None:
    with server.client() as client:
        before = client.get(API.format(ns="default")).json()["items"]  # the package's server: others' services
        reply = client.post(API.format(ns="default"), json=manifest(name, "pvc://models/iris"))
        assert reply.status_code in (400, 422), reply.text
        assert "DNS label" in reply.text
        if not name.strip().isascii():
            assert "ASCII" in reply.text
        assert client.get(API.format(ns="default")).json()["items"] == before  # nothing created
