"""The Monitoring page and the deployment page's live chart, on the real server with Prometheus."""

from __future__ import annotations

from kfbox.chart_svg import panels_of
from tests.monitoring.conftest import SERVICES, Monitored
from tests.serving.helpers import wait_for


def test_monitoring_page_lists_charts_alerts_and_pipelines(monitored: Monitored) -> None:
    with monitored.server.client() as client:
        page = client.get("/monitoring")
        data = client.get("/monitoring.json").json()
    assert page.status_code == 200
    assert "script-src 'self'" in page.headers["content-security-policy"]
    assert '<script src="/static/charts.js" defer></script>' in page.text
    for name in SERVICES:
        assert f'data-src="/monitoring/series/default/{name}?minutes=15&amp;svg=1"' in page.text
    assert 'data-src="/monitoring/series/pipelines?minutes=15&amp;svg=1"' in page.text
    assert '<table id="alerts">' in page.text  # Prometheus runs: its alerts are listed
    assert data["prometheus"]["running"] and data["alerts"]["source"] == "prometheus"
    assert [s["name"] for s in data["services"]] == list(SERVICES)
    assert data["pipelines"]["runs"]["FAILED"] >= 1
    failed = [t for t in data["pipelines"]["tasks"] if t["state"] == "FAILED"]
    assert failed and failed[0]["count"] >= 1


def test_deployment_page_has_a_live_chart(monitored: Monitored) -> None:
    with monitored.server.client() as client:
        page = client.get(f"/deployments/default/{SERVICES[0]}")
        script = client.get("/static/charts.js")
        # a line needs two scrapes of a rate: when this module is the first to use the package's server
        # (pytest -n), Prometheus may not have them yet
        series = wait_for(lambda: (s := client.get(f"/monitoring/series/default/{SERVICES[0]}",
                                                    params={"minutes": 5, "svg": "true"}).json())
                          and all(f'data-field="{f}"' in s["svg"] for f in ("rps", "p99", "ready", "desired")) and s,
                          60, "the deployment chart's lines")
        pipelines = client.get("/monitoring/series/pipelines", params={"svg": "true"}).json()
    assert page.status_code == 200
    assert f'data-src="/monitoring/series/default/{SERVICES[0]}?minutes=15&amp;svg=1"' in page.text
    assert script.status_code == 200 and "parseFromString(data.svg" in script.text
    # the picture the script swaps in: four panels on one time axis, a line for each live series
    assert panels_of(series["svg"]) == [("requests/s", ["rps"]), ("success %", ["success"]),
                                        ("latency ms", ["p50", "p95", "p99"]),
                                        ("replicas · in flight", ["desired", "ready", "inflight"])]
    for field in ("rps", "p99", "ready", "desired"):
        assert f'data-field="{field}"' in series["svg"]
    assert [title for title, _ in panels_of(pipelines["svg"])] == ["runs queued · running", "runs finished"]
