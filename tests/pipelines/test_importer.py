"""``dsl.importer`` fetches: file:// paths checked, s3:// from a real S3-compatible server (moto's,
on loopback), http(s):// from a real HTTP server with its cap and timeout, gs:// refused."""

from __future__ import annotations

import contextlib
import http.server
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from kfbox.config import Settings
from kfbox.errors import InvalidInput, NotFound, PayloadTooLarge, Unavailable
from kfbox.pipelines.importer import check_uri, fetch_artifact
from tests.support import moto_s3


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    with moto_s3("data") as (endpoint, client):
        client.put_object(Bucket="data", Key="iris.csv", Body=b"a,b\n1,2\n")
        client.put_object(Bucket="data", Key="model/weights.bin", Body=b"\x00" * 10)
        client.put_object(Bucket="data", Key="model/conf/params.json", Body=b"{}")
        client.put_object(Bucket="data", Key="model-other.txt", Body=b"not part of model/")
        yield endpoint


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        if self.path == "/moved":
            self.send_response(302)
            self.send_header("Location", "/files/data.txt")
            self.end_headers()
        elif self.path == "/files/data.txt":
            body = b"hello importer\n"
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        elif self.path == "/chunked/big":  # no Content-Length: the cap must hold while streaming
            self.send_response(200)
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for _ in range(64):
                self.wfile.write(b"400\r\n" + b"x" * 1024 + b"\r\n")
            self.wfile.write(b"0\r\n\r\n")
        else:
            self.send_error(404)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def web() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def settings(tmp_path: Path, **kwargs: object) -> Settings:
    return Settings(home=tmp_path / "home", **kwargs)  # type: ignore[arg-type]


def s3_settings(tmp_path: Path, endpoint: str, **kwargs: object) -> Settings:
    return settings(tmp_path, s3_endpoint=endpoint, s3_access_key="test", s3_secret_key="test", **kwargs)


def test_file_uri_is_the_checked_path_itself(tmp_path: Path) -> None:
    data = tmp_path / "data.csv"
    data.write_text("x")
    (tmp_path / "folder").mkdir()
    link = tmp_path / "link.csv"
    link.symlink_to(data)
    s = settings(tmp_path)
    assert fetch_artifact(f"file://{data}", tmp_path / "dest", s) == data
    assert fetch_artifact(f"file://{tmp_path / 'folder'}", tmp_path / "dest", s) == tmp_path / "folder"
    assert fetch_artifact(f"file://{link}", tmp_path / "dest", s) == data.resolve()  # links resolved
    with pytest.raises(InvalidInput, match=r"absolute path without '\.\.'"):
        fetch_artifact(f"file://{tmp_path}/../x", tmp_path / "dest", s)
    with pytest.raises(InvalidInput, match="names host"):
        fetch_artifact("file://data.csv", tmp_path / "dest", s)
    with pytest.raises(NotFound, match="nothing at"):
        fetch_artifact(f"file://{tmp_path / 'missing'}", tmp_path / "dest", s)
    with pytest.raises(InvalidInput, match="not a regular file or a folder"):
        fetch_artifact("file:///dev/null", tmp_path / "dest", s)


def test_s3_object_and_prefix_from_a_real_s3_server(tmp_path: Path, s3_endpoint: str) -> None:
    s = s3_settings(tmp_path, s3_endpoint)
    one = fetch_artifact("s3://data/iris.csv", tmp_path / "a", s)
    assert one == tmp_path / "a" / "iris.csv" and one.read_bytes() == b"a,b\n1,2\n"
    folder = fetch_artifact("s3://data/model", tmp_path / "b", s)
    assert sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file()) == [
        "conf/params.json", "weights.bin"]  # not model-other.txt
    assert fetch_artifact("minio://data/iris.csv", tmp_path / "c", s).read_bytes() == b"a,b\n1,2\n"
    with pytest.raises(NotFound, match=r"no object 'nope\.csv'"):
        fetch_artifact("s3://data/nope.csv", tmp_path / "d", s)
    with pytest.raises(PayloadTooLarge, match="KFBOX_IMPORTER_MAX_BYTES"):
        fetch_artifact("s3://data/model", tmp_path / "e", s3_settings(tmp_path, s3_endpoint, importer_max_bytes=5))
    with pytest.raises(Unavailable, match="S3 at"):
        fetch_artifact("s3://no-such-bucket/x", tmp_path / "f", s)
    assert not list((tmp_path / "e").iterdir()) and not list((tmp_path / "f").iterdir())  # no half downloads


def test_s3_needs_a_configured_endpoint(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match="set KFBOX_S3_ENDPOINT"):
        check_uri("s3://data/iris.csv", settings(tmp_path))


def test_http_download_with_redirects_cap_and_errors(tmp_path: Path, web: str) -> None:
    s = settings(tmp_path)
    got = fetch_artifact(f"{web}/moved", tmp_path / "a", s)
    assert got.read_text() == "hello importer\n"
    with pytest.raises(NotFound, match="HTTP 404"):
        fetch_artifact(f"{web}/missing", tmp_path / "b", s)
    small = settings(tmp_path, importer_max_bytes=10)
    with pytest.raises(PayloadTooLarge, match="over the 10 byte limit"):
        fetch_artifact(f"{web}/files/data.txt", tmp_path / "c", small)
    with pytest.raises(PayloadTooLarge, match="more than the 10000 byte limit"):
        fetch_artifact(f"{web}/chunked/big", tmp_path / "d", settings(tmp_path, importer_max_bytes=10_000))
    assert not list((tmp_path / "d").iterdir())


def test_http_timeout_is_an_error_not_a_hang(tmp_path: Path) -> None:
    with contextlib.closing(socket.socket()) as silent:  # accepts connections, never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        port = silent.getsockname()[1]
        with pytest.raises(Unavailable, match="did not answer within 1 s"):
            fetch_artifact(f"http://127.0.0.1:{port}/x", tmp_path / "a", settings(tmp_path), timeout=1.0)


@pytest.mark.parametrize(("uri", "message"), [
    ("gs://bucket/data.csv", "gs:// needs Google Cloud credentials"),
    ("ftp://host/x", "kfbox imports from file:///abs/path"),
    ("data.csv", "has scheme none"),
    ("s3:///key", "has no bucket"),
])
def test_unsupported_uris_are_refused_before_anything_runs(tmp_path: Path, uri: str, message: str) -> None:
    with pytest.raises(InvalidInput, match=message) as exc:
        check_uri(uri, settings(tmp_path, s3_endpoint="http://127.0.0.1:9"))
    if uri.startswith("gs://"):
        assert "file:///abs/path" in exc.value.message and "s3://" in exc.value.message
