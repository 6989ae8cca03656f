"""One real kfbox server with a real Prometheus (Debian's binary) scraping it and two model deployments."""

from __future__ import annotations

import dataclasses
import shutil
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.serving.helpers import apply, manifest, train_iris, v1, wait_for, wait_ready
from tests.support import ServerProcess

SERVICES = ("iris-a", "iris-b")


@dataclasses.dataclass
class Monitored:
    server: ServerProcess
    prometheus: str

    def query(self, expr: str) -> list[dict[str, Any]]:
        reply = httpx.get(f"{self.prometheus}/api/v1/query", params={"query": expr}, timeout=10)
        assert reply.status_code == 200, f"{expr}: {reply.text}"
        return reply.json()["data"]["result"]  # type: ignore[no-any-return]

    def wait_series(self, expr: str, at_least: int = 1, timeout: float = 60.0) -> list[dict[str, Any]]:
        return wait_for(lambda: (found := self.query(expr)) and len(found) >= at_least and found, timeout,  # type: ignore[no-any-return]
                        f"{at_least} series of {expr}")


@pytest.fixture(scope="module")
def monitored(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Monitored]:
    if shutil.which("prometheus") is None:  # .ci/run installs it; say so rather than pass
        pytest.fail("prometheus is not installed: sudo apt-get install prometheus")
    home = tmp_path_factory.mktemp("home")
    server = ServerProcess.start(home, extra_env={"KFBOX_PROMETHEUS": "1", "KFBOX_PROMETHEUS_SCRAPE_INTERVAL": "1s"})
    try:
        with server.client() as client:
            status = wait_for(lambda: (s := client.get("/monitoring/prometheus").json())["running"] and s, 30,
                              "prometheus running")
            for name in SERVICES:  # deployed after Prometheus started: found by service discovery alone
                train_iris(home / "pvc" / "models" / name)
                apply(client, manifest(name, f"pvc://models/{name}"))
            for name in SERVICES:
                wait_ready(client, name)
                for _ in range(5):
                    assert v1(client, name).status_code == 200
            assert client.post(f"/serving/default/{SERVICES[0]}/v1/models/nope:predict", json={}).status_code >= 400
        yield Monitored(server=server, prometheus=str(status["url"]))
    finally:
        server.stop()
