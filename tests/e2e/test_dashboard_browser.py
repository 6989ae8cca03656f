"""The dashboard in a real browser: Debian's headless Chromium driven by Playwright (never a browser
download), one ``kfbox up`` and one browser for the module.

Seeded with real runs (a failing pipeline through ``kfp.Client``, a 600-task graph), a real iris
model registered through the Model Registry API and deployed from the Models page onto a real
kserve replica. Screenshots go to ``$KFBOX_TEST_ARTIFACTS`` (else the test's tmp dir).
"""

from __future__ import annotations

import http.server
import os
import shutil
import threading
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.serving.helpers import train_iris
from tests.support import ServerProcess, axe_findings, loopback, require
from tests.ui.seed import SCRIPT, add_task_rows, compiled, register_model, wait_run, wide_spec

require("playwright", "pip install playwright (the test extra)")
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run",
        # a second name for loopback, to prove a foreign Host header (DNS rebinding) is refused
        "--host-resolver-rules=MAP rebound.test 127.0.0.1"]
pytestmark = [pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian's chromium is not installed"),
              pytest.mark.filterwarnings("ignore:User access token is missing")]


@pytest.fixture(scope="module")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = os.environ.get("KFBOX_TEST_ARTIFACTS")
    folder = Path(base) / "dashboard" if base else tmp_path_factory.mktemp("screenshots")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture(scope="module")
