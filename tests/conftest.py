"""Fixtures shared by every test: a clean environment, real servers, real databases."""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import inspect
import os
import re
import sys
import types
import uuid
from collections.abc import Generator, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from tests import zygote
from tests.support import ServerProcess, create_database, drop_database


class _KserveWithoutPytestArguments(importlib.abc.MetaPathFinder):
    """kserve.model_server (which ``import kserve`` runs) parses sys.argv when imported (parse_known_args,
    abbreviations allowed): pytest's own ``--co`` or ``-m`` read as kserve flags end the run with SystemExit.
    Wherever it is first imported in this process (a test, a fixture, kfbox's serving modules), it runs with
    pytest's arguments out of sight. A finder, not an import at session start: test modules import kserve
    where they use it, so a pytest worker that runs no kserve test never spends its ~1.5 s of CPU."""

    def find_spec(self, name: str, path: Sequence[str] | None, target: types.ModuleType | None = None,
                  ) -> importlib.machinery.ModuleSpec | None:
        if name != "kserve.model_server":
            return None
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        if spec is not None and spec.loader is not None:
            spec.loader = _WithoutArguments(spec.loader)
        return spec


class _WithoutArguments(importlib.abc.Loader):
    """Runs a module with sys.argv cut to the program name; otherwise its own loader."""

    def __init__(self, loader: importlib.abc.Loader) -> None:
        self.loader = loader

    def __getattr__(self, name: str) -> Any:  # get_source, get_code...: inspect and tracebacks use them
        return getattr(self.loader, name)

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> types.ModuleType | None:
        return self.loader.create_module(spec)

    def exec_module(self, module: types.ModuleType) -> None:
        argv = sys.argv
        sys.argv = argv[:1]
        try:
            self.loader.exec_module(module)
        finally:
            sys.argv = argv


sys.meta_path.insert(0, _KserveWithoutPytestArguments())


HEAVY_AT_COLLECTION = frozenset({"kserve", "sklearn", "scipy", "pandas", "torch", "transformers", "playwright",
                                 "model_registry", "jupyter_server", "grpc", "matplotlib", "mlflow", "boto3"})
"""Packages no test module may import when it is collected: every xdist worker collects every module, so
one module-level ``import sklearn`` costs each worker its import (0.5-1.5 s of CPU) whether or not it runs
that module's tests."""


@pytest.hookimpl(wrapper=True)
def pytest_make_collect_report(collector: pytest.Collector) -> Generator[None, pytest.CollectReport,
                                                                        pytest.CollectReport]:
    """A test module (or conftest) that imports one of :data:`HEAVY_AT_COLLECTION` fails to collect, naming it."""
    before = HEAVY_AT_COLLECTION & sys.modules.keys()
    report = yield
    added = (HEAVY_AT_COLLECTION & sys.modules.keys()) - before
    if added and report.passed:
        report.outcome = "failed"
        report.longrepr = (f"Collecting {collector.nodeid or collector.path} imported {', '.join(sorted(added))}. "
                           "Every pytest worker collects every module: import these inside the tests or "
                           "fixtures that use them.")
    return report

# rich fixes a console's width when it is created, from COLUMNS: the CLI's module-level console is
# made by whichever test first imports it, under that test's environment. One width for the session
# (and for every process a test starts) makes what the CLI prints independent of test order.
os.environ["COLUMNS"] = "200"

# Tiers: a test that starts processes (a kfbox up, replicas, a browser, a CLI tool) is marked
# `processes`, found from the source of its module, of the tests.* modules it uses, and of its fixtures;
# `make test-fast` runs the rest (unit and in-process tests). Conservative: a module that merely
# imports tests.support counts as starting processes.
_SPAWNS = ("ServerProcess", "subprocess", "Popen", "playwright", "multiprocessing", "os.fork")


def _source_spawns(obj: object, cache: dict[object, bool]) -> bool:
    if obj not in cache:
        try:
            source = inspect.getsource(obj)  # type: ignore[arg-type]
        except (OSError, TypeError):
            source = ""
        cache[obj] = any(word in source for word in _SPAWNS)
    return cache[obj]


