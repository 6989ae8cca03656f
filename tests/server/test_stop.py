"""A clean stop (SIGTERM, as ``kfbox down`` sends) leaves the home's SQLite database whole in ``kfbox.db``; a stop
on SIGINT exits 130, however the server was started."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.support import ServerProcess, lean_env, loopback

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


def _ignore_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def test_a_server_started_with_sigint_ignored_still_exits_130_when_it_stops_on_it(tmp_path: Path) -> None:
    # a background job of a script (`kfbox up &` without job control) starts with SIGINT ignored, as does all a
    # test run so started launches. The server stops on SIGINT anyway (uvicorn's handler), but its stop re-raised
    # the signal under the inherited ignore: kfbox up exited 0, as if it had ended on its own. A real process:
    # the disposition is what exec passes on
    home = tmp_path / "home"
    env = {k: v for k, v in os.environ.items() if not k.startswith("KFBOX_")} | lean_env()
    argv = [sys.executable, "-m", "kfbox", "up", "--port", "0", "--home", str(home)]
    with open(tmp_path / "output", "wb") as output:
        server = subprocess.Popen(argv, stdout=output, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
                                  start_new_session=True, preexec_fn=_ignore_sigint)
    try:
        deadline = time.monotonic() + 30
        while not (home / "server.json").exists():
            assert server.poll() is None, (tmp_path / "output").read_text()
            assert time.monotonic() < deadline, (tmp_path / "output").read_text()
            time.sleep(0.05)
        url = json.loads((home / "server.json").read_text())["url"]
        assert loopback().get(f"{url}/healthz").status_code == 200
        server.send_signal(signal.SIGINT)
        code = server.wait(20)
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()
    assert code == 130, (tmp_path / "output").read_text()
    assert not (home / "server.json").exists()  # it did stop cleanly
