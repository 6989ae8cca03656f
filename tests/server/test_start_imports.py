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
from kfbox.config import Settings
from kfbox.db import Database
from kfbox.server.app import create_app
from kfbox.server.platform import Platform

settings = Settings.load(home=sys.argv[1], port=0)
db = Database(settings.db_url)
db.upgrade()
app = create_app(settings, Platform(settings=settings, db=db))
loaded = {"start": sorted(sys.modules)}
from starlette.testclient import TestClient  # after the snapshot: it is no part of a start

client = TestClient(app, base_url="http://127.0.0.1")
for path in sys.argv[2:]:
    response = client.get(path)
    loaded[path] = [response.status_code, sorted(sys.modules)]
print(json.dumps(loaded))
"""

LAZY = {"kfbox.pipelines.api", "kfbox.serving.router", "kfbox.serving.discovery", "kfbox.chart_svg",
        "kfbox.ui.render", "yaml", "rich", "jinja2", "httpx", "alembic", "kfp", "kserve", "sklearn",
        # the root app is Starlette (kfbox.server.application): FastAPI and pydantic come with the first API route
        "fastapi", "pydantic", "pydantic_core"}


def test_a_start_imports_no_api_routes_until_a_request_under_their_paths(tmp_path: Path) -> None:
    paths = ["/healthz", "/apis/serving.kserve.io/v1beta1/inferenceservices", "/apis/v2beta1/healthz"]
    proc = subprocess.run([sys.executable, "-c", SCRIPT, str(tmp_path), *paths], capture_output=True, text=True,
                          timeout=120, check=True)
    loaded = json.loads(proc.stdout.splitlines()[-1])
    assert {m.split(".")[0] if m.split(".")[0] != "kfbox" else m for m in loaded["start"]} & LAZY == set()
    # SQLite's dialect only: the others load their drivers' modules (the registry's MySQL collation did)
    other_dialects = ("sqlalchemy.dialects.mysql", "sqlalchemy.dialects.postgresql")
    assert not [m for m in loaded["start"] if m.startswith(other_dialects)]
    # FastAPI imports pydantic.v1 when the first route with a declared body or reply is built (~25 modules)
    assert "pydantic.v1" not in loaded["start"], "a route with a declared schema was built at start-up"
    status, modules = loaded["/healthz"]
    assert status == 200 and "kfbox.pipelines.api" not in modules and "kfbox.serving.router" not in modules
    assert "fastapi" not in modules, "answering /healthz imported FastAPI"
    status, modules = loaded["/apis/serving.kserve.io/v1beta1/inferenceservices"]
    assert status == 200 and "kfbox.serving.router" in modules
    assert "kfbox.pipelines.api" not in modules, "a serving request passed the KFP block without building it"
    status, modules = loaded["/apis/v2beta1/healthz"]
    assert status == 200 and "kfbox.pipelines.api" in modules
