"""Test support that is real code: launch ``kfbox up`` as a child process, make databases."""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import importlib.util
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests import zygote
from tests.zygote import ForkedServer

POSTGRES_ADMIN = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
MYSQL_ADMIN = "mysql+pymysql://root@127.0.0.1:3306/"
BACKEND_URL = {"postgresql": "postgresql://postgres@127.0.0.1:5432/{name}",
               "mysql": "mysql://root@127.0.0.1:3306/{name}"}


# Warm processes a test area does not exercise are off in its servers: the spare run worker (a kfp
# import, ~1.5 s of CPU and 80 MiB per server) outside the pipeline tests. A test elsewhere that submits a
# run still gets a real worker, started on demand; extra_env overrides. The replica fork server stays on
# everywhere: it starts with a server's first replica and saves the next ones their kserve import.
SPARE_WORKER_AREAS = ("pipelines", "e2e", "examples")
COLD_SERVERS = os.environ.get("KFBOX_TEST_COLD_SERVERS") == "1"
"""Read at import, before the autouse fixture clears KFBOX_* from the environment (see tests/zygote.py)."""


@functools.cache
def loopback() -> httpx.Client:
    """One HTTP client for the helpers that poll servers (health, a run's state): ``httpx.get`` builds a client and
    its TLS context, ~50 ms of CPU, at every call, and these poll several times a second. Each request closes its
    connection, as ``httpx.get``'s did: an idle one kept in the pool would count against a server's per-client
    connection cap (tests/security/test_slowloris.py counts exactly)."""
    return httpx.Client(timeout=30, headers={"Connection": "close"})


def require(module: str, reason: str) -> None:
    """Skip the calling test module when ``module`` is not installed, without importing it:
    ``pytest.importorskip`` would import torch, transformers or peft at collection (~5 s of CPU in
    every pytest process) for tests that only use them in the servers they start."""
    if importlib.util.find_spec(module) is None:
        pytest.skip(reason, allow_module_level=True)


def upstream_registry(port: int, author: str) -> Any:
    """The upstream Model Registry client (``model_registry.ModelRegistry``) for a kfbox on loopback ``port``.
    Imported here, when a test asks for it, not at the top of test modules: ~0.8 s of CPU in every pytest worker
    (each imports every test module)."""
    from model_registry import ModelRegistry

    return ModelRegistry("http://127.0.0.1", port, author=author, is_secure=False)


def lean_env() -> dict[str, str]:
    """KFBOX_* settings that turn off the warm processes the current test's area does not use."""
    current = os.environ.get("PYTEST_CURRENT_TEST", "")
    if not current.startswith("tests/"):
        return {}
    area = current.split("/")[1]
    env = {}
    if area not in SPARE_WORKER_AREAS:
        env["KFBOX_PIPELINES_SPARE_WORKER"] = "0"
    return env


@dataclasses.dataclass
class ServerProcess:
    """A ``python -m kfbox up`` child on an ephemeral port; the address comes from its server.json."""

    home: Path
    process: subprocess.Popen[bytes] | ForkedServer
    url: str
    port: int
    token: str | None = None

    @classmethod
    def start(cls, home: Path, *, db: str | None = None, token: str | None = None, host: str = "127.0.0.1",
              extra_env: dict[str, str] | None = None, timeout: float = 60.0, cold: bool = False) -> ServerProcess:
        """``cold``: a fresh ``python -m kfbox up`` even where servers are forked from the warm interpreter of
        tests/zygote.py (the default; ``KFBOX_TEST_COLD_SERVERS=1`` makes every start cold)."""
        home.mkdir(parents=True, exist_ok=True)
        (home / "server.json").unlink(missing_ok=True)
        argv = [sys.executable, "-m", "kfbox", "up", "--port", "0", "--home", str(home), "--host", host]
        if db:
            argv += ["--db", db]
        env = {k: v for k, v in os.environ.items() if not k.startswith("KFBOX_")}
        env.update(lean_env())
        env.update(extra_env or {})
        if token:
            env["KFBOX_TOKEN"] = token
        process: subprocess.Popen[bytes] | ForkedServer | None = None
        if not (cold or COLD_SERVERS):
            process = zygote.fork(argv[3:], env, home / "test-server.log")
        if process is None:
            with open(home / "test-server.log", "ab") as log:
                process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RuntimeError(f"kfbox up exited {process.returncode}:\n{(home / 'test-server.log').read_text()}")
            try:
                record = json.loads((home / "server.json").read_text())
                if record["pid"] == process.pid:
                    server = cls(home=home, process=process, url=record["url"], port=record["port"], token=token)
                    if server.healthy():
                        return server
            except (OSError, ValueError, KeyError):
                pass
            time.sleep(0.05)
        process.kill()
        raise RuntimeError(f"kfbox up not ready in {timeout}s:\n{(home / 'test-server.log').read_text()}")

    def healthy(self) -> bool:
        try:
            return loopback().get(f"{self.url}/healthz", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    def client(self, **kwargs: object) -> httpx.Client:
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=30, **kwargs)  # type: ignore[arg-type]

    def stop(self, timeout: float = 20.0) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        _kill_group(self.process.pid)
        return self.process.returncode

    def kill(self) -> None:
        """SIGKILL, as a crash would: no shutdown hooks run."""
        self.process.kill()
        self.process.wait()
        _kill_group(self.process.pid)

    def log(self) -> str:
        return (self.home / "test-server.log").read_text(errors="replace")


