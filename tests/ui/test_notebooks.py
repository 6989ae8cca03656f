"""``kfbox notebook``: JupyterLab started by the server on loopback with a token, whose kernel's
``kfp.Client()`` (no arguments) lists this server's runs. Real JupyterLab, real kernel, driven over
Jupyter's own REST and WebSocket protocol."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
import uuid

import httpx
import pytest

from tests.support import ServerProcess, require
from tests.ui.seed import wide_spec

require("jupyterlab", "JupyterLab is the optional extra kfbox[notebooks]")  # without importing it
pytestmark = pytest.mark.slow  # JupyterLab itself takes 10-30 s to start
CODE = ("import kfp, warnings\nwarnings.simplefilter('ignore')\n"
        "print('RUNS', kfp.Client().list_runs(page_size=100).total_size)\n"
        "from kfbox.client import RegistryClient\n"
        "print('MODELS', [m.name for m in RegistryClient.from_env().get_registered_models()])")


def execute(port: int, token: str, code: str, timeout: float = 60) -> str:
    """Run ``code`` in a new kernel of the notebook server; return what it printed."""
    from tornado.httpclient import HTTPRequest
    from tornado.websocket import websocket_connect

    auth = {"Authorization": f"token {token}"}
    kernel = httpx.post(f"http://127.0.0.1:{port}/api/kernels", headers=auth, json={}, timeout=30).json()["id"]

    async def talk() -> str:
        request = HTTPRequest(f"ws://127.0.0.1:{port}/api/kernels/{kernel}/channels", headers=auth)
        socket = await websocket_connect(request)
        msg_id = uuid.uuid4().hex
        await socket.write_message(json.dumps({
            "header": {"msg_id": msg_id, "username": "test", "session": uuid.uuid4().hex, "msg_type": "execute_request",
                       "version": "5.3"}, "parent_header": {}, "metadata": {}, "channel": "shell",
            "content": {"code": code, "silent": False, "store_history": False, "user_expressions": {},
                        "allow_stdin": False}}))
        printed = []
        while True:
            raw = await asyncio.wait_for(socket.read_message(), timeout)
            assert raw is not None, "the kernel's socket closed"
            message = json.loads(raw)
            if message.get("parent_header", {}).get("msg_id") != msg_id:
                continue
            kind = message["msg_type"]
            if kind == "stream":
                printed.append(message["content"]["text"])
            elif kind == "error":
                printed.append("\n".join(message["content"]["traceback"]))
            elif kind == "status" and message["content"]["execution_state"] == "idle":
                socket.close()
                return "".join(printed)

    return asyncio.run(talk())


def test_notebook_kernel_lists_runs_without_arguments(server: ServerProcess) -> None:
    """The Notebooks page's Start button (its form POST), then a kernel of that JupyterLab runs
    ``kfp.Client().list_runs()`` with no arguments and kfbox's registry client from the kernel's
    environment (``MODEL_REGISTRY_HOST``/``PORT``, as a pipeline task reads them); the page and
    ``kfbox notebook list`` list it; ``kfbox notebook stop`` ends it."""
    cli = [sys.executable, "-m", "kfbox", "notebook"]
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("KFBOX_")}, "KFBOX_URL": server.url}
    with server.client() as http:
        made = http.post("/apis/v2beta1/runs", json={"display_name": "seen from jupyter",
                                                     "pipeline_spec": wide_spec(2)})
        assert made.status_code == 200, made.text
        model = http.post("/api/model_registry/v1alpha3/registered_models", json={"name": "seen-from-jupyter"})
        assert model.status_code == 201, model.text
        try:
            # the page's Start button: a form POST carrying the page's CSRF token, as the browser sends it
            http.get("/notebooks", headers={"Accept": "text/html"})
            pressed = http.post("/notebooks/start", data={"name": "lab", "csrf_token": http.cookies["kfbox_csrf"]},
                                timeout=150)
            assert pressed.status_code == 303 and pressed.headers["location"] == "/notebooks", pressed.text
            deadline = time.monotonic() + 150  # the page comes back at once; JupyterLab takes its time
            while True:
                [body] = http.get("/kfbox/v1/notebooks").json()["notebooks"]
                if body["status"] != "STARTING" or time.monotonic() > deadline:
                    break
                time.sleep(0.5)
            assert body["status"] == "RUNNING", (server.home / "logs" / "notebooks" / "lab.log").read_text()
            assert body["url"].startswith("http://127.0.0.1:") and "token=" in body["url"]
            token = body["url"].split("token=", 1)[1]
            assert httpx.get(f"http://127.0.0.1:{body['port']}/api/kernels").status_code == 403  # token needed
            assert "token=" not in " ".join(_command_lines(body["pid"]))  # nor is it on a command line
            printed = execute(body["port"], token, CODE)
            total = int(printed.split("RUNS", 1)[1].split()[0])
            assert total == http.get("/apis/v2beta1/runs").json()["total_size"] >= 1
            assert "'seen-from-jupyter'" in printed.split("MODELS", 1)[1], printed  # MODEL_REGISTRY_HOST/PORT
            page = http.get("/notebooks", headers={"Accept": "text/html"}).text
            assert "RUNNING" in page and "JupyterLab" in page
            listed = subprocess.run([*cli, "list"], capture_output=True, text=True, timeout=60, env=env)
            assert "lab" in listed.stdout and "RUNNING" in listed.stdout
        finally:
            stopped = subprocess.run([*cli, "stop", "lab"], capture_output=True, text=True, timeout=60, env=env)
        assert stopped.returncode == 0 and "Stopped lab" in stopped.stdout
        assert http.get("/kfbox/v1/notebooks").json()["notebooks"] == []


def _command_lines(pid: int) -> list[str]:
    out = subprocess.run(["ps", "-o", "args=", "-g", str(pid)], capture_output=True, text=True, check=False)
    return out.stdout.splitlines()
