"""A real ``kfbox up --host 0.0.0.0 --token ...``: every URL it gives clients on this machine names loopback and
answers (the start line, ``server.json``, ``kfbox status``, ``/healthz``, the dashboard, HAProxy's ingress URL),
it says how other machines reach it, and the Host check answers exactly the names it answered before.

Bound to every address for the module's length on an ephemeral port, with a token, as tests/monitoring/
test_scrape_route.py is. With haproxy installed the server also runs the HAProxy data plane (one server, not
two); the ingress test fails without it, as tests/serving/test_haproxy.py does."""

from __future__ import annotations

import json
import shutil
import socket
from collections.abc import Iterator

import pytest

from tests.serving.helpers import ingress_url
from tests.support import ServerProcess, loopback, run_cli

TOKEN = "wildcard-s3cret"
HAPROXY = shutil.which("haproxy") is not None


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    plane = {"KFBOX_DATA_PLANE": "haproxy", "KFBOX_INGRESS_PORT": "0"} if HAPROXY else {}
    proc = ServerProcess.start(tmp_path_factory.mktemp("home"), token=TOKEN, host="0.0.0.0", extra_env=plane)
    yield proc
    proc.stop()


def test_the_start_line_record_and_status_show_a_loopback_url_that_answers(server: ServerProcess) -> None:
    local = f"http://127.0.0.1:{server.port}"
    record = json.loads((server.home / "server.json").read_text())
    assert (record["url"], record["host"]) == (local, "0.0.0.0")
    assert loopback().get(f"{local}/healthz").status_code == 200
    elsewhere = f"http://{socket.gethostname()}:{server.port} or any address of this machine"
    log = server.log()
    assert f"kfbox starting on {local} (home {server.home})" in log
    assert f"from other machines: {elsewhere}, with the token (--token / KFBOX_TOKEN)" in log
    shown = run_cli("status", "--home", str(server.home), "--output", "json")
    assert shown.returncode == 0, shown.stderr
    info = json.loads(shown.stdout)
    assert (info["url"], info["other_machines"], info["healthy"]) == (local, elsewhere, True)
    table = run_cli("status", "--home", str(server.home), env={"COLUMNS": "200"})
    assert table.returncode == 0, table.stderr
    rows = {line.split("\u2502")[1].strip(): line.split("\u2502")[2].strip()
            for line in table.stdout.splitlines() if line.startswith("\u2502")}
    assert (rows["url"], rows["other machines"]) == (local, elsewhere)
    assert rows["uptime"].endswith("s") and "uptime_seconds" not in table.stdout  # "12.3s", "4m 21s": for people


def test_the_dashboard_names_the_loopback_url(server: ServerProcess) -> None:
    with server.client() as client:
        page = client.get("/", headers={"Accept": "text/html"})
    assert page.status_code == 200
    assert f"Serving at <code>http://127.0.0.1:{server.port}</code>" in page.text
    assert "0.0.0.0" not in page.text


@pytest.mark.parametrize(("host", "status"), [
    ("{name}:{port}", 200),  # the machine's name, printed for other machines
    ("127.0.0.1:{port}", 200), ("localhost:{port}", 200), ("0.0.0.0:{port}", 200), ("192.0.2.7", 200),
    ("evil.example", 400), ("evil.example:{port}", 400),  # a name nobody gave: DNS rebinding
])
def test_the_host_check_answers_the_names_it_answered_before(server: ServerProcess, host: str, status: int) -> None:
    header = host.format(name=socket.gethostname(), port=server.port)
    with server.client() as client:
        reply = client.get("/api/model_registry/v1alpha3/registered_models", headers={"Host": header})
    assert reply.status_code == status, reply.text


def test_the_ingress_url_names_loopback_and_answers(server: ServerProcess) -> None:
    if not HAPROXY:  # .ci/run installs it; say so rather than pass
        pytest.fail("haproxy is not installed: sudo apt-get install haproxy")
    url = ingress_url(server.home)
    assert url.startswith("http://127.0.0.1:") and url != server.url
    with server.client() as client:
        health = client.get("/healthz").json()
    assert health["ingress_url"] == url and health["data_plane"] == f"haproxy up on {url}"
    # what no InferenceService route takes, HAProxy hands to kfbox: the ingress answers for the server
    assert loopback().get(f"{url}/healthz").json()["status"] == "ok"
    assert "inference ingress (HAProxy) on a free port; its URL is ingress_url in" in server.log()
