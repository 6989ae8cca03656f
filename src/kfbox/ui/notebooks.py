"""Notebooks: JupyterLab servers started as child processes, bound to loopback with a token.

Their kernels get the platform's addresses, so ``kfp.Client()`` needs no arguments there
(``KF_PIPELINES_ENDPOINT``), nor does a Model Registry client read from
``MODEL_REGISTRY_HOST``/``MODEL_REGISTRY_PORT``; ``KFBOX_URL`` (and ``KFBOX_TOKEN`` when set)
reach the CLI. JupyterLab is the optional extra ``kfbox[notebooks]``.

API (bearer token as for every API): ``GET /kfbox/v1/notebooks``, ``POST /kfbox/v1/notebooks``
``{"name": "lab"}``, ``DELETE /kfbox/v1/notebooks/{name}``; the dashboard page is ``/notebooks``.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import os
import re
import secrets
import socket
import sys
import threading
import time
from typing import Any

from fastapi import APIRouter, Body, Request
from fastapi.responses import Response

from kfbox.errors import Conflict, InvalidInput, NotFound, Unsupported
from kfbox.pipelines.environment import address_environment
from kfbox.server.platform import Platform
from kfbox.server.processes import ChildProcess
from kfbox.ui import csrf
from kfbox.ui.render import Pages

API = "/kfbox/v1/notebooks"
NAME_RE = re.compile(r"^[a-z0-9]([-a-z0-9]{0,38}[a-z0-9])?$")


@dataclasses.dataclass
class Notebook:
    name: str
    port: int
    token: str = dataclasses.field(repr=False)
    child: ChildProcess
    started_at: float

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/lab?token={self.token}"

    def status(self) -> str:
        import httpx  # lazily: ~70 ms of CPU at server start otherwise
        if not self.child.alive:
            return "STOPPED"
        try:
            reply = httpx.get(f"http://127.0.0.1:{self.port}/api/status", timeout=0.5,
                              headers={"Authorization": f"token {self.token}"})
        except httpx.HTTPError:
            return "STARTING"
        return "RUNNING" if reply.status_code == 200 else "STARTING"

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "status": self.status(), "url": self.url, "port": self.port,
                "pid": self.child.pid, "started_at": self.started_at, "log": str(self.child.log_path)}


class NotebookManager:
    def __init__(self, platform: Platform) -> None:
        self.platform = platform
        self.notebooks: dict[str, Notebook] = {}
        self.lock = threading.Lock()

    def environment(self) -> dict[str, str]:
        """What every kernel inherits: the platform's addresses, no secrets but the token if set."""
        settings = self.platform.settings
        env = {k: v for k, v in os.environ.items() if not k.startswith("JUPYTER_TOKEN")}
        env.update(address_environment(settings), KF_PIPELINES_ENDPOINT=f"{settings.url}/pipeline",
                   JUPYTER_RUNTIME_DIR=str(settings.home / "notebooks" / ".runtime"))
        return env

    def start(self, name: str) -> Notebook:
        if not isinstance(name, str) or not NAME_RE.match(name):
            raise InvalidInput(f"Notebook name {name!r} must be lowercase letters, digits and '-' (up to 40).")
        if importlib.util.find_spec("jupyterlab") is None:
            raise Unsupported("JupyterLab is not installed. Install the extra: pip install 'kfbox[notebooks]'")
        with self.lock:
            running = self.notebooks.get(name)
            if running is not None and running.child.alive:
                raise Conflict(f"Notebook {name!r} is already running at {running.url.split('?')[0]}.")
            folder = self.platform.settings.home / "notebooks" / name
            folder.mkdir(parents=True, exist_ok=True)
            port = _free_port()
            token = secrets.token_urlsafe(24)
            env = self.environment() | {"JUPYTER_TOKEN": token}  # not on the command line (ps shows that)
            argv = [sys.executable, "-m", "jupyterlab", "--no-browser", "--ip=127.0.0.1", f"--port={port}",
                    f"--ServerApp.root_dir={folder}", "--ServerApp.port_retries=0",
                    # nothing from the network: no extension catalogue, no news, no update check
                    "--LabApp.extension_manager=readonly", "--LabApp.news_url=None",
                    "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate"]
            if hasattr(os, "geteuid") and os.geteuid() == 0:
                argv.append("--allow-root")  # containers and CI run as root; JupyterLab refuses without it
            child = ChildProcess.spawn(argv, log_path=self.platform.settings.logs_dir / "notebooks" / f"{name}.log",
                                       env=env, cwd=folder)
            notebook = Notebook(name, port, token, child, time.time())
            self.notebooks[name] = notebook
            return notebook

    def get(self, name: str) -> Notebook:
        found = self.notebooks.get(name)
        if found is None:
            raise NotFound(f"No notebook named {name!r}. Start one with: kfbox notebook start {name}")
        return found

    def stop(self, name: str) -> None:
        notebook = self.get(name)
        notebook.child.stop(grace=5)
        with self.lock:
            self.notebooks.pop(name, None)

    def shutdown(self) -> None:
        for name in list(self.notebooks):
            self.notebooks[name].child.stop(grace=3)
        self.notebooks.clear()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def build(platform: Platform, pages: Pages) -> APIRouter:
    manager = NotebookManager(platform)
    platform.services.notebooks = manager
    platform.on_shutdown.append(manager.shutdown)
    router = APIRouter()

    @router.get(API, tags=["notebooks"])
    def list_api() -> dict[str, Any]:
        return {"notebooks": [n.describe() for n in manager.notebooks.values()]}

    @router.post(API, tags=["notebooks"])
    def start_api(body: Any = Body(...)) -> dict[str, Any]:
        name = body.get("name") if isinstance(body, dict) else None
        return manager.start(str(name or "lab")).describe()

    @router.delete(f"{API}/{{name}}", tags=["notebooks"])
    def stop_api(name: str) -> dict[str, Any]:
        manager.stop(name)
        return {}

    @router.get("/notebooks", include_in_schema=False)
    @router.get("/notebooks.json", include_in_schema=False)
    @pages.page("notebooks.html", "Notebooks")
    def notebooks_page(request: Request) -> dict[str, Any]:
        return {"notebooks": [n.describe() for n in manager.notebooks.values()],
                "installed": importlib.util.find_spec("jupyterlab") is not None,
                "environment": {k: v for k, v in manager.environment().items()
                                if k in ("KF_PIPELINES_ENDPOINT", "KFBOX_URL", "MODEL_REGISTRY_HOST",
                                         "MODEL_REGISTRY_PORT")}}

    @router.post("/notebooks/start", include_in_schema=False)
    @router.post("/notebooks/stop", include_in_schema=False)
    @pages.action
    async def start_or_stop(request: Request) -> Response:
        form = await csrf.checked_form(request)
        name = str(form.get("name") or "lab")
        if request.url.path.endswith("/start"):
            manager.start(name)
        else:
            manager.stop(name)
        return pages.redirect("/notebooks")

    return router
