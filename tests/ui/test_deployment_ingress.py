"""The HAProxy data plane where users look: a real ``kfbox up --data-plane haproxy`` (with a token) serving a
real iris replica behind Debian's haproxy. The deployment page and the deployments list show the ingress
URL and the data plane's state, the "try it" snippets use the ingress (and, run as shown, the curl in a shell
and the Python as a script, predict through HAProxy without passing through kfbox, V1 and V2), the form keeps
predicting, and ``kfbox serve get`` prints the ingress URL; while HAProxy restarts the page reads RESTARTING
and the snippets use kfbox's port. The page without the data plane: tests/ui/test_deployment_page.py; HAProxy
given up: tests/serving/test_haproxy.py.

A request HAProxy sends straight to the replica never reaches kfbox's HTTP stack, so it is not counted in
``kfbox_http_requests_total`` (route ``/serving/...``); one that went through kfbox is."""

from __future__ import annotations

import contextlib
import html
import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import httpx
import pytest

from tests.serving.helpers import ROWS, apply, connects, ingress_url, manifest, train_iris, wait_for, wait_ready
from tests.support import ServerProcess, run_cli
from tests.ui.iris_v2 import iris_v2_manifest, write_iris_v2

TOKEN = "ui-s3cret"
PAGE = "/deployments/default/iris"
T = TypeVar("T")
GATEWAY_ROUTE = 'kfbox_http_requests_total{method="POST",route="/serving/{namespace}/{name}/{path}"'


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    if shutil.which("haproxy") is None:  # .ci/run installs it; say so rather than pass
        pytest.fail("haproxy is not installed: sudo apt-get install haproxy")
    home = tmp_path_factory.mktemp("home")
    proc = ServerProcess.start(home, token=TOKEN, extra_env={"KFBOX_DATA_PLANE": "haproxy",
                                                             "KFBOX_INGRESS_PORT": "0"})
    try:
        train_iris(home / "pvc" / "models" / "iris")
        with proc.client() as client:
            apply(client, manifest("iris", "pvc://models/iris"))
            wait_ready(client, "iris")
            url = ingress_url(proc.home)
            wait_for(lambda: straight(client, lambda: httpx.post(
                f"{url}/serving/default/iris/v1/models/iris:predict", json={"instances": ROWS},
                headers={"Authorization": f"Bearer {TOKEN}"})), 30, "HAProxy routing iris straight to its replica")
        yield proc
    finally:
        proc.stop()


@pytest.fixture()
def client(server: ServerProcess) -> Iterator[httpx.Client]:
    with server.client() as c:
        yield c


def through_kfbox(client: httpx.Client) -> float:
    """Inference requests kfbox's own HTTP stack answered so far (its /metrics)."""
    return sum(float(line.rsplit(" ", 1)[1]) for line in client.get("/metrics").text.splitlines()
               if line.startswith(GATEWAY_ROUTE))


def bypassing_kfbox(client: httpx.Client, send: Callable[[], T]) -> tuple[T, bool]:
    """What ``send()`` returned, and whether no inference request reached kfbox's own HTTP stack meanwhile
    (HAProxy took it straight to the replica)."""
    before = through_kfbox(client)
    result = send()
    return result, through_kfbox(client) == before


def straight(client: httpx.Client, send: Callable[[], httpx.Response]) -> bool:
    reply, bypassed = bypassing_kfbox(client, send)
    return reply.status_code == 200 and bypassed


def page(client: httpx.Client, path: str = PAGE) -> str:
    reply = client.get(path, headers={"Accept": "text/html"})
    assert reply.status_code == 200, reply.text[-500:]
    return reply.text


def snippet(text: str, label: str) -> str:
    found = re.search(rf'<pre tabindex="0" aria-label="{label}"><code>(.*?)</code></pre>', text, re.S)
    assert found, text[-3000:]
    return html.unescape(found.group(1))


def run_snippets(text: str) -> tuple[Any, Any]:
    """The page's curl command and Python code run as a user would, the token in ``KFBOX_TOKEN``: the curl in a
    shell, the Python as a script; what each printed, as JSON."""
    if shutil.which("curl") is None:  # .ci/run installs it; say so rather than pass
        pytest.fail("curl is not installed: sudo apt-get install curl")
    env = {**os.environ, "KFBOX_TOKEN": TOKEN}
    curl = subprocess.run(["sh", "-c", snippet(text, "curl command")], capture_output=True, text=True, timeout=60,
                          env=env)
    code = subprocess.run([sys.executable, "-c", snippet(text, "Python code")], capture_output=True, text=True,
                          timeout=60, env=env)
    assert curl.returncode == 0 and code.returncode == 0, (curl.stderr, code.stderr)
    return json.loads(curl.stdout), json.loads(code.stdout)


