"""HAProxy's configuration as kfbox writes it: accepted by the real haproxy binary (``haproxy -c``) for
every shape of plan, and the canary weights in the ratio of the revisions' percents."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

from kfbox.serving.haproxy_config import Plan, Route, Server, render, revision_weights
from tests.serving.helpers import connects, wait_for


def plan(tmp_path: Path, *, token: bool, routes: tuple[Route, ...], grpc_port: int | None = None) -> Plan:
    token_file = tmp_path / "token.lst"
    token_file.write_text("Bearer t\n")
    revision_map = tmp_path / "revisions.map"
    revision_map.touch()
    return Plan(bind_host="127.0.0.1", port=18081, kfbox_host="127.0.0.1", kfbox_port=18080, domain="Example.com",
                max_body_bytes=16 << 20, log_socket=str(tmp_path / "log.sock"),
                token_file=str(token_file) if token else None, routes=routes, grpc_port=grpc_port,
                revision_map=str(revision_map))


ROUTES = (
    Route("default", "iris", (Server("iris-predictor-00001", 1, 40001), Server("iris-predictor-00001", 2, 40002),
                              None)),
    Route("team-a", "flower", (Server("flower-predictor-00002", 1, 40003, weight=4),
                               Server("flower-predictor-00003", 1, 40004, weight=1), None, None), split=True),
)


@pytest.mark.parametrize("grpc_port", [None, 18082], ids=["no-grpc", "grpc"])
@pytest.mark.parametrize("token", [True, False])
@pytest.mark.parametrize("routes", [(), ROUTES], ids=["no-route", "routes"])
def test_haproxy_accepts_the_configuration(tmp_path: Path, token: bool, routes: tuple[Route, ...],
                                           grpc_port: int | None) -> None:
    if shutil.which("haproxy") is None:  # .ci/run installs it; say so rather than pass
        pytest.fail("haproxy is not installed: sudo apt-get install haproxy")
    config = tmp_path / "haproxy.cfg"
    config.write_text(render(plan(tmp_path, token=token, routes=routes, grpc_port=grpc_port)))
    checked = subprocess.run(["haproxy", "-c", "-f", str(config)], capture_output=True, text=True, timeout=30)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    text = config.read_text()
    assert ("acl authorized" in text) is token
    assert text.count("\nbackend svc_") == text.count("\nbackend split_") == len(routes)
    if routes:
        assert "iris.default.example.com iris-predictor.default.example.com" in text  # the domain lower-cased
        assert "balance roundrobin" in text and "balance leastconn" in text


def test_equal_plans_render_equal_text(tmp_path: Path) -> None:
    assert render(plan(tmp_path, token=True, routes=ROUTES)) == render(plan(tmp_path, token=True, routes=ROUTES))


@pytest.mark.parametrize(("percents", "ready", "want"), [
    ({"1": 80, "2": 20}, {"1": 1, "2": 1}, {"1": 4, "2": 1}),
    ({"1": 80, "2": 20}, {"1": 2, "2": 1}, {"1": 2, "2": 1}),  # 2 x 2 : 1 x 1 is 80 : 20
    ({"1": 50, "2": 50}, {"1": 3, "2": 1}, {"1": 1, "2": 3}),
    ({"1": 100}, {"1": 3}, {"1": 1}),
    ({"1": 99, "2": 1}, {"1": 1, "2": 7}, {"1": 256, "2": 1}),  # past HAProxy's 256: scaled, at least 1
])
def test_canary_weights_keep_each_revisions_share(percents: dict[str, int], ready: dict[str, int],
                                                  want: dict[str, int]) -> None:
    assert revision_weights(percents, ready) == want


def test_a_value_that_cannot_be_quoted_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="cannot put"):
        render(dataclasses.replace(plan(tmp_path, token=False, routes=()), token_file="/tmp/it's"))


@pytest.mark.parametrize(("grace", "hold", "finished"), [(10.0, 1.5, True), (0.5, 3.0, False)],
                         ids=["within-the-grace", "past-the-grace"])
def test_a_reloaded_worker_keeps_its_requests_for_the_drain_grace(tmp_path: Path, grace: float, hold: float,
                                                                   finished: bool) -> None:
    """After a reload (SIGUSR2 to the master, as kfbox sends), the old worker finishes a request held by the
    replica within the grace (``serving_drain_seconds``, HAProxy's ``hard-stop-after``) and cuts one held longer.
    The replica is a plain HTTP server that answers after ``hold`` seconds."""
    held = threading.Event()
    replica = ThreadingHTTPServer(("127.0.0.1", 0), _slow_handler(hold, held))
    threading.Thread(target=replica.serve_forever, daemon=True).start()
    route = Route("default", "slow", (Server("slow-predictor-00001", 1, replica.server_address[1]),))
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    config = tmp_path / "haproxy.cfg"
    config.write_text(render(dataclasses.replace(plan(tmp_path, token=False, routes=(route,)), port=port,
                                                 drain_seconds=grace)))
    assert f"hard-stop-after {round(grace * 1000)}ms" in config.read_text()
    master = subprocess.Popen(["haproxy", "-W", "-f", str(config)], stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        url = f"http://127.0.0.1:{port}/serving/default/slow/v1/models/slow:predict"
        wait_for(lambda: connects(port), 10, "HAProxy listening")
        outcome: list[object] = []

        def call() -> None:
            try:
                outcome.append(httpx.post(url, json={}, timeout=30).status_code)
            except httpx.TransportError as exc:
                outcome.append(exc)

        caller = threading.Thread(target=call)
        caller.start()
        assert held.wait(10), "the request did not reach the replica"
        os.kill(master.pid, signal.SIGUSR2)
        caller.join(30)
        assert (outcome == [200]) is finished, outcome
    finally:
        os.killpg(master.pid, signal.SIGTERM)
        master.wait(10)
        replica.shutdown()


def _slow_handler(hold: float, held: threading.Event) -> type[BaseHTTPRequestHandler]:
    class Slow(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("content-length", 0)))
            held.set()
            time.sleep(hold)
            body = b'{"predictions": []}'
            with contextlib.suppress(OSError):  # past the grace HAProxy has closed the connection
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    return Slow

