"""Real Prometheus scrapes a real kfbox server: the server and both replicas, found by HTTP service discovery."""

from __future__ import annotations

import re
import warnings
from pathlib import Path

import httpx
from kfp import Client

from tests.monitoring.conftest import RETENTION, SERVICES, Monitored, monitoring_cli
from tests.pipelines import sample_pipelines as samples
from tests.pipelines.conftest import wait_run
from tests.serving.helpers import wait_for
from tests.support import lean_env, run_cli


def test_prometheus_scrapes_the_server_and_every_replica(monitored: Monitored) -> None:
    up = monitored.wait_series('up{job=~"kfbox|kfbox-replica"} == 1', at_least=3)
    jobs = sorted((s["metric"]["job"], s["metric"].get("service_name", "")) for s in up)
    assert jobs == [("kfbox", ""), ("kfbox-replica", SERVICES[0]), ("kfbox-replica", SERVICES[1])]
    # each replica's own process metrics (kserve's registry), labelled with its Knative revision name
    rss = monitored.wait_series('process_resident_memory_bytes{job="kfbox-replica"}', at_least=2)
    assert sorted(s["metric"]["revision_name"] for s in rss) == [f"{n}-predictor-00001" for n in SERVICES]


def test_server_reports_cpu_and_memory_of_each_replica(monitored: Monitored) -> None:
    # the package's server: test_alerts may have added its broken service; ours each have a replica series
    ours = "|".join(SERVICES)
    rows = monitored.wait_series(f'kfbox_process_resident_memory_bytes{{process="replica",name=~"{ours}"}}', 2)
    assert sorted(r["metric"]["name"] for r in rows) == list(SERVICES)
    assert all(float(r["value"][1]) > 10e6 for r in rows)  # a Python with sklearn loaded: tens of MB
    server = monitored.wait_series('kfbox_process_cpu_seconds_total{process="server"}')
    assert float(server[0]["value"][1]) > 0


def test_knative_named_series_answer_the_cluster_queries(monitored: Monitored) -> None:
    codes = monitored.wait_series('sum by (service_name, response_code_class) (revision_app_request_count)', 2)
    seen = {(s["metric"]["service_name"], s["metric"]["response_code_class"]): float(s["value"][1]) for s in codes}
    assert seen[(SERVICES[0], "2xx")] >= 5 and seen[(SERVICES[1], "2xx")] >= 5
    assert seen[(SERVICES[0], "4xx")] >= 1
    p99 = monitored.wait_series('histogram_quantile(0.99, sum by (service_name, le) '
                                '(revision_app_request_latencies_bucket))', 2)
    assert all(0 < float(s["value"][1]) < 30_000 for s in p99)  # milliseconds, as Knative
    # the package's server is shared: another module's deployment (test_alerts' broken one) may still
    # be in the last scrape while it is deleted, so look at this module's services only
    ours = "|".join(SERVICES)
    pods = monitored.wait_series(f'autoscaler_actual_pods{{service_name=~"{ours}"}}', 2)
    assert {s["metric"]["revision_name"]: s["value"][1] for s in pods} == {
        f"{n}-predictor-00001": "1" for n in SERVICES}


def test_alert_rules_are_loaded(monitored: Monitored) -> None:
    groups = httpx.get(f"{monitored.prometheus}/api/v1/rules", timeout=10).json()["data"]["groups"]
    names = {rule["name"] for group in groups for rule in group["rules"]}
    assert names == {"InferenceServiceErrorRate", "InferenceServiceLatencyP99OverSLO",
                     "InferenceServiceReplicasAtMax", "PipelineRunsFailing"}


def test_kfbox_up_prints_one_line_once_prometheus_is_ready(monitored: Monitored) -> None:
    """The fixture's server is ``kfbox up`` in the foreground with KFBOX_PROMETHEUS=1 (as ``--prometheus``)."""
    def ready_lines() -> list[str]:
        return [line for line in monitored.server.log().splitlines() if line.startswith("Prometheus is ")]

    lines = wait_for(ready_lines, 60, "the ready line in the server's output")
    assert len(lines) == 1 and lines[0].startswith("Prometheus is running at http://127.0.0.1:"), lines


def test_kfbox_up_detach_returns_once_prometheus_answers_queries(tmp_path: Path) -> None:
    home = tmp_path / "home"
    done = run_cli("up", "--detach", "--prometheus", "--port", "0", "--home", str(home), env=lean_env())
    try:
        assert done.returncode == 0, done.stderr
        lines = [line for line in done.stdout.splitlines() if line.startswith("Prometheus is ")]
        assert len(lines) == 1, done.stdout
        found = re.search(r"^Prometheus is running at (http://127\.0\.0\.1:\d+) ", lines[0])
        assert found, lines[0]
        # the first query right after `up` works, no retry: Prometheus had finished starting
        reply = httpx.get(f"{found.group(1)}/api/v1/query", params={"query": "up"}, timeout=10)
        assert reply.status_code == 200 and reply.json()["status"] == "success", reply.text
    finally:
        assert run_cli("down", "--home", str(home)).returncode == 0


def test_cli_monitoring_status_down_up(monitored: Monitored) -> None:
    assert "Prometheus is running at http://127.0.0.1:" in monitoring_cli(monitored.server, "status")
    assert "Prometheus is not running" in monitoring_cli(monitored.server, "down")
    assert "Prometheus is running at" in monitoring_cli(monitored.server, "up")
    with monitored.server.client() as client:
        monitored.prometheus = client.get("/monitoring/prometheus").json()["url"]
    # `up` returned once Prometheus had replayed its data: the first query works, no retry; and it is the
    # same data folder, so the series scraped before the restart are there
    assert monitored.query('up{job="kfbox"}')


def test_prometheus_keeps_its_data_under_the_home_for_the_retention_set(monitored: Monitored) -> None:
    flags = httpx.get(f"{monitored.prometheus}/api/v1/status/flags", timeout=10).json()["data"]
    assert flags["storage.tsdb.retention.time"] == RETENTION
    assert flags["web.listen-address"].startswith("127.0.0.1:")  # loopback only
    data = monitored.server.home / "monitoring" / "data"
    assert flags["storage.tsdb.path"] == str(data)
    assert (data / "wal").is_dir()  # it is writing there
    with monitored.server.client() as client:
        assert client.get("/monitoring/prometheus").json()["retention"] == RETENTION


def test_server_reports_cpu_and_memory_of_a_running_pipeline_worker(monitored: Monitored) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        kfp = Client(host=f"{monitored.server.url}/pipeline")
    run_id = str(kfp.create_run_from_pipeline_func(samples.hanging, arguments={"seconds": 120},
                                                   enable_caching=False).run_id)
    try:
        rows = monitored.wait_series(f'kfbox_process_resident_memory_bytes{{process="worker",name="{run_id}"}}')
        assert float(rows[0]["value"][1]) > 4e6  # bytes of a live Python (~10 MB; not KiB, not 0)
        cpu = monitored.wait_series(f'kfbox_process_cpu_seconds_total{{process="worker",name="{run_id}"}}')
        assert float(cpu[0]["value"][1]) > 0
    finally:
        kfp.terminate_run(run_id)
        wait_run(monitored.server, run_id, states=("CANCELED", "FAILED", "SUCCEEDED"))
