"""A Prometheus that exits while starting is reported as such, with its exit code and log (real binary)."""

from __future__ import annotations

import socket
import time
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from kfbox.config import Settings
from kfbox.db import Database
from kfbox.server.app import create_app


def test_a_prometheus_that_exits_while_starting_is_not_ready_and_says_why(tmp_path: Path) -> None:
    with socket.socket() as taken:  # the configured port is busy: Prometheus exits at once
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        settings = Settings.load(home=tmp_path, serving_warm_standby=False, prometheus_port=port)
        Database(settings.db_url).upgrade()
        with TestClient(create_app(settings), base_url="http://127.0.0.1") as client:
            started = client.post("/monitoring/prometheus", json={"action": "start"}).json()
            assert started["ready"] is False  # start does not wait; `kfbox monitoring up` polls for ready
            deadline = time.monotonic() + 30
            while (status := client.get("/monitoring/prometheus").json())["running"]:
                assert not status["ready"], status
                if time.monotonic() > deadline:
                    pytest.fail(f"Prometheus still running on a busy port: {status}")
                time.sleep(0.1)
    assert status["ready"] is False and status["url"] is None
    assert status["exit_code"] not in (None, 0)
    assert "address already in use" in Path(status["log"]).read_text()
