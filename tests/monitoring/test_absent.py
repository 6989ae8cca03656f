"""Without the prometheus binary: a clear message with the install command, and the rest of kfbox unaffected."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from kfbox.config import Settings
from kfbox.db import Database
from kfbox.server.app import create_app


def test_start_without_prometheus_installed_says_how_to_install(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # no prometheus on it
    (tmp_path / "home").mkdir()
    settings = Settings.load(home=tmp_path / "home", serving_warm_standby=False)  # no standby replica to start
    Database(settings.db_url).upgrade()
    with TestClient(create_app(settings), base_url="http://127.0.0.1") as client:
        status = client.get("/monitoring/prometheus").json()
        assert status["running"] is False and status["installed"] is False
        reply = client.post("/monitoring/prometheus", json={"action": "start"})
        assert reply.status_code == 503 and "apt-get install prometheus" in reply.json()["message"]
        assert client.post("/monitoring/prometheus", json={"action": "restart"}).status_code == 400
        assert client.get("/monitoring/sd", params={"job": "other"}).status_code == 400
        assert client.get("/monitoring/sd").json()[0]["labels"] == {"component": "server"}
        assert client.get("/healthz").status_code == 200


def test_kfbox_up_prometheus_without_it_says_how_to_install_in_one_line(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "kfbox", "up", "--prometheus", "--port", "0", "--home",
                           str(tmp_path / "home")], env={**os.environ, "PATH": str(tmp_path)},
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    assert "sudo apt-get install prometheus" in done.stderr and "Traceback" not in done.stderr, done.stderr
    assert not (tmp_path / "home" / "server.json").exists()  # refused before a server started


def test_a_retention_prometheus_would_refuse_is_named(tmp_path: Path) -> None:
    settings = Settings.load(home=tmp_path, serving_warm_standby=False, prometheus_retention="forever")
    Database(settings.db_url).upgrade()
    with TestClient(create_app(settings), base_url="http://127.0.0.1") as client:
        reply = client.post("/monitoring/prometheus", json={"action": "start"})
        assert reply.status_code == 400, reply.text
        assert "'forever'" in reply.json()["message"] and "KFBOX_PROMETHEUS_RETENTION" in reply.json()["message"]
        assert client.get("/monitoring/prometheus").json()["running"] is False