def _module_spawns(module: types.ModuleType, cache: dict[object, bool]) -> bool:
    if _source_spawns(module, cache):
        return True
    used = {value if isinstance(value, types.ModuleType) else sys.modules.get(getattr(value, "__module__", ""))
            for value in vars(module).values()}
    return any(isinstance(m, types.ModuleType) and m.__name__.startswith("tests.") and m is not module
               and _source_spawns(m, cache) for m in used)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    cache: dict[object, bool] = {}
    for item in items:
        module = getattr(item, "module", None)
        info = getattr(item, "_fixtureinfo", None)
        fixtures = [d.func for defs in info.name2fixturedefs.values() for d in defs] if info else []
        if (module is not None and _module_spawns(module, cache)) or any(_source_spawns(f, cache) for f in fixtures):
            item.add_marker(pytest.mark.processes)
    if hasattr(config, "workerinput"):  # an xdist worker: slow modules first, so they do not start last
        items.sort(key=lambda item: item.get_closest_marker("slow") is None)  # stable: order kept otherwise


_SHARED_FIXTURE = re.compile(r'@pytest\.fixture\(scope="(?:package|session)"[^\n]*\n(?:@[^\n]*\n)*def (\w+)')


def shared_fixtures(conftest: Path) -> set[str]:
    """Names of the package- or session-scoped fixtures a package's conftest defines."""
    return set(_SHARED_FIXTURE.findall(conftest.read_text())) if conftest.is_file() else set()


def uses_any(module_source: str, names: set[str]) -> bool:
    """Whether a test module asks for one of ``names`` (and does not define its own fixture of that name)."""
    return any(re.search(rf"\b{name}\b", module_source) and not re.search(rf"^def {name}\(", module_source, re.M)
               for name in names)


@pytest.hookimpl(optionalhook=True)  # `-p no:xdist` (or no xdist installed) leaves the hook unknown
def pytest_xdist_make_scheduler(config: pytest.Config, log: object) -> object | None:
    """`make test` runs `-n 3 --dist loadfile --no-loadscope-reorder`: one worker takes a whole module (its
    server starts once), and every module of a package that asks for a fixture its package conftest shares
    (package- or session-scoped: the monitoring server with its Prometheus, the cluster stand-ins, the
    pipelines and security servers), so such a fixture is not built on both workers; the package's other
    modules are spread like any module. (xdist's loadgroup would do this with marks, but its node-id suffix
    has no effect under pytest 9.2.) Only placement: a shared fixture built on both workers still works."""
    if config.getvalue("dist") != "loadfile":
        return None
    from xdist.scheduler import LoadScopeScheduling

    root = config.rootpath
    shared = {str(path.parent.relative_to(root)): names for path in root.glob("tests/*/conftest.py")
              if (names := shared_fixtures(path))}
    scopes: dict[str, str] = {}

    class PackageOrFile(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            module = nodeid.split("::", 1)[0]
            if module not in scopes:
                package = module.rsplit("/", 1)[0]
                names = shared.get(package, set())
                grouped = bool(names) and uses_any((root / module).read_text(), names)
                scopes[module] = package if grouped else module
            return scopes[module]

    return PackageOrFile(config, log)


@pytest.fixture(scope="session", autouse=True)
def _server_zygote() -> Iterator[None]:
    """The warm interpreter the session's servers are forked from (tests/zygote.py) ends with the session."""
    yield
    zygote.stop()


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


@pytest.fixture(scope="module")
def app_client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    """The whole app in this process (httpx over ASGI, lifespan run), for the in-process tier:
    validation, error shapes and routing, where a real server process is not what is tested."""
    from kfbox.config import Settings
    from kfbox.db import Database
    from kfbox.server.app import create_app
    from kfbox.server.platform import Platform

    settings = Settings.load(home=tmp_path_factory.mktemp("home"), port=0, pipelines_spare_worker=False,
                             serving_warm_standby=False)
    db = Database(settings.db_url)
    db.upgrade()
    app = create_app(settings, Platform(settings=settings, db=db))
    try:
        with TestClient(app, base_url="http://127.0.0.1") as client:
            yield client
    finally:
        db.dispose()


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
