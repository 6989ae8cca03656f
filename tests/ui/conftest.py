"""One seeded ``kfbox up`` that the dashboard's page modules share: test_pages (over HTTP) and
test_browser_audit (in Chromium) read the same kinds of runs, pipeline and model, and each server
costs a start, a run worker (a kfp import, ~1.5 s of CPU) and its seeding runs.

``seeded_dashboard`` is package-scoped; tests/conftest.py's scheduler sends the modules that name it
to one xdist worker. test_pages also writes (archives and restores a run, retries it, registers a
model, uploads pipelines, starts a run from the form): what it adds, the audit only finds more of on
the pages it walks. Modules that need a server of their own (a token, a deployment, JupyterLab) keep
tests/conftest.py's ``server``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.support import ServerProcess
from tests.ui.seed import SeededDashboard, seed_dashboard


@pytest.fixture(scope="package")
def seeded_dashboard(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SeededDashboard]:
    server = ServerProcess.start(tmp_path_factory.mktemp("home"))
    try:
        yield SeededDashboard(server, seed_dashboard(server, tmp_path_factory.mktemp("specs")))
    finally:
        server.stop()


@pytest.fixture(scope="module")
def seeded(seeded_dashboard: SeededDashboard) -> dict[str, Any]:
    """What ``seeded_dashboard`` created (runs, pipeline, model), for the modules that read its pages."""
    return seeded_dashboard.seeded
