"""One real kfbox server with a real Prometheus (Debian's binary) scraping it and two model deployments."""

from __future__ import annotations

import dataclasses
import shutil
import threading
import warnings
from collections.abc import Iterator
from typing import Any

import pytest
from kfp import Client

from tests.pipelines import sample_pipelines as samples
from tests.pipelines.conftest import wait_run
from tests.serving.helpers import apply, manifest, train_iris, v1, wait_for, wait_ready
from tests.support import ServerProcess, loopback, run_cli

SERVICES = ("iris-a", "iris-b")
RETENTION = "3d"  # not the default (7d): the setting must reach Prometheus


@dataclasses.dataclass
class Monitored:
    server: ServerProcess
    prometheus: str

    def query(self, expr: str) -> list[dict[str, Any]]:
        reply = loopback().get(f"{self.prometheus}/api/v1/query", params={"query": expr}, timeout=10)
        assert reply.status_code == 200, f"{expr}: {reply.text}"
        return reply.json()["data"]["result"]

    def wait_series(self, expr: str, at_least: int = 1, timeout: float = 60.0) -> list[dict[str, Any]]:
        # no wait for /-/ready here: the fixture and `kfbox monitoring up` return once Prometheus is ready
        return wait_for(lambda: (found := self.query(expr)) and len(found) >= at_least and found, timeout,
                        f"{at_least} series of {expr}")


@pytest.fixture(scope="package")  # one server and one Prometheus for every module here
def monitored(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Monitored]:
    if shutil.which("prometheus") is None:  # .ci/run installs it; say so rather than pass
        pytest.fail("prometheus is not installed: sudo apt-get install prometheus")
    home = tmp_path_factory.mktemp("home")
    server = ServerProcess.start(home, extra_env={"KFBOX_PROMETHEUS": "1", "KFBOX_PROMETHEUS_SCRAPE_INTERVAL": "1s",
                                                 "KFBOX_MONITORING_SAMPLE_INTERVAL": "1",
                                                 "KFBOX_PROMETHEUS_ALERT_FOR": "2s",  # alerts fire in seconds
                                                 "KFBOX_PROMETHEUS_RETENTION": RETENTION})
    try:
        with server.client() as client:
            status = wait_for(lambda: (s := client.get("/monitoring/prometheus").json())["ready"] and s, 30,
                              "prometheus ready")
            run_id = submit_failing_run(server)  # a FAILED run and a failed task, for the pipeline series
            for name in SERVICES:  # deployed after Prometheus started: found by service discovery alone
                train_iris(home / "pvc" / "models" / name)
                scale = {"min_replicas": 1, "max_replicas": 2} if name == SERVICES[0] else {}
                apply(client, manifest(name, f"pvc://models/{name}", **scale))
            for name in SERVICES:
                wait_ready(client, name)
                for _ in range(5):
                    assert v1(client, name).status_code == 200
            assert client.post(f"/serving/default/{SERVICES[0]}/v1/models/nope:predict", json={}).status_code >= 400
            assert client.get("/api/model_registry/v1alpha3/registered_models").status_code == 200
            assert wait_run(server, run_id)["state"] == "FAILED"
        stop = threading.Event()
        traffic = threading.Thread(target=_steady_traffic, args=(server, stop), daemon=True)
        traffic.start()  # rates over the last minute need requests during it
        yield Monitored(server=server, prometheus=str(status["url"]))
        stop.set()
        traffic.join(10)
    finally:
        server.stop()


def monitoring_cli(server: ServerProcess, *args: str) -> str:
    """``kfbox monitoring ARGS`` against the server; its standard output."""
    done = run_cli("monitoring", *args, "--url", server.url)
    assert done.returncode == 0, done.stderr
    return done.stdout


def submit_failing_run(server: ServerProcess) -> str:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        client = Client(host=f"{server.url}/pipeline")
    return str(client.create_run_from_pipeline_func(samples.failing, enable_caching=False).run_id)


def _steady_traffic(server: ServerProcess, stop: threading.Event) -> None:
    """About 10 predictions a second over both services, with an error now and then."""
    with server.client() as client:
        while not stop.wait(0.2):
            for name in SERVICES:
                v1(client, name)
            client.post(f"/serving/default/{SERVICES[1]}/v1/models/nope:predict", json={})
