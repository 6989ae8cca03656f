"""``kill -9`` of the server in the middle of a registration storm loses nothing it acknowledged."""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path

import httpx

from tests.support import ServerProcess

V1 = "/api/model_registry/v1"


def test_kill_9_during_registration_storm(tmp_path: Path) -> None:
    home = tmp_path / "home"
    proc = ServerProcess.start(home)
    with proc.client() as http:
        model_id = http.post(f"{V1}/registered_models", json={"name": "crashy"}).json()["id"]
    acknowledged: list[str] = []
    lock = threading.Lock()

    def storm(worker: int) -> None:
        with httpx.Client(base_url=proc.url, timeout=10) as http:
            for i in range(10_000):
                name = f"w{worker}-{i}"
                try:
                    reply = http.post(f"{V1}/model_versions", json={"name": name, "registeredModelId": model_id})
                except httpx.HTTPError:
                    return  # the server died under us: this one was never acknowledged
                if reply.status_code == 201:
                    with lock:
                        acknowledged.append(name)

    threads = [threading.Thread(target=storm, args=(w,)) for w in range(4)]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + 60
    while len(acknowledged) < 80 and time.monotonic() < deadline:
        time.sleep(0.02)
    proc.kill()
    for thread in threads:
        thread.join(30)
    assert len(acknowledged) >= 80

    with sqlite3.connect(home / "kfbox.db") as conn:
        assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        assert conn.execute("PRAGMA foreign_key_check").fetchall() == []

    again = ServerProcess.start(home)
    try:
        with again.client() as http:
            stored: list[str] = []
            token = ""
            while True:
                page = http.get(f"{V1}/registered_models/{model_id}/versions",
                                params={"pageSize": "500", "nextPageToken": token}).json()
                stored += [item["name"] for item in page["items"]]
                token = page["nextPageToken"]
                if not token:
                    break
            assert set(acknowledged) <= set(stored)
            assert len(stored) == len(set(stored))
            after = http.post(f"{V1}/model_versions", json={"name": "after-restart", "registeredModelId": model_id})
            assert after.status_code == 201
    finally:
        again.stop()
