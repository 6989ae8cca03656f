"""A clean stop (SIGTERM, as ``kfbox down`` sends) leaves the home's SQLite database whole in ``kfbox.db``."""

from __future__ import annotations

import shutil
from pathlib import Path

from tests.support import ServerProcess

V1 = "/api/model_registry/v1"


def test_after_a_clean_stop_kfbox_db_alone_holds_every_committed_row(tmp_path: Path) -> None:
    # the WAL is folded into the database file when the server closes it: a copy of kfbox.db alone (a
    # backup, a home moved to another machine) has everything. Before, uvicorn's re-raised SIGTERM skipped
    # the close, and the data stayed in kfbox.db-wal
    home = tmp_path / "home"
    server = ServerProcess.start(home)
    with server.client() as http:
        created = http.post(f"{V1}/registered_models", json={"name": "kept"})
        assert created.status_code == 201, created.text
    server.stop()
    assert not (home / "kfbox.db-wal").exists() or (home / "kfbox.db-wal").stat().st_size == 0

    copy = tmp_path / "copy"
    copy.mkdir()
    shutil.copy(home / "kfbox.db", copy / "kfbox.db")  # the database file alone, no -wal or -shm
    restored = ServerProcess.start(copy)
    try:
        with restored.client() as http:
            found = http.get(f"{V1}/registered_model", params={"name": "kept"})
            assert found.status_code == 200, found.text
            assert found.json()["id"] == created.json()["id"]
    finally:
        restored.stop()