def test_the_deployment_page_shows_the_ingress_and_its_curl_predicts_through_haproxy(
        server: ServerProcess, client: httpx.Client) -> None:
    url = ingress_url(server.home)
    text = page(client)
    assert f"Ingress (HAProxy) <code>{url}/serving/default/iris</code>" in text
    assert f"<code>Host: iris.default.example.com</code> to <code>{url}</code>" in text
    assert re.search(r'id="data-plane">Data plane <span class="state state-up">UP</span> '
                     rf'<span class="muted">haproxy up on {re.escape(url)}</span>', text), text
    assert "These use the HAProxy ingress: the faster door" in text
    assert "The Predict button asks through kfbox's own port" in html.unescape(text)
    body = client.get(PAGE + ".json").json()
    assert body["ingress"]["state"] == "up" and body["door"]["url"] == f"{url}/serving/default/iris"

    # the curl (in a shell) and the Python (as a script), run as shown with the user's token: answered by the
    # replica through HAProxy, kfbox's own HTTP stack never sees them
    curl = shlex.split(snippet(text, "curl command"))
    assert curl[:3] == ["curl", "-s", f"{url}/serving/default/iris/v1/models/iris:predict"], curl
    (replied, printed), bypassed = bypassing_kfbox(client, lambda: run_snippets(text))
    assert bypassed and replied["predictions"] in ([0], [1], [2]) and printed in ([0], [1], [2]), (replied, printed)

    # the Host form the page shows, sent to the ingress: straight to the replica too
    assert straight(client, lambda: httpx.post(f"{url}/v1/models/iris:predict", json={"instances": ROWS},
                                               headers={"Host": "iris.default.example.com",
                                                        "Authorization": f"Bearer {TOKEN}"}))


def test_the_predict_form_still_answers_through_kfbox(server: ServerProcess, client: httpx.Client) -> None:
    client.get(PAGE, headers={"Accept": "text/html"})
    form = {"csrf_token": str(client.cookies.get("kfbox_csrf")), "features": "4",
            "labels": "setosa,versicolor,virginica", "x0": "6.7", "x1": "3.0", "x2": "5.2", "x3": "2.3"}
    before = through_kfbox(client)
    reply = client.post(PAGE + "/predict", data=form, headers={"Origin": server.url})
    assert reply.status_code == 200, reply.text[-600:]
    assert '<strong class="prediction">virginica</strong>' in reply.text
    assert through_kfbox(client) == before + 1  # asked through kfbox's own port, as the note says


def test_the_deployments_list_shows_the_data_plane(server: ServerProcess, client: httpx.Client) -> None:
    url = ingress_url(server.home)
    text = page(client, "/deployments")
    assert '<span class="state state-up">UP</span>' in text
    assert f"every deployment also answers on the ingress at <code>{url}/serving/&lt;namespace&gt;" in text
    body = client.get("/deployments.json").json()
    assert body["data_plane"] == {"url": url, "state": "up", "health": f"haproxy up on {url}"}
    assert [d["ingress_url"] for d in body["deployments"]] == [f"{url}/serving/default/iris"]


def test_serve_get_prints_the_ingress_url(server: ServerProcess, client: httpx.Client) -> None:
    url = ingress_url(server.home)
    assert client.get("/healthz").json()["ingress_url"] == url
    shown = run_cli("serve", "get", "iris", "--url", server.url, env={"KFBOX_TOKEN": TOKEN})
    assert shown.returncode == 0, shown.stderr
    lines = shown.stdout.splitlines()
    assert any("ingress url" in line and f"{url}/serving/default/iris" in line for line in lines), shown.stdout
    assert any("data plane" in line and f"haproxy up on {url}" in line for line in lines), shown.stdout
    assert "to the kfbox port or the ingress" in " ".join(shown.stdout.split())


def test_the_data_plane_lines_have_no_serious_accessibility_findings(server: ServerProcess) -> None:
    """axe-core in Debian's chromium on the two pages that show the data plane (its badges' colours too)."""
    from tests.support import axe_in_context, axe_serious, require

    require("playwright", "pip install playwright (the test extra)")
    chromium = shutil.which("chromium")
    assert chromium, "Debian's chromium is not installed: sudo apt-get install chromium"
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=["--headless", "--no-sandbox", "--disable-gpu"])
        try:
            context = browser.new_context(extra_http_headers={"Authorization": f"Bearer {TOKEN}"})
            axe_in_context(context)
            tab = context.new_page()
            findings = {}
            for path in (PAGE, "/deployments"):
                tab.goto(server.url + path)
                assert tab.locator("#data-plane .state-up").inner_text() == "UP"
                if serious := axe_serious(tab):
                    findings[path] = serious
        finally:
            browser.close()
    assert not findings, findings


