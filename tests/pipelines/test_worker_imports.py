"""A run worker imports only what running a pipeline needs: no SQLAlchemy (the server's store; ~0.5 s of CPU
at every worker start before it was kept out), no kfp.client. Checked in a fresh interpreter."""

from __future__ import annotations

import subprocess
import sys


def test_the_engine_imports_neither_the_database_layer_nor_kfps_client() -> None:
    code = ("import sys, kfbox.pipelines.worker, kfbox.pipelines.orchestrator.dag; "
            "print(sorted(m for m in ('sqlalchemy', 'kfp.client', 'alembic') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert done.stdout.strip() == "[]", done.stdout
