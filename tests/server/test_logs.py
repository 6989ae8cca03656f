"""The server logs through stdlib logging at one level, KFBOX_LOG_LEVEL, for kfbox's loggers and uvicorn's."""

from __future__ import annotations

from pathlib import Path

import pytest

from kfbox.config import Settings
from kfbox.errors import InvalidInput
from tests.support import ServerProcess


def test_an_unknown_log_level_is_refused_naming_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KFBOX_LOG_LEVEL", "loud")
    with pytest.raises(InvalidInput, match=r"'loud' is not one of debug, info, warning.*KFBOX_LOG_LEVEL"):
        Settings.load()


def test_info_level_logs_kfbox_and_uvicorn_lines_and_warning_stays_quiet(tmp_path: Path) -> None:
    logs = {}
    for level in ("info", "warning"):
        home = tmp_path / level
        server = ServerProcess.start(home, extra_env={"KFBOX_LOG_LEVEL": level, "KFBOX_SERVING_GRPC_PORT": "0"})
        server.stop()
        logs[level] = (home / "test-server.log").read_text()
    assert " INFO kfbox.serving.grpc_gateway: gRPC gateway (KServe V2 gRPC) on 127.0.0.1:" in logs["info"]
    assert "Application startup complete" in logs["info"]  # uvicorn's own logger, same level
    assert "gRPC gateway" not in logs["warning"] and "Application startup complete" not in logs["warning"]
