"""Load tests started from a deployment page: bounded, against that deployment only, report kept with it.

The run is ``kfbox loadtest NAME`` as a child process (its own process group, stopped with the
server), so the generator never shares the gateway's interpreter. Bounds: duration up to
10 minutes, concurrency up to 500, one run per deployment at a time; the target is the
deployment's own gateway path on this server (loopback), never a URL from the form. The
``-o json`` report and the ``--plot`` SVG land in ``<home>/serving/loadtests/<ns>/<name>/``.
The live chart on the page shows the run as it happens.
"""

from __future__ import annotations

import json
import os
import re
import sys
import time
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, Response

from kfbox.errors import Conflict, InvalidInput, NotFound
from kfbox.server.platform import Platform
from kfbox.server.processes import ChildProcess
from kfbox.ui import csrf
from kfbox.ui.render import Pages

MAX_SECONDS = 600
MAX_CONCURRENCY = 500
DEFAULT_BODY = '{"instances": [[6.8, 2.8, 4.8, 1.4]]}'
REPORT_NAME = re.compile(r"^\d{8}-\d{6}\.(json|svg)$")


class LoadTests:
    def __init__(self, platform: Platform) -> None:
        self.platform = platform
        self.running: dict[tuple[str, str], tuple[ChildProcess, Path]] = {}

    def folder(self, namespace: str, name: str) -> Path:
        return self.platform.settings.serving_dir / "loadtests" / namespace / name

    def start(self, namespace: str, name: str, seconds: int, concurrency: int, body: str) -> Path:
        key = (namespace, name)
        current = self.running.get(key)
        if current is not None and current[0].alive:
            raise Conflict(f"A load test of {namespace}/{name} is already running; wait for it to end.")
        folder = self.folder(namespace, name)
        folder.mkdir(parents=True, exist_ok=True)
        stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
        report = folder / f"{stamp}.json"
        argv = [sys.executable, "-m", "kfbox", "loadtest", name, "--namespace", namespace, "-z", f"{seconds}s",
                "-c", str(concurrency), "-d", body, "--url", self.platform.url, "-o", "json",
                "--plot", str(folder / f"{stamp}.svg")]
        env = {k: v for k, v in os.environ.items() if not k.startswith("KFBOX_")}
        if self.platform.settings.token:
            env["KFBOX_TOKEN"] = self.platform.settings.token  # not on the command line
        child = _spawn_to(argv, report, env)
        self.running[key] = (child, report)
        return report

    def reports(self, namespace: str, name: str) -> list[dict[str, Any]]:
        running = self.running.get((namespace, name))
        out = []
        for path in sorted(self.folder(namespace, name).glob("*.json"), reverse=True):
            item: dict[str, Any] = {"file": path.name, "running": bool(running and running[1] == path
                                                                       and running[0].alive)}
            if not item["running"]:
                try:
                    item["report"] = json.loads(path.read_text() or "null")
                except ValueError:
                    item["report"] = None  # the run was killed mid-write
            plot = path.with_suffix(".svg")
            item["plot"] = plot.name if plot.exists() else None
            out.append(item)
        return out

    def stop_all(self) -> None:
        for child, _ in self.running.values():
            if child.alive:
                child.stop(grace=2)


def _spawn_to(argv: list[str], stdout_path: Path, env: dict[str, str]) -> ChildProcess:
    import subprocess

    with open(stdout_path, "wb") as out:
        popen = subprocess.Popen(argv, stdout=out, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL, env=env,
                                 start_new_session=True)
    return ChildProcess(popen=popen, log_path=stdout_path)


def _bounded(form: dict[str, Any], field: str, default: int, low: int, high: int, what: str) -> int:
    raw = str(form.get(field) or default).strip()
    if not raw.isdigit() or not low <= int(raw) <= high:
        raise InvalidInput(f"{what} must be a whole number from {low} to {high}; got {raw!r}.")
    return int(raw)


def build(platform: Platform, pages: Pages) -> APIRouter:
    router = APIRouter(include_in_schema=False)
    tests = LoadTests(platform)
    platform.on_shutdown.append(tests.stop_all)

    def exists(namespace: str, name: str) -> None:
        serving = platform.services.serving
        if serving is None or (namespace, name) not in serving.deployments:
            raise NotFound(f"InferenceService {namespace}/{name} does not exist. List them with: kfbox serve list")

    @router.post("/deployments/{namespace}/{name}/loadtest")
    @pages.action
    async def start(request: Request, namespace: str, name: str) -> Response:
        form = await csrf.checked_form(request)
        exists(namespace, name)
        seconds = _bounded(form, "duration", 60, 1, MAX_SECONDS, "The duration in seconds")
        concurrency = _bounded(form, "concurrency", 10, 1, MAX_CONCURRENCY, "The concurrency")
        body = str(form.get("data") or DEFAULT_BODY)
        try:
            json.loads(body)
        except ValueError as exc:
            raise InvalidInput(f"The request body is not JSON ({exc}); e.g. {DEFAULT_BODY}") from exc
        tests.start(namespace, name, seconds, concurrency, body)
        return pages.redirect(f"/deployments/{namespace}/{name}#live-h")

    @router.get("/deployments/{namespace}/{name}/loadtests.json")
    def reports(namespace: str, name: str) -> dict[str, Any]:
        exists(namespace, name)
        return {"loadtests": tests.reports(namespace, name), "max_seconds": MAX_SECONDS,
                "max_concurrency": MAX_CONCURRENCY}

    @router.get("/deployments/{namespace}/{name}/loadtests/{file}")
    def report_file(namespace: str, name: str, file: str) -> Response:
        path = tests.folder(namespace, name) / file
        if not REPORT_NAME.match(file) or not path.is_file():
            raise NotFound(f"No load test report {file!r} for {namespace}/{name}. "
                           f"List them at /deployments/{namespace}/{name}/loadtests.json")
        return FileResponse(path, media_type="image/svg+xml" if file.endswith(".svg") else "application/json",
                            headers={"Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'",
                                     "X-Content-Type-Options": "nosniff"})

    return router
