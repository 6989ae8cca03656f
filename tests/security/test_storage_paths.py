"""Storage roots hold: a symlink cannot lead a model URI out of its folder, at apply time or at load time.

A real server and real replicas: ``pvc://`` paths whose links point outside ``<home>/pvc/NAME`` are
refused with a 4xx when the InferenceService is applied; a link swapped in after a successful
apply (TOCTOU) is refused by the replica when it opens the model; links that stay inside the
claim folder still work. ``file://`` is what the user chose, so it may point anywhere, but is
pinned to its real path; the S3 cache stays inside ``<home>/serving/cache``.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from kfbox.config import Settings
from kfbox.errors import InvalidInput
from kfbox.storage import UriResolver
from tests.serving.helpers import (
    API,
    apply,
    delete,
    expected,
    manifest,
    ready,
    status,
    train_iris,
    v1,
    wait_for,
    wait_ready,
)
from tests.support import ServerProcess


@pytest.fixture(scope="module")
def server(shared_server: ServerProcess) -> ServerProcess:
    return shared_server  # the package's plain server (tests/security/conftest.py)


@pytest.fixture(scope="module")
def outside(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A model the attacker wants served (or a file to read), outside every storage root."""
    folder = tmp_path_factory.mktemp("outside")
    train_iris(folder / "model", "tree")
    return folder


@pytest.mark.parametrize("target,uri", [
    ("model", "pvc://models/escape-dir"),                      # a folder link out of the claim
    ("model/model.joblib", "pvc://models/escape-file"),        # a file link out of the claim
    ("model", "pvc://models/nested/deeper"),                   # a link in a sub-folder
])
def test_symlink_out_of_a_pvc_is_refused_at_apply(server: ServerProcess, home: Path, outside: Path,
                                                   target: str, uri: str) -> None:
    link = home / "pvc" / uri.removeprefix("pvc://")
    link.parent.mkdir(parents=True, exist_ok=True)
    link.symlink_to(outside / target)
    with server.client() as client:
        reply = client.post(API.format(ns="default"), json=manifest("escape", uri))
        assert 400 <= reply.status_code < 500, reply.text
        assert "outside" in reply.text and str(home / "pvc" / "models") in reply.text, reply.text
        assert client.get(API.format(ns="default") + "/escape").status_code == 404


@pytest.mark.parametrize("uri", ["pvc://models/a%00b", "file:///tmp/model\u0000.joblib"])
def test_a_nul_in_a_path_is_a_4xx_not_a_500(server: ServerProcess, uri: str) -> None:
    with server.client() as client:
        reply = client.post(API.format(ns="default"), json=manifest("odd", uri))
    assert 400 <= reply.status_code < 500, reply.text


def test_claim_folder_that_is_a_link_out_is_refused(server: ServerProcess, home: Path, outside: Path) -> None:
    (home / "pvc").mkdir(exist_ok=True)
    (home / "pvc" / "stolen").symlink_to(outside)
    with server.client() as client:
        reply = client.post(API.format(ns="default"), json=manifest("stolen", "pvc://stolen/model"))
    assert 400 <= reply.status_code < 500 and "outside" in reply.text, reply.text


def test_links_inside_the_claim_still_work(server: ServerProcess, home: Path) -> None:
    model = train_iris(home / "pvc" / "models" / "real")
    (home / "pvc" / "models" / "alias").symlink_to(home / "pvc" / "models" / "real")
    with server.client() as client:
        apply(client, manifest("alias", "pvc://models/alias"))
        wait_ready(client, "alias")
        assert v1(client, "alias").json() == {"predictions": expected(model)}


def test_update_to_a_link_out_is_refused(server: ServerProcess, home: Path, outside: Path) -> None:
    """A merge patch (kubectl patch, the kserve SDK's patch) goes through the same check as a create."""
    train_iris(home / "pvc" / "models" / "upd")
    (home / "pvc" / "models" / "upd-link").symlink_to(outside / "model")
    with server.client() as client:
        apply(client, manifest("upd", "pvc://models/upd"))
        reply = client.patch(API.format(ns="default") + "/upd",
                             json={"spec": {"predictor": {"model": {"storageUri": "pvc://models/upd-link"}}}},
                             headers={"Content-Type": "application/merge-patch+json"})
        assert 400 <= reply.status_code < 500 and "outside" in reply.text, reply.text
        spec = client.get(API.format(ns="default") + "/upd").json()["spec"]["predictor"]["model"]
        assert spec["storageUri"] == "pvc://models/upd"


def test_link_swapped_in_after_apply_is_refused_at_load(server: ServerProcess, home: Path, outside: Path) -> None:
    folder = home / "pvc" / "models" / "swap"
    model = train_iris(folder)
    with server.client() as client:
        apply(client, manifest("swap", "pvc://models/swap"))
        wait_ready(client, "swap")
        assert v1(client, "swap").json() == {"predictions": expected(model)}
        pids = status(client, "swap")["revisions"]["swap-predictor-00001"]["pids"]
        shutil.rmtree(folder)
        folder.symlink_to(outside / "model")  # the checked folder is now a way out
        for pid in pids:
            os.kill(pid, 9)  # the replacement replica loads from the same (checked) path

        def refused() -> str | None:
            condition = ready(status(client, "swap"))
            return condition.get("message") if condition.get("reason") == "ModelLoadFailed" else None
        message = wait_for(refused, 60, "the replacement replica to refuse the swapped link")
        assert "symbolic link" in message and "models/swap" in message, message
        assert v1(client, "swap").status_code != 200
        delete(client, "swap")


def test_file_uri_is_pinned_to_its_real_path(tmp_path: Path) -> None:
    """file:// may point anywhere the user chose, but '..' is refused and links resolve once."""
    resolver = UriResolver(Settings(home=tmp_path / "home"))
    (tmp_path / "models" / "v1").mkdir(parents=True)
    (tmp_path / "current").symlink_to(tmp_path / "models" / "v1")
    assert resolver.localize(f"file://{tmp_path}/current") == (tmp_path / "models" / "v1").resolve()
    with pytest.raises(InvalidInput, match=r"\.\."):
        resolver.localize(f"file://{tmp_path}/models/../current")


def test_s3_cache_entries_stay_in_the_cache(tmp_path: Path) -> None:
    """A cached download is served from <home>/serving/cache only; a link planted there is refused."""
    settings = Settings(home=tmp_path / "home", s3_endpoint="http://127.0.0.1:9")
    resolver = UriResolver(settings)
    import hashlib

    uri = "s3://bucket/model.joblib"
    target = settings.serving_dir / "cache" / hashlib.sha256(uri.encode()).hexdigest()[:16]
    target.mkdir(parents=True)
    (tmp_path / "secret.joblib").write_bytes(b"x")
    (target / "model.joblib").symlink_to(tmp_path / "secret.joblib")
    with pytest.raises(InvalidInput, match="outside"):
        resolver.localize(uri)