def test_the_v2_snippets_predict_through_haproxy(server: ServerProcess, client: httpx.Client) -> None:
    """A V2 deployment's page shows V2 snippets (``/v2/models/NAME/infer``, the model's own inputs) on the
    ingress; run as shown, HAProxy takes them straight to the replica, which answers V2 outputs."""
    url = ingress_url(server.home)
    train_iris(server.home / "pvc" / "models" / "iris-v2")
    apply(client, iris_v2_manifest("pvc://models/iris-v2", write_iris_v2(server.home / "code")))
    wait_ready(client, "iris-v2")
    infer = f"{url}/serving/default/iris-v2/v2/models/iris-v2/infer"
    text = wait_for(lambda: t if f"curl -s {infer}" in (t := page(client, "/deployments/default/iris-v2")) else None,
                    30, "the V2 snippets on the ingress")  # once the page read the model's V2 metadata
    curl = shlex.split(snippet(text, "curl command"))
    body = json.loads(curl[curl.index("-d") + 1])
    assert [(i["name"], i["datatype"]) for i in body["inputs"]][2] == ("petal_length", "FP64"), body
    wait_for(lambda: straight(client, lambda: httpx.post(infer, json=body, headers={
        "Authorization": f"Bearer {TOKEN}"})), 30, "HAProxy routing iris-v2 straight to its replica")
    (replied, printed), bypassed = bypassing_kfbox(client, lambda: run_snippets(text))
    assert bypassed, "a snippet went through kfbox"
    assert replied["model_name"] == "iris-v2" and replied["outputs"][0]["data"] in ([0], [1], [2]), replied
    assert printed == replied["outputs"][0]["data"]


def test_the_page_reads_restarting_until_a_restarted_haproxy_listens_then_up(server: ServerProcess,
                                                                            client: httpx.Client) -> None:
    """HAProxy killed while another program takes the ingress port: kfbox starts it again (each start exits,
    the port being taken), and until one listens the page reads RESTARTING, /healthz says so and the snippets
    use kfbox's own port, which answers them; once the port is free the next start listens and the page reads
    UP with the ingress again. Last in the module: it leaves HAProxy restarted."""
    url = ingress_url(server.home)
    port = int(url.rsplit(":", 1)[1])
    kills = 0
    with contextlib.ExitStack() as stack:

        def kill_and_take_the_port() -> bool:
            nonlocal kills
            try:
                os.kill(int((server.home / "haproxy" / "haproxy.pid").read_text().split()[0]), signal.SIGKILL)
            except (OSError, ValueError):  # between a restart's spawn and its pid file
                return False
            kills += 1
            wait_for(lambda: not connects(port), 10, "HAProxy's port closed")
            taken = stack.enter_context(socket.socket())
            taken.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:  # kfbox restarts it after a backoff (0.5 s): it may have been quicker than us, then again
                taken.bind(("127.0.0.1", port))
                taken.listen(1)  # bound alone, the port is still HAProxy's to take: both sockets set SO_REUSEADDR
            except OSError:
                return False
            return True

        wait_for(kill_and_take_the_port, 30, "the ingress port taken while HAProxy is down")
        text = page(client)  # no start can listen now: no window to catch
        assert '<span class="state state-restarting">RESTARTING</span>' in text, text
        assert f"haproxy restarting on {url}" in text
        assert "HAProxy is restarting, so these use kfbox's own port" in html.unescape(text)
        assert shlex.split(snippet(text, "curl command"))[2] == \
            f"{server.url}/serving/default/iris/v1/models/iris:predict"
        replied, printed = run_snippets(text)  # kfbox's port answers them meanwhile
        assert replied["predictions"] in ([0], [1], [2]) and printed in ([0], [1], [2]), (replied, printed)
        # ", restarted N times" follows once a restart has run (its start may already have failed on the port)
        assert client.get("/healthz").json()["data_plane"].startswith(f"haproxy restarting on {url}")
    text = wait_for(lambda: t if "state state-up" in (t := page(client)) else None, 30, "UP once the port is free")
    assert f"haproxy up on {url}, restarted {kills} time{'s' if kills > 1 else ''}" in text  # 1 unless raced
    assert shlex.split(snippet(text, "curl command"))[2] == f"{url}/serving/default/iris/v1/models/iris:predict"
    (replied, _), bypassed = bypassing_kfbox(client, lambda: run_snippets(text))
    assert bypassed and replied["predictions"] in ([0], [1], [2]), replied
