"""Watch autoscaling in a real browser: Debian's headless Chromium (Playwright) on a deployment page.

A load test started from the page's form (the page's CSRF token, a real ``kfbox loadtest``
child) drives a real iris InferenceService from 1 to >= 2 replicas; the live chart (our SVG, fed
by the real local Prometheus) shows the ready replicas reach 2, and Prometheus scrapes the new
replica, found by HTTP service discovery with no restart. Prometheus is then stopped: the same
chart goes on from kfbox's in-memory history, still at 2.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.serving.helpers import apply, manifest, train_iris, wait_for, wait_ready
from tests.support import ServerProcess, loopback, require

require("playwright", "pip install playwright (the test extra)")
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]
pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian's chromium is not installed")


@pytest.fixture(scope="module")
def scaling_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    home = tmp_path_factory.mktemp("home")
    if shutil.which("prometheus") is None:  # .ci/run installs it; say so rather than pass
        pytest.fail("prometheus is not installed: sudo apt-get install prometheus")
    server = ServerProcess.start(home, extra_env={"KFBOX_MONITORING_SAMPLE_INTERVAL": "1", "KFBOX_PROMETHEUS": "1",
                                                 "KFBOX_PROMETHEUS_SCRAPE_INTERVAL": "1s"})
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
    from playwright import sync_api as playwright  # imported here: every pytest worker imports this module

    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            tab: Any = browser.new_page(viewport={"width": 1200, "height": 1400})
            errors: list[str] = []
            tab.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            tab.on("pageerror", lambda e: errors.append(str(e)))
            with scaling_server.client() as client:
                prometheus = wait_for(lambda: (s := client.get("/monitoring/prometheus").json())["running"] and s,
                                      30, "prometheus running")
            replicas = 'up{job="kfbox-replica",service_name="watch"} == 1'
            assert len(wait_for(lambda: _query(prometheus["url"], replicas), 60, "the first replica scraped")) == 1
            tab.goto(f"{scaling_server.url}/deployments/default/watch")
            chart = tab.locator("#live-chart")
            _wait_ready_replicas(tab, chart, lambda n: n == 1, 30, source="prometheus")
            tab.fill("#lt-duration", "40")
            tab.fill("#lt-concurrency", "16")
            tab.click("text=Start load test")
            tab.wait_for_url("**/deployments/default/watch*")
            _wait_ready_replicas(tab, chart, lambda n: n >= 2, 90, source="prometheus")
            # the load is drawn too (a rate needs two scrapes of the new window: poll, the load runs 40 s)
            wait_for(lambda: float(chart.get_attribute("data-last-rps") or 0) > 1, 20, "the chart's request rate")
            playwright.expect(tab.locator("#live-chart svg path[data-field=ready]")).to_have_count(1, timeout=20_000)
            # the new replica: discovered and scraped by the Prometheus that was running before it started
            wait_for(lambda: len(_query(prometheus["url"], replicas)) >= 2, 30, "the new replica scraped")
            with scaling_server.client() as client:
                assert client.get("/monitoring/prometheus").json()["pid"] == prometheus["pid"]  # no restart
                assert client.post("/monitoring/prometheus", json={"action": "stop"}).json()["running"] is False
            _wait_ready_replicas(tab, chart, lambda n: n >= 2, 30, source="memory")  # the same chart, from memory
            tab.screenshot(path=str(tmp_path / "scale-up.png"), full_page=True)
            assert not errors, errors  # no CSP violation, no script error
        finally:
            browser.close()


def _wait_ready_replicas(tab: Any, chart: Any, want: Any, seconds: float, source: str) -> None:
    """Poll the chart's last drawn value and caption (wait_for_function would eval a string: the CSP refuses it)."""
    from playwright import sync_api as playwright

    deadline = time.monotonic() + seconds
    seen = caption = None
    while time.monotonic() < deadline:
        try:  # the page may still be loading from a server busy with the load test: poll again
            seen = chart.get_attribute("data-last-ready", timeout=5_000)
            caption = chart.locator("figcaption").text_content(timeout=5_000) or ""
        except playwright.Error:
            continue
        if seen and want(float(seen)) and caption.startswith(f"from {source} "):
            return
        tab.wait_for_timeout(250)
    raise AssertionError(f"the chart's ready replicas stayed at {seen!r} for {seconds}s ({caption!r})")


def _query(url: str, expr: str) -> list[dict[str, Any]]:
    """Polled ten times a second for seconds on end: through the one loopback client (``httpx.get`` builds a
    client, ~50 ms of CPU, at every call)."""
    try:
        reply = loopback().get(f"{url}/api/v1/query", params={"query": expr}, timeout=10)
    except httpx.TransportError:  # started, not listening yet
        return []
    return reply.json()["data"]["result"] if reply.status_code == 200 else []  # type: ignore[no-any-return]
