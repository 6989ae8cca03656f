"""s3:// models through KServe's storage initializer (kserve-storage), against moto's S3 server on loopback.

A download runs the initializer as a child process (marked ``processes``: not in make test-fast)."""

from __future__ import annotations

import io
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from kfbox.config import Settings
from kfbox.errors import InvalidInput, NotFound, Unavailable
from kfbox.storage import UriResolver
from kfbox.storage.initializer import DOTDOT, classify, kserve_env
from tests.support import moto_s3


@pytest.fixture(scope="module")
def s3() -> Iterator[tuple[str, Any]]:
    """(endpoint, boto3 client) of a moto S3 server with bucket ``models``."""
    with moto_s3("models") as (endpoint, client):
        _fill(client)
        yield endpoint, client


def _fill(client: Any) -> None:
    client.put_object(Bucket="models", Key="iris/model.joblib", Body=b"weights")
    client.put_object(Bucket="models", Key="iris/meta/labels.txt", Body=b"setosa")
    archive = io.BytesIO()
    with tarfile.open(fileobj=archive, mode="w:gz") as tar:
        info = tarfile.TarInfo("model.joblib")
        info.size = 7
        tar.addfile(info, io.BytesIO(b"packed!"))
    client.put_object(Bucket="models", Key="packed/model.tar.gz", Body=archive.getvalue())


def resolver(tmp_path: Path, endpoint: str) -> UriResolver:
    return UriResolver(Settings(home=tmp_path / "home", s3_endpoint=endpoint, s3_access_key="test",
                                s3_secret_key="test"))


@pytest.mark.processes
def test_prefix_lands_as_a_folder_and_is_cached(s3: tuple[str, Any], tmp_path: Path) -> None:
    endpoint, client = s3
    uris = resolver(tmp_path, endpoint)
    path = uris.localize("s3://models/iris")
    assert (path / "model.joblib").read_bytes() == b"weights"
    assert (path / "meta" / "labels.txt").read_bytes() == b"setosa"
    assert path.parent == tmp_path / "home" / "serving" / "cache"
    client.put_object(Bucket="models", Key="iris/model.joblib", Body=b"changed")
    try:
        assert (uris.localize("s3://models/iris") / "model.joblib").read_bytes() == b"weights"  # the cached copy
    finally:
        client.put_object(Bucket="models", Key="iris/model.joblib", Body=b"weights")


@pytest.mark.processes
def test_single_object_is_the_file_itself(s3: tuple[str, Any], tmp_path: Path) -> None:
    path = resolver(tmp_path, s3[0]).localize("s3://models/iris/model.joblib")
    assert path.name == "model.joblib" and path.read_bytes() == b"weights"


@pytest.mark.processes
def test_an_archive_is_unpacked_as_kserve_does(s3: tuple[str, Any], tmp_path: Path) -> None:
    path = resolver(tmp_path, s3[0]).localize("s3://models/packed/model.tar.gz")
    assert path.name == "model.joblib" and path.read_bytes() == b"packed!"


@pytest.mark.processes
@pytest.mark.parametrize("uri", ["s3://models/nothing-here", "s3://no-such-bucket/iris"])
def test_nothing_there_is_not_found_and_leaves_no_cache_entry(s3: tuple[str, Any], tmp_path: Path, uri: str) -> None:
    with pytest.raises(NotFound, match=r"no-such-bucket|No model found"):
        resolver(tmp_path, s3[0]).localize(uri)
    cache = tmp_path / "home" / "serving" / "cache"
    assert not cache.exists() or list(cache.iterdir()) == []


@pytest.mark.processes
def test_an_unreachable_endpoint_is_unavailable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("S3_MAX_ATTEMPTS", "1")  # KServe's knob, passed through to the initializer
    monkeypatch.setenv("S3_CONNECT_TIMEOUT", "2")
    with pytest.raises(Unavailable, match=r"127\.0\.0\.1:9\b"):
        resolver(tmp_path, "http://127.0.0.1:9").localize("s3://models/iris")


def test_dotdot_in_the_uri_is_refused_before_any_download(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match=r"'\.\.'"):
        resolver(tmp_path, "http://127.0.0.1:9").localize("s3://models/iris/../secrets")


@pytest.mark.parametrize("key", ["..", "../x", "a/../../x", "a/.."])
def test_keys_with_dotdot_are_not_downloaded(key: str) -> None:
    """KServe writes OUT_DIR/<key>; the initializer's ignore patterns drop any key with a '..' part."""
    from kserve_storage.kserve_storage import _should_download

    assert not _should_download(key, None, DOTDOT)
    assert _should_download("a/..b/x..y", None, DOTDOT)


def test_kserve_env_maps_the_kfbox_settings() -> None:
    settings = Settings(s3_endpoint="https://s3.example:8333", s3_access_key="ak", s3_secret_key="sk")
    env = kserve_env(settings, {"PATH": "/bin", "AWS_DEFAULT_REGION": "eu-west-1", "S3_VERIFY_SSL": "0"})
    assert env == {"PATH": "/bin", "AWS_DEFAULT_REGION": "eu-west-1", "S3_VERIFY_SSL": "0",
                   "AWS_ENDPOINT_URL": "https://s3.example:8333", "S3_ENDPOINT": "s3.example:8333",
                   "S3_USE_HTTPS": "1", "AWS_ACCESS_KEY_ID": "ak", "AWS_SECRET_ACCESS_KEY": "sk"}
    assert kserve_env(Settings(), {})["AWS_DEFAULT_REGION"] == "us-east-1"


def test_classify_reads_the_library_errors() -> None:
    assert classify(RuntimeError("Failed to fetch model. No model found in iris.")) == "not_found"
    assert classify(RuntimeError("S3 resource 'models' not found.")) == "not_found"
    assert classify(RuntimeError("Failed to download 1 files: k: [Errno 28] No space left on device")) == "no_space"
    assert classify(RuntimeError("Failed to connect to S3 endpoint 'models'.")) == "unavailable"