def seeded(server: ServerProcess, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    from kfp import Client

    folder = tmp_path_factory.mktemp("seed")
    compiled("failing", folder)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        client = Client(host=f"{server.url}/pipeline")
    printed = _capture(lambda: client.create_run_from_pipeline_package(str(folder / "failing.yaml"),
                                                                        run_name="failing in the browser"))
    link = next(line.split("Run details: ", 1)[1] for line in printed.splitlines() if "Run details:" in line)
    run_id = link.rsplit("/", 1)[1]
    with server.client() as http:
        wide = http.post("/apis/v2beta1/runs", json={"display_name": "wide", "pipeline_spec": wide_spec(600)})
        wide_id = wide.json()["run_id"]
        add_task_rows(server, wide_id, 600)
        iris = tmp_path_factory.mktemp("model") / "iris"
        train_iris(iris)
        ids = register_model(http, "iris", f"file://{iris}", description=SCRIPT, versions=("v1", "v2"),
                             metrics={"accuracy": 0.96})
        wait_run(http, run_id)
    return {"link": link, "run": run_id, "wide": wide_id, "model": ids["model"], "v1": ids["v1"]}


def _capture(fn: Any) -> str:
    import io
    from contextlib import redirect_stdout

    out = io.StringIO()
    with redirect_stdout(out):
        fn()
    return out.getvalue()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from playwright import sync_api as playwright  # imported here: every pytest worker imports this module

    with playwright.sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield chromium
        chromium.close()


@pytest.fixture()
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    tab = context.new_page()
    tab.console_errors = []  # CSP violations and script errors land here
    tab.on("console", lambda m: tab.console_errors.append(m.text) if m.type == "error" else None)
    tab.on("pageerror", lambda e: tab.console_errors.append(str(e)))
    yield tab
    context.close()


def test_each_page_renders_with_seeded_data(server: ServerProcess, seeded: dict[str, Any], page: Any,
                                             shots: Path) -> None:
    pages = {"home": "/", "runs": "/runs", "run": f"/runs/{seeded['run']}?task=explode",
             "experiments": "/experiments", "pipelines": "/pipelines", "models": "/models",
             "model": f"/models/{seeded['model']}?deploy={seeded['v1']}", "deployments": "/deployments",
             "artifacts": "/artifacts", "compare": f"/compare?runs={seeded['run']}&runs={seeded['wide']}"}
    for name, path in pages.items():
        reply = page.goto(server.url + path)
        assert reply.status == 200, (path, reply.text()[:500])
        assert page.locator("h1").inner_text()
        page.screenshot(path=str(shots / f"{name}.png"), full_page=True)
    assert page.title() != "owned"  # the model description's <script> stayed text
    assert page.console_errors == []


def test_kfp_client_run_link_opens_the_run_page(seeded: dict[str, Any], page: Any) -> None:
    assert "/pipeline/#/runs/details/" in seeded["link"]
    page.goto(seeded["link"])
    page.wait_for_url(f"**/runs/{seeded['run']}")
    assert "failing in the browser" in page.locator("h1").inner_text()


def test_600_task_dag_renders(server: ServerProcess, seeded: dict[str, Any], page: Any, shots: Path) -> None:
    """The whole graph of a 600-task run is drawn (every node, with its live state). How fast it draws
    is a benchmark's figure (`benchmarks/dashboard_pages.py --rounds 0`), not a timed test."""
    page.goto(f"{server.url}/runs/{seeded['wide']}")
    assert page.locator("#dag [data-node]").count() == 602
    box = page.evaluate("() => { const b = document.getElementById('dag').getBBox(); return [b.width, b.height]; }")
    assert box[0] > 0 and box[1] > 0
    page.screenshot(path=str(shots / "dag-600.png"))
    assert page.locator('#dag [data-node="step-3"]').get_attribute("data-state") == "FAILED"


def test_failing_task_logs_are_readable_after_the_run_ended(server: ServerProcess, seeded: dict[str, Any],
                                                            page: Any) -> None:
    page.goto(f"{server.url}/runs/{seeded['run']}")
    node = page.locator('#dag a:has([data-node="explode"])')
    node.focus()
    page.keyboard.press("Enter")
    page.wait_for_url("**task=explode**")
    log = page.locator("pre.log")
    assert "ValueError: boom: bad input" in log.inner_text()


def test_live_states_log_follow_and_terminate_button(server: ServerProcess, page: Any,
                                                     tmp_path_factory: pytest.TempPathFactory) -> None:
    spec = compiled("hanging", tmp_path_factory.mktemp("hanging"))
    with server.client() as http:
        run = http.post("/apis/v2beta1/runs", json={"display_name": "hangs", "pipeline_spec": spec,
                                                    "runtime_config": {"parameters": {"seconds": 600}}}).json()
    page.goto(f"{server.url}/runs/{run['run_id']}")
    # the page's script polls the JSON twin and recolours the node: no reload by the test
    page.wait_for_selector('#dag [data-node="hang"][data-state="RUNNING"]', timeout=60_000)
    page.goto(f"{server.url}/runs/{run['run_id']}?task=hang")
    assert page.locator("pre.log").get_attribute("data-live") == "true"
    page.wait_for_function("document.querySelector('pre.log').textContent.includes('pid=')", timeout=30_000)
    page.on("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name="Terminate").click()
    page.wait_for_selector("h1 .state-canceled", timeout=60_000)
    assert httpx.get(f"{server.url}/apis/v2beta1/runs/{run['run_id']}").json()["state"] == "CANCELED"


def test_deploy_from_models_page_then_predict_the_iris_class(server: ServerProcess, seeded: dict[str, Any],
                                                             page: Any, shots: Path) -> None:
    page.goto(f"{server.url}/models/{seeded['model']}")
    page.get_by_role("link", name="Deploy…").last.click()  # newest first: the last row is v1
    page.get_by_role("button", name="Deploy").click()
    page.wait_for_url("**/deployments/default/iris")
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:  # polled through the one loopback client (httpx.get: a client per call)
        body = loopback().get(f"{server.url}/apis/serving.kserve.io/v1beta1/namespaces/default/inferenceservices/iris")
        if any(c["type"] == "Ready" and c["status"] == "True" for c in body.json()["status"]["conditions"]):
            break
        time.sleep(0.3)
    page.reload()
    for index, value in enumerate(["6.7", "3.0", "5.2", "2.3"]):
        page.fill(f"#x{index}", value)
    page.get_by_role("button", name="Predict").click()
    assert page.locator("#prediction .prediction").inner_text() == "virginica"
    assert "curl -s" in page.locator("pre", has_text="curl").inner_text()
    # the replica log follows live (Server-Sent Events): a failed prediction's error appears without a
    # reload (a replica writes no line for a request that succeeds)
    assert "expecting 4 features" not in page.locator("#replica-log").inner_text()
    failed = httpx.post(f"{server.url}/serving/default/iris/v1/models/iris:predict", json={"instances": [[5.1, 3.5]]})
    assert failed.status_code == 400 and "expecting 4 features" in failed.json()["error"]
    page.wait_for_selector("#replica-log[data-offset]", timeout=20_000)  # set by logs.js on new text
    page.wait_for_function("document.querySelector('#replica-log').innerText.includes('expecting 4 features')",
                           timeout=20_000)
    # v2 as a 10% canary (as kubectl patch would), then the page's slider moves the split to 40%
    api = f"{server.url}/apis/serving.kserve.io/v1beta1/namespaces/default/inferenceservices/iris"
    patch = {"spec": {"predictor": {"canaryTrafficPercent": 10,
                                    "model": {"storageUri": "model-registry://iris/v2"}}}}
    assert httpx.patch(api, json=patch, headers={"Content-Type": "application/merge-patch+json"}).status_code == 200
    page.reload()
    page.fill("#canary", "40")
    page.get_by_role("button", name="Set split").click()
    page.wait_for_url("**/deployments/default/iris")
    traffic = httpx.get(api).json()["status"]["components"]["predictor"]["traffic"]
    assert sorted(t["percent"] for t in traffic) == [40, 60]
    assert page.locator("td.num", has_text="40%").count() == 1
    page.screenshot(path=str(shots / "deployment.png"), full_page=True)


def test_actions_are_reachable_by_keyboard(server: ServerProcess, seeded: dict[str, Any], page: Any) -> None:
    page.goto(f"{server.url}/runs/{seeded['run']}")
    reached: list[str] = []
    for _ in range(40):
        page.keyboard.press("Tab")
        reached.append(page.evaluate("document.activeElement.textContent.trim()"))
    for action in ("Skip to content", "Retry", "Clone…", "Archive", "Compare…", "Runs", "Models"):
        assert action in reached, (action, reached)
    page.keyboard.press("Shift+Tab")  # and back: focus order is a cycle, not a trap


def test_cross_origin_form_post_and_foreign_host_are_refused(server: ServerProcess, seeded: dict[str, Any],
                                                             page: Any) -> None:
    run = seeded["run"]
    evil = f"""<!doctype html><form id=f method=post action="{server.url}/runs/{run}/archive">
      <input name=csrf_token value=guess></form><script>document.getElementById('f').submit()</script>"""

    class Evil(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.end_headers()
            self.wfile.write(evil.encode())

        def log_message(self, *args: Any) -> None:
            pass

    site = http.server.ThreadingHTTPServer(("127.0.0.2", 0), Evil)
    threading.Thread(target=site.serve_forever, daemon=True).start()
    try:
        with page.expect_response(lambda r: r.url.endswith("/archive")) as posted:
            page.goto(f"http://127.0.0.2:{site.server_port}/")
        assert posted.value.status == 403
    finally:
        site.shutdown()
    assert httpx.get(f"{server.url}/apis/v2beta1/runs/{run}").json()["storage_state"] == "AVAILABLE"
    reply = page.goto(f"http://rebound.test:{server.port}/runs")
    assert reply.status == 400 and "DNS-rebinding" in reply.text()


def test_no_serious_accessibility_findings(server: ServerProcess, seeded: dict[str, Any], browser: Any) -> None:
    """axe-core from npm (installed at test time into a scratch folder, never into the repo)."""
    paths = ("/", "/runs", f"/runs/{seeded['run']}?task=explode", f"/models/{seeded['model']}",
             "/deployments/default/iris", "/pipelines", "/experiments")
    findings = axe_findings(browser, {path: server.url + path for path in paths})
    assert findings == {}
