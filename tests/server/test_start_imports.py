"""What a server start imports: each API's routes (and the libraries behind them) only on the first
request under its paths, so ``kfbox up`` is ready sooner (benchmarks/startup.py has the figures)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

# the app as `kfbox up` builds it, then one request at a time; the modules loaded after each
SCRIPT = """
import json, sys
from fastapi.testclient import TestClient
from kfbox.config import Settings
from kfbox.db import Database
from kfbox.server.app import create_app
from kfbox.server.platform import Platform

settings = Settings.load(home=sys.argv[1], port=0)
db = Database(settings.db_url)
db.upgrade()
client = TestClient(create_app(settings, Platform(settings=settings, db=db)), base_url="http://127.0.0.1")
loaded = {"start": sorted(sys.modules)}
for path in sys.argv[2:]:
    response = client.get(path)
    loaded[path] = [response.status_code, sorted(sys.modules)]
print(json.dumps(loaded))
"""

LAZY = {"kfbox.pipelines.api", "kfbox.serving.router", "kfbox.serving.discovery", "kfbox.chart_svg",
        "kfbox.ui.render", "yaml", "rich", "jinja2", "httpx", "alembic", "kfp", "kserve", "sklearn"}


def test_a_start_imports_no_api_routes_until_a_request_under_their_paths(tmp_path: Path) -> None:
    paths = ["/healthz", "/apis/serving.kserve.io/v1beta1/inferenceservices", "/apis/v2beta1/healthz"]
    proc = subprocess.run([sys.executable, "-c", SCRIPT, str(tmp_path), *paths], capture_output=True, text=True,
                          timeout=120, check=True)
    loaded = json.loads(proc.stdout.splitlines()[-1])
    assert {m.split(".")[0] if m.split(".")[0] != "kfbox" else m for m in loaded["start"]} & LAZY == set()
    status, modules = loaded["/healthz"]
    assert status == 200 and "kfbox.pipelines.api" not in modules and "kfbox.serving.router" not in modules
    status, modules = loaded["/apis/serving.kserve.io/v1beta1/inferenceservices"]
    assert status == 200 and "kfbox.serving.router" in modules
    assert "kfbox.pipelines.api" not in modules, "a serving request passed the KFP block without building it"
    status, modules = loaded["/apis/v2beta1/healthz"]
    assert status == 200 and "kfbox.pipelines.api" in modules