def _kill_group(pgid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """``kfbox *args`` run in this process through the console script's own entry (``kfbox.cli.main.main``:
    usage errors, error messages, exit codes), stdout and stderr captured apart, stdin empty, with ``env``
    set for the call: what ``subprocess.run([python, "-m", "kfbox", ...])`` returns, without a fresh interpreter's
    imports (0.5-1 s of CPU a call). The entry point as a process is tested in tests/cli and
    tests/test_package.py; a test where the process itself matters (signals, a crash) runs it for real."""
    from kfbox.cli.main import main

    out, err = io.StringIO(), io.StringIO()
    saved_env = {name: os.environ.get(name) for name in env or {}}
    saved_argv, sys.argv = sys.argv, ["kfbox", *args]
    saved_stdin, sys.stdin = sys.stdin, io.StringIO()  # as stdin=DEVNULL: no terminal, nothing to read
    os.environ.update(env or {})
    code: int | str | None = 0
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            main()
    except SystemExit as exc:
        code = exc.code
    finally:
        sys.argv, sys.stdin = saved_argv, saved_stdin
        for name, value in saved_env.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
    returncode = code if isinstance(code, int) else (0 if code is None else 1)
    return subprocess.CompletedProcess(["kfbox", *args], returncode, out.getvalue(), err.getvalue())


def create_database(backend: str, name: str) -> str:
    from sqlalchemy import create_engine, text
    from sqlalchemy.exc import OperationalError

    admin = POSTGRES_ADMIN if backend == "postgresql" else MYSQL_ADMIN
    engine = create_engine(admin, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            suffix = " CHARACTER SET utf8mb4 COLLATE utf8mb4_bin" if backend == "mysql" else ""
            conn.execute(text(f"CREATE DATABASE {name}{suffix}"))
    except OperationalError as exc:
        pytest.skip(f"{backend} server is not reachable at {admin}: {exc.orig}")
    finally:
        engine.dispose()
    return BACKEND_URL[backend].format(name=name)


def drop_database(backend: str, name: str) -> None:
    from sqlalchemy import create_engine, text

    admin = POSTGRES_ADMIN if backend == "postgresql" else MYSQL_ADMIN
    engine = create_engine(admin, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        force = " WITH (FORCE)" if backend == "postgresql" else ""
        conn.execute(text(f"DROP DATABASE IF EXISTS {name}{force}"))
    engine.dispose()


def axe_script() -> Path:
    """axe-core from npm, installed at test time into a scratch folder (never into the repo) and kept
    there for later runs; the test is skipped, saying why, where npm or its registry is missing."""
    cache = Path(os.environ.get("KFBOX_AXE_DIR") or Path.home() / ".cache" / "kfbox-tests" / "axe")
    script = cache / "node_modules" / "axe-core" / "axe.min.js"
    if not script.exists():
        npm = shutil.which("npm")
        if npm is None:
            pytest.skip("npm is not installed, so axe-core cannot be fetched")
        cache.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(subprocess.SubprocessError):
            subprocess.run([npm, "install", "--prefix", str(cache), "axe-core", "--no-audit", "--no-fund"],
                           capture_output=True, timeout=120, check=True)
        if not script.exists():
            pytest.skip("npm could not fetch axe-core (no registry access)")
    return script


@contextlib.contextmanager
def moto_s3(*buckets: str) -> Iterator[tuple[str, Any]]:
    """A real S3-compatible server on loopback (moto's) holding ``buckets``: (endpoint, boto3 client
    with the test keys). Stopped on exit."""
    import boto3
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        endpoint = f"http://{host}:{port}"
        client = boto3.client("s3", endpoint_url=endpoint, aws_access_key_id="test", aws_secret_access_key="test",
                              region_name="us-east-1")
        for bucket in buckets:
            client.create_bucket(Bucket=bucket)
        yield endpoint, client
    finally:
        server.stop()


def axe_in_context(context: Any) -> None:
    """Load axe-core into the top frame of every page the Playwright ``context`` opens, as the context's init
    script: sent to the browser once, not through the driver with every page (0.5 MB, ~0.2 s of CPU a page, as
    a script tag). An init script is not the page's script, so the page's CSP stays on and does not refuse it."""
    context.add_init_script(script=f"if (window === window.top) {{\n{axe_script().read_text()}\n}}")


def axe_serious(tab: Any) -> list[str]:
    """axe-core's serious and critical findings on the page ``tab`` shows (a context given :func:`axe_in_context`)."""
    result = tab.evaluate("async () => await axe.run(document, {resultTypes: ['violations']})")
    return [f"{v['id']}: {v['help']} ({len(v['nodes'])}x)" for v in result["violations"]
            if v["impact"] in ("serious", "critical")]


def axe_findings(browser: Any, urls: dict[str, str]) -> dict[str, list[str]]:
    """The serious and critical axe-core findings of each named page (none: an empty dict)."""
    findings: dict[str, list[str]] = {}
    context = browser.new_context()
    axe_in_context(context)
    tab = context.new_page()
    try:
        for name, url in urls.items():
            tab.goto(url)
            if serious := axe_serious(tab):
                findings[name] = serious
    finally:
        context.close()
    return findings
