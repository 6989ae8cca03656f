"""kfbox's alert rules fire in the real Prometheus and show on the Monitoring page.

The package's Prometheus loads the shipped rule file with every ``for:`` shortened to 2 s
(``KFBOX_PROMETHEUS_ALERT_FOR``); the expressions and thresholds are the shipped ones.
"""

from __future__ import annotations

import threading
from typing import Any

from tests.monitoring.conftest import Monitored, submit_failing_run
from tests.pipelines.conftest import wait_run
from tests.serving.helpers import API, apply, manifest, ready, status, v1, wait_for

BROKEN = "iris-broken"


def _alerts(monitored: Monitored) -> dict[str, dict[str, Any]]:
    with monitored.server.client() as client:
        found = client.get("/monitoring/alerts").json()
    assert found["source"] == "prometheus"
    return {a["name"]: a for a in found["alerts"] if BROKEN in a["summary"] or a["name"] == "PipelineRunsFailing"}


def test_error_rate_and_failed_run_alerts_fire_and_show_on_the_monitoring_page(monitored: Monitored) -> None:
    """A deployment whose model file is corrupt answers 503 to every prediction: its error-rate alert fires.
    A pipeline run that fails while Prometheus watches: the run-failures alert fires."""
    folder = monitored.server.home / "pvc" / "models" / BROKEN
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "model.joblib").write_bytes(b"not a model")
    stop = threading.Event()

    def predict_until_stopped() -> None:
        with monitored.server.client() as client:
            while not stop.wait(0.3):
                v1(client, BROKEN)

    # the alert is a rise of the FAILED count: Prometheus must hold a sample from before this run fails
    # (alone, this module's first scrape of the server can come after the fixture's and this run's failures)
    monitored.wait_series('kfbox_pipeline_runs{state="FAILED"}')
    run_id = submit_failing_run(monitored.server)
    with monitored.server.client() as client:
        apply(client, manifest(BROKEN, f"pvc://models/{BROKEN}", min_replicas=1, max_replicas=1))
        try:
            wait_for(lambda: ready(status(client, BROKEN))["status"] == "False"
                     and ready(status(client, BROKEN)).get("reason"), 90, "the broken model's failure")
            assert v1(client, BROKEN).status_code == 503
            driver = threading.Thread(target=predict_until_stopped, daemon=True)
            driver.start()
            try:
                alerts = wait_for(lambda: (a := _alerts(monitored)).get("InferenceServiceErrorRate", {})
                                  .get("state") == "firing" and a, 120, "InferenceServiceErrorRate firing")
                assert wait_run(monitored.server, run_id)["state"] == "FAILED"
                alerts = wait_for(lambda: (a := _alerts(monitored)).get("PipelineRunsFailing", {}).get("state")
                                  == "firing" and a, 60, "PipelineRunsFailing firing")
                page = client.get("/monitoring").text
            finally:
                stop.set()
                driver.join(10)
        finally:
            client.delete(API.format(ns="default") + f"/{BROKEN}")
    error_rate = alerts["InferenceServiceErrorRate"]
    assert error_rate["summary"].startswith(f"default/{BROKEN}: ") and "fail (5xx)" in error_rate["summary"]
    assert error_rate["severity"] == "warning"
    for alert in ("InferenceServiceErrorRate", "PipelineRunsFailing"):
        assert f'<tr data-alert="{alert}"><td>{alert}</td><td>firing</td>' in page
    assert f"default/{BROKEN}: " in page
