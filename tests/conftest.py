"""Fixtures shared by every test: a clean environment, real servers, real databases."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import ServerProcess, create_database, drop_database


@pytest.fixture(autouse=True)
def _clean_kfbox_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("KFBOX_"):
            monkeypatch.delenv(name)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """A real ``kfbox up`` on an ephemeral loopback port with its own home, for one test module."""
    proc = ServerProcess.start(tmp_path_factory.mktemp("home"))
    yield proc
    proc.stop()


@pytest.fixture(params=["sqlite", "postgresql", "mysql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh, empty database of each backend; skips (with the reason) where its server is absent."""
    backend = request.param
    if backend == "sqlite":
        yield f"sqlite:///{tmp_path / 'kfbox.db'}"
        return
    name = f"kfbox_test_{uuid.uuid4().hex[:12]}"
    url = create_database(backend, name)
    yield url
    drop_database(backend, name)
