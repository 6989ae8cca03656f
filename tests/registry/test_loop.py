"""Registry writes run on the event loop only when they cannot wait: a held SQLite lock stalls nothing else."""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path

import httpx

from tests.support import ServerProcess

V1 = "/api/model_registry/v1"


def test_a_write_waiting_for_the_lock_does_not_stall_other_requests(tmp_path: Path) -> None:
    server = ServerProcess.start(tmp_path / "home")
    try:
        with server.client() as http:
            model = http.post(f"{V1}/registered_models", json={"name": "first"}).json()
        holder = sqlite3.connect(tmp_path / "home" / "kfbox.db", isolation_level=None, timeout=60)
        holder.execute("BEGIN IMMEDIATE")  # another writer (a pipeline, another process) holds the lock
        replies: list[httpx.Response] = []

        def register() -> None:
            with httpx.Client(base_url=server.url, timeout=120) as http:
                replies.append(http.post(f"{V1}/registered_models", json={"name": "waiting"}))

        writer = threading.Thread(target=register)
        writer.start()
        try:
            time.sleep(0.5)  # ordering only: the write is sent first (if not, this test proves less, never fails)
            with httpx.Client(base_url=server.url, timeout=30) as http:  # a stalled event loop would not answer these
                assert http.get(f"{V1}/registered_models/{model['id']}").json()["name"] == "first"
                assert http.get(f"{V1}/registered_model", params={"name": "first"}).status_code == 200
                assert http.get("/healthz").status_code == 200
            assert writer.is_alive()  # still waiting for the lock, in a worker thread
        finally:
            holder.execute("ROLLBACK")
            holder.close()
        writer.join(120)
        assert [r.status_code for r in replies] == [201]
        with server.client() as http:
            found = http.get(f"{V1}/registered_model", params={"name": "waiting"})
            assert found.status_code == 200 and found.json()["id"] == replies[0].json()["id"]
            names = [m["name"] for m in http.get(f"{V1}/registered_models").json()["items"]]
            assert sorted(names) == ["first", "waiting"]  # once, not twice: the declined try left nothing
    finally:
        server.stop()
