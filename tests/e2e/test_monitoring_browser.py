"""Watch autoscaling in a real browser: Debian's headless Chromium (Playwright) on a deployment page.

A load test started from the page's form (the page's CSRF token, a real ``kfbox loadtest``
child) drives a real iris InferenceService from 1 to >= 2 replicas; the live chart (our SVG,
fed by kfbox's in-memory history, no Prometheus) shows the ready replicas reach 2.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.serving.helpers import apply, manifest, train_iris, wait_ready
from tests.support import ServerProcess

playwright = pytest.importorskip("playwright.sync_api", reason="pip install playwright (the test extra)")
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]
pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian's chromium is not installed")


@pytest.fixture(scope="module")
def scaling_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    home = tmp_path_factory.mktemp("home")
    server = ServerProcess.start(home, extra_env={"KFBOX_MONITORING_SAMPLE_INTERVAL": "1"})
    try:
        train_iris(home / "pvc" / "models" / "watch")
        with server.client() as client:
            apply(client, manifest("watch", "pvc://models/watch", annotations={"autoscaling.knative.dev/window": "2s"},
                                   min_replicas=1, max_replicas=2, scale_target=2, scale_metric="concurrency"))
            wait_ready(client, "watch")
        yield server
    finally:
        server.stop()


def test_chart_shows_a_load_test_scale_the_deployment_up(scaling_server: ServerProcess, tmp_path: Path) -> None:
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            tab: Any = browser.new_page(viewport={"width": 1200, "height": 1400})
            errors: list[str] = []
            tab.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            tab.on("pageerror", lambda e: errors.append(str(e)))
            tab.goto(f"{scaling_server.url}/deployments/default/watch")
            chart = tab.locator("#live-chart")
            _wait_ready_replicas(tab, chart, lambda n: n == 1, 20)
            tab.fill("#lt-duration", "40")
            tab.fill("#lt-concurrency", "16")
            tab.click("text=Start load test")
            tab.wait_for_url("**/deployments/default/watch*")
            _wait_ready_replicas(tab, chart, lambda n: n >= 2, 90)
            assert float(chart.get_attribute("data-last-rps") or 0) > 1
            playwright.expect(tab.locator("#live-chart svg path[data-field=ready]")).to_have_count(1, timeout=20_000)
            assert "memory" in (chart.locator("figcaption").text_content() or "")
            tab.screenshot(path=str(tmp_path / "scale-up.png"), full_page=True)
            assert not errors, errors  # no CSP violation, no script error
        finally:
            browser.close()


def _wait_ready_replicas(tab: Any, chart: Any, want: Any, seconds: float) -> None:
    """Poll the chart's last drawn value (wait_for_function would eval a string: the page's CSP refuses it)."""
    deadline = time.monotonic() + seconds
    seen = None
    while time.monotonic() < deadline:
        seen = chart.get_attribute("data-last-ready")
        if seen and want(float(seen)):
            return
        tab.wait_for_timeout(250)
    raise AssertionError(f"the chart's ready replicas stayed at {seen!r} for {seconds}s")
