"""``dsl.importer`` through kfbox's engine: the downstream task opens the imported file at a local path.

file:// hands over the path itself; http:// is fetched from a real stdlib HTTP server on loopback
into the importer task's folder; gs:// is a 400 at submit (a real server, ``kfp.Client``-shaped
body). The run record keeps the URI as given, as the KFP backend records an importer's artifact.
"""

# no `from __future__ import annotations`: kfp reads the components' annotations as types

import contextlib
import http.server
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from kfp import compiler, dsl
from kfp.dsl import Dataset, Input

from tests.pipelines.test_orchestrator import run
from tests.support import ServerProcess


@dsl.component(base_image="python:3.11")
def read_text(data: Input[Dataset]) -> str:
    with open(data.path) as f:
        return f.read()


def importing(uri: str) -> Any:
    @dsl.pipeline(name="importing")
    def pipeline() -> None:
        imported = dsl.importer(artifact_uri=uri, artifact_class=Dataset, reimport=False)
        read_text(data=imported.output)

    return pipeline


class _Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = b"from the web\n"
        self.send_response(200 if self.path == "/data/notes.txt" else 404)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def web() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_file_uri_reaches_the_downstream_task_as_a_path(tmp_path: Path) -> None:
    source = tmp_path / "in" / "notes.txt"
    source.parent.mkdir()
    source.write_text("on disk\n")
    state, error, tasks = run(importing(source.as_uri()), tmp_path / "r")
    assert state == "SUCCEEDED", error
    assert tasks["read-text"]["parameters"]["Output"] == "on disk\n"
    recorded = tasks["importer"]["artifacts"][0]
    assert recorded["uri"] == source.as_uri()  # the run record shows the URI the pipeline gave


def test_http_uri_is_fetched_into_the_importer_task_folder(tmp_path: Path, web: str) -> None:
    state, error, tasks = run(importing(f"{web}/data/notes.txt"), tmp_path / "r")
    assert state == "SUCCEEDED", error
    assert tasks["read-text"]["parameters"]["Output"] == "from the web\n"
    assert (Path(tasks["importer"]["log"]).parent / "imported" / "notes.txt").read_text() == "from the web\n"


def test_http_uri_that_is_missing_fails_the_importer_task_saying_so(tmp_path: Path, web: str) -> None:
    state, _, tasks = run(importing(f"{web}/nothing.txt"), tmp_path / "r")
    assert state == "FAILED"
    assert "HTTP 404" in tasks["importer"]["error"]
    assert "read-text" not in tasks or tasks["read-text"].get("state") != "SUCCEEDED"


def test_gs_uri_is_refused_at_submit(tmp_path: Path) -> None:
    package = tmp_path / "p.yaml"
    compiler.Compiler().compile(importing("gs://bucket/notes.txt"), str(package))
    import yaml

    spec = yaml.safe_load(package.read_text())
    server = ServerProcess.start(tmp_path / "home")
    try:
        response = httpx.post(f"{server.url}/apis/v2beta1/runs", timeout=30,
                              json={"display_name": "r", "pipeline_spec": spec})
        with contextlib.suppress(httpx.HTTPError):
            listed = httpx.get(f"{server.url}/apis/v2beta1/runs", timeout=30).json()
    finally:
        server.stop()
    assert response.status_code == 400, response.text
    message = response.json()["message"]
    assert "gs://bucket/notes.txt" in message and "gs:// needs Google Cloud credentials" in message
    assert "executor 'exec-importer'" in message
    assert not listed.get("runs")  # nothing was stored
