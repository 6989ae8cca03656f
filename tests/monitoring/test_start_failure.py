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
    assert status["error"] == f"listen tcp 127.0.0.1:{port}: bind: address already in use"  # its log's last error
    assert status["error"] in Path(status["log"]).read_text()


def test_the_reason_is_this_runs_last_error_line_from_its_log(tmp_path: Path) -> None:
    """The log is appended to across starts: an earlier run's error is not this run's reason."""
    from kfbox.monitoring.prometheus import last_error

    log = tmp_path / "prometheus.log"
    log.write_text('ts=1 level=error msg="Error loading config" err="open /x.yml: no such file"\n')
    start = log.stat().st_size
    with log.open("a") as f:
        f.write('ts=2 level=info msg="Starting Prometheus"\n')
    assert last_error(log, start) is None
    with log.open("a") as f:
        f.write('ts=3 level=error msg="Fatal error" cause="the data folder"\n'
                'ts=4 level=error msg="Opening storage failed" err="lock DB directory: resource busy"\n'
                'ts=5 level=info msg="See you next time!"\n')
    assert last_error(log, start) == "lock DB directory: resource busy"
    with log.open("a") as f:
        f.write('ts=6 level=error msg="Error on ingesting samples"\n')
    assert last_error(log, start) == "Error on ingesting samples"  # no err: its msg
    assert last_error(tmp_path / "absent.log") is None
