"""``kfbox loadtest`` as a user runs it, against a real ``kfbox up`` and a real HTTP server."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

from kfbox.chart_svg import panels_of
from kfbox.cli.main import main
from kfbox.loadtest.runner import LoadSpec, run_load
from tests.serving.helpers import ROWS, apply, manifest, status, train_iris, wait_for
from tests.support import ServerProcess


@dataclasses.dataclass
class Result:
    returncode: int
    stdout: str
    stderr: str


@pytest.fixture()
def kfbox(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> Callable[..., Result]:
    """Run the ``kfbox`` entry point in-process (as the console script does) and capture what it prints."""
    monkeypatch.setenv("COLUMNS", "200")

    def run(*args: str) -> Result:
        capsys.readouterr()
        monkeypatch.setattr(sys, "argv", ["kfbox", *args])
        code = 0
        try:
            main()
        except SystemExit as exc:
            code = int(exc.code or 0)
        out, err = capsys.readouterr()
        return Result(code, out, err)

    return run


def healthz_count(server: ServerProcess) -> float:
    text = httpx.get(f"{server.url}/metrics").text
    for line in text.splitlines():
        if line.startswith('kfbox_http_requests_total{method="GET",route="/healthz",status="200"}'):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_n_requests_json_report(kfbox: Callable[..., Result], server: ServerProcess) -> None:
    before = healthz_count(server)
    result = kfbox("loadtest", f"{server.url}/healthz", "-n", "120", "-c", "4", "-o", "json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["total"] == report["responses"] == 120
    assert report["status_codes"] == {"200": 120}
    assert report["errors"] == {} and report["failed"] == 0
    assert report["concurrency"] == 4 and report["method"] == "GET"
    latency = report["latency_seconds"]
    assert 0 < latency["min"] <= latency["p50"] <= latency["p90"] <= latency["p99"] <= latency["max"]
    assert sum(bucket["count"] for bucket in report["histogram"]) == 120
    assert sum(second["count"] for second in report["timeline"]) == 120
    assert report["requests_per_second"] == pytest.approx(120 / report["duration_seconds"], rel=0.01)
    assert healthz_count(server) - before == 120  # the server saw exactly -n requests


def test_concurrency_is_capped_by_request_count(kfbox: Callable[..., Result], server: ServerProcess) -> None:
    result = kfbox("loadtest", f"{server.url}/healthz", "-n", "3", "-c", "50", "-o", "json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["concurrency"] == 3 and report["total"] == 3


def test_duration_bounds_the_run(kfbox: Callable[..., Result], server: ServerProcess) -> None:
    result = kfbox("loadtest", f"{server.url}/healthz", "-z", "1s", "-c", "3", "-o", "json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert 1.0 <= report["duration_seconds"] < 2.0
    assert "Traceback" not in result.stderr  # in-flight requests cut at the deadline leave no noise
    assert report["total"] > 3 and report["status_codes"] == {"200": report["total"]}
    # -n and -z together: whichever ends first
    both = json.loads(kfbox("loadtest", f"{server.url}/healthz", "-z", "30s", "-n", "10", "-o", "json").stdout)
    assert both["total"] == 10 and both["duration_seconds"] < 30


def test_table_report_has_summary_codes_and_histogram(kfbox: Callable[..., Result],
                                                      server: ServerProcess) -> None:
    result = kfbox("loadtest", f"{server.url}/healthz", "-n", "50", "-c", "2")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    for part in ("Requests:     50 (0 failed)", "Requests/s:", "p50", "p90", "p99", "max",
                 "[200] 50 responses", "Latency histogram", "■"):
        assert part in out, out


def test_connection_refused_is_counted_and_fails(kfbox: Callable[..., Result]) -> None:
    url = f"http://127.0.0.1:{free_port()}/healthz"
    result = kfbox("loadtest", url, "-n", "20", "-c", "2", "-o", "json")
    assert result.returncode == 1
    report = json.loads(result.stdout)
    assert report["errors"] == {"connection refused": 20} and report["responses"] == 0
    said = " ".join(result.stderr.split())  # rich wraps at the width of a console another test may have made
    assert "20 of 20 requests" in said and "connection refused" in said
    assert "is the server" in result.stderr


@pytest.mark.timeout(60)  # a worker that never suspends would spin for ever: the run returning at all is the check
def test_refused_connections_end_at_the_duration() -> None:
    # refused connects on loopback can fail without suspending the worker: the deadline must still win
    report = run_load(LoadSpec(url=f"http://127.0.0.1:{free_port()}/", concurrency=8, duration=0.5))
    assert report.duration >= 0.5 and report.responses == 0
    assert set(report.errors) == {"connection refused"} and report.total > 0


def test_non_2xx_statuses_are_reported_and_fail(kfbox: Callable[..., Result], server: ServerProcess) -> None:
    result = kfbox("loadtest", f"{server.url}/no/such/path", "-n", "10", "-c", "2")
    assert result.returncode == 1
    assert "[404] 10 responses" in result.stdout
    assert "HTTP 404: 10" in " ".join(result.stderr.split())  # unwrapped, as above


@pytest.mark.parametrize(("args", "message"), [
    (["-z", "soon"], "Duration 'soon' is not understood"),
    (["-c", "0"], "Concurrency -c 0 must be at least 1"),
    (["-n", "0"], "Request count -n 0 must be at least 1"),
    (["-d", "{not json"], "Request body is not valid JSON"),
    (["-d", "@/no/such/body.json"], "Cannot read the request body file"),
    (["-H", "no-colon"], "is not 'Name: value'"),
    (["--plot", "out.txt"], "must end with .svg"),
    (["--v2"], "--v2 picks the path for an InferenceService name"),
])
def test_bad_input_is_refused_before_any_request(kfbox: Callable[..., Result], server: ServerProcess,
                                                 args: list[str], message: str) -> None:
    before = healthz_count(server)
    result = kfbox("loadtest", f"{server.url}/healthz", "-n", "5", *args)
    assert result.returncode != 0
    assert message in " ".join(result.stderr.split()), result.stderr
    assert healthz_count(server) == before


def test_unknown_inferenceservice_is_a_clear_error(kfbox: Callable[..., Result], server: ServerProcess) -> None:
    body = '{"instances": [[1, 2]]}'
    result = kfbox("loadtest", "no-such-isvc", "--url", server.url, "-n", "5", "-d", body)
    assert result.returncode == 1
    assert "InferenceService 'no-such-isvc' not found in any namespace" in " ".join(result.stderr.split())
    result = kfbox("loadtest", "no-such-isvc", "--namespace", "team-a", "--url", server.url, "-d", body)
    assert result.returncode == 1
    assert "InferenceService 'no-such-isvc' not found in namespace 'team-a'" in " ".join(result.stderr.split())


@pytest.fixture(scope="module")
def iris(server: ServerProcess) -> str:
    """An iris InferenceService with one replica, served from pvc:// in namespace 'default'."""
    train_iris(server.home / "pvc" / "models" / "iris-lt")
    with server.client() as client:
        apply(client, manifest("iris-lt", "pvc://models/iris-lt", min_replicas=1, max_replicas=1))
        wait_for(lambda: status(client, "iris-lt")["replicas"] == 1, 90, "a ready replica")
    return "iris-lt"


