"""Without the prometheus binary: a clear message with the install command, and the rest of kfbox unaffected."""

from __future__ import annotations

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