def test_inferenceservice_name_target(kfbox: Callable[..., Result], server: ServerProcess, iris: str,
                                      tmp_path: Path) -> None:
    body = json.dumps({"instances": ROWS})
    result = kfbox("loadtest", iris, "--url", server.url, "-n", "40", "-c", "4", "-d", body, "-o", "json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["url"] == f"{server.url}/serving/default/{iris}/v1/models/{iris}:predict"
    assert report["method"] == "POST" and report["status_codes"] == {"200": 40}
    assert report["replicas"] and report["replicas"][0]["replicas"] == 1  # sampled from /metrics
    v2 = json.dumps({"inputs": [{"name": "input-0", "shape": [1, 4], "datatype": "FP64", "data": ROWS[0]}]})
    plot = tmp_path / "iris.svg"
    result = kfbox("loadtest", iris, "--v2", "--namespace", "default", "--url", server.url, "-z", "1.2s", "-c", "2",
                   "-d", v2, "--plot", str(plot))
    assert result.returncode == 0, result.stderr
    assert f"POST {server.url}/serving/default/{iris}/v2/models/{iris}/infer" in result.stdout
    assert "[200]" in result.stdout
    # the file is the deployment page's live chart: same panels, same series, on one time axis
    with server.client() as client:
        page_chart = client.get(f"/monitoring/series/default/{iris}", params={"svg": "true"}).json()["svg"]
    drawn = plot.read_text()
    assert panels_of(drawn) == panels_of(page_chart) == [
        ("requests/s", ["rps"]), ("success %", ["success"]), ("latency ms", ["p50", "p95", "p99"]),
        ("replicas · in flight", ["desired", "ready", "inflight"])]
    assert _drawn_fields(drawn) >= {"rps", "success", "p50", "p99", "ready", "desired", "inflight"}
    result = kfbox("loadtest", iris, "--url", server.url, "-n", "5")
    assert result.returncode == 1 and "needs a body" in result.stderr
    # KServe-style host routing: a plain URL with the InferenceService's Host header
    result = kfbox("loadtest", f"{server.url}/v1/models/{iris}:predict", "-H", f"Host: {iris}.default.example.com",
                   "-n", "6", "-c", "2", "-d", body, "-o", "json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["status_codes"] == {"200": 6}


def test_name_target_without_a_running_server_says_how_to_start_one(kfbox: Callable[..., Result],
                                                                    tmp_path: Path) -> None:
    result = kfbox("loadtest", "iris", "--home", str(tmp_path), "-d", "{}")
    assert result.returncode == 1
    assert "kfbox up" in result.stderr


def test_plot_writes_an_svg(kfbox: Callable[..., Result], server: ServerProcess, tmp_path: Path) -> None:
    out = tmp_path / "charts" / "load.svg"
    result = kfbox("loadtest", f"{server.url}/healthz", "-z", "1.5s", "-c", "2", "--plot", str(out))
    assert result.returncode == 0, result.stderr
    root = ET.parse(out).getroot()
    assert root.tag == "{http://www.w3.org/2000/svg}svg"
    text = out.read_text()
    assert [title for title, _ in panels_of(text)] == ["requests/s", "success %", "latency ms",
                                                      "replicas · in flight"]
    drawn = _drawn_fields(text)
    assert {"rps", "success", "p50", "p95", "p99"} <= drawn
    assert not drawn & {"ready", "desired"}  # a plain URL has no replica gauge to draw
    result = kfbox("loadtest", f"{server.url}/healthz", "-n", "5", "--plot", str(tmp_path / "load.png"))
    assert result.returncode == 1 and "must end with .svg" in " ".join(result.stderr.split())


def _drawn_fields(svg: str) -> set[str]:
    """The series with a line in the chart (a panel's legend lists its series even without data)."""
    return {p.get("data-field", "") for p in ET.fromstring(svg.split("?>", 1)[-1]).iter("{http://www.w3.org/2000/svg}path")}


def test_ctrl_c_gives_a_partial_report(server: ServerProcess) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KFBOX_")}
    proc = subprocess.Popen([sys.executable, "-m", "kfbox", "loadtest", f"{server.url}/healthz", "-z", "60s",
                             "-c", "2", "-o", "json"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=env)
    try:
        deadline = time.monotonic() + 20
        before = healthz_count(server)
        while healthz_count(server) - before < 20 and time.monotonic() < deadline:
            time.sleep(0.2)  # wait until load is flowing
        proc.send_signal(signal.SIGINT)
        stdout, _ = proc.communicate(timeout=20)
    finally:
        proc.kill()
    assert proc.returncode == 130
    report = json.loads(stdout)
    assert report["interrupted"] is True
    assert report["total"] > 0 and report["duration_seconds"] < 60


class _Handler(BaseHTTPRequestHandler):
    """Replies in the three ways HTTP/1.1 frames a body, and remembers what it was sent."""

    protocol_version = "HTTP/1.1"
    bodies: list[bytes] = []
    connections: set[tuple[str, int]] = set()

    def log_message(self, *args: object) -> None:
        pass

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.bodies.append(body)
        self.connections.add(self.client_address)
        if self.path == "/chunked":
            self.send_response(200)
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for part in (b'{"pred', b'ictions": [1]}'):
                self.wfile.write(b"%x\r\n%s\r\n" % (len(part), part))
            self.wfile.write(b"0\r\n\r\n")
        elif self.path == "/close":
            self.send_response(201)
            self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(b"closed by the server")
            self.close_connection = True
        elif self.path == "/slow":
            time.sleep(0.5)
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()
        else:
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)


@pytest.fixture()
def echo_url() -> Iterator[str]:
    _Handler.bodies, _Handler.connections = [], set()
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


@pytest.mark.parametrize("path", ["/echo", "/chunked", "/close"])
def test_body_is_sent_and_every_framing_is_read(echo_url: str, path: str) -> None:
    body = b'{"instances": [[6.8, 2.8, 4.8, 1.4]]}'
    report = run_load(LoadSpec(url=echo_url + path, method="POST", body=body, concurrency=3, requests=30))
    assert report.total == 30 and not report.errors
    assert sum(report.statuses.values()) == 30
    assert _Handler.bodies == [body] * 30
    if path == "/close":
        assert report.statuses == {201: 30}
        assert len(_Handler.connections) == 30  # a new connection after each close
    else:
        assert len(_Handler.connections) == 3  # keep-alive: one connection per worker


def test_slow_replies_count_as_timeouts(echo_url: str) -> None:
    report = run_load(LoadSpec(url=echo_url + "/slow", method="POST", body=b"{}", concurrency=2, requests=4,
                               timeout=0.1))
    assert report.errors == {"timeout": 4} and report.responses == 0
