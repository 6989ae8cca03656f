"""Fixtures shared by every test: a clean environment, real servers, real databases."""

from __future__ import annotations

import inspect
import os
import sys
import types
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from tests.support import ServerProcess, create_database, drop_database


def _import_kserve_without_pytest_arguments() -> None:
    """kserve.model_server parses sys.argv when imported (parse_known_args, abbreviations allowed):
    pytest's own `--co` or `-m` read as kserve flags end collection with SystemExit. Import it once
    here, with pytest's arguments out of sight; test modules then get the imported module."""
    argv = sys.argv
    sys.argv = argv[:1]
    try:
        import kserve.model_server  # noqa: F401
    finally:
        sys.argv = argv


_import_kserve_without_pytest_arguments()

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


@pytest.hookimpl(tryfirst=True)  # before xdist's own hook reads the xdist_group marks
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    cache: dict[object, bool] = {}
    for item in items:
        module = getattr(item, "module", None)
        info = getattr(item, "_fixtureinfo", None)
        fixtures = [d.func for defs in info.name2fixturedefs.values() for d in defs] if info else []
        if (module is not None and _module_spawns(module, cache)) or any(_source_spawns(f, cache) for f in fixtures):
            item.add_marker(pytest.mark.processes)
    if config.pluginmanager.hasplugin("xdist"):
        _group_for_xdist(config, items)


def _group_for_xdist(config: pytest.Config, items: list[pytest.Item]) -> None:
    """`make test` runs `-n 2 --dist loadgroup --no-loadscope-reorder`: one worker takes a whole module
    (its module-scoped server starts once), or a whole package where a package- or session-scoped
    fixture of that package's conftest is used (the monitoring server and its Prometheus, the cluster
    stand-ins), so no such fixture is built on both workers. On a worker, the slow modules are sent
    first, so the longest units do not start last while the other worker idles."""
    groups: dict[str, str] = {}  # module path -> group (the module, or the package whose fixture it uses)
    for item in items:
        module = item.nodeid.split("::")[0]
        info = getattr(item, "_fixtureinfo", None)
        shared = [d.baseid for defs in (info.name2fixturedefs.values() if info else ())
                  for d in defs if d.scope in ("package", "session") and "/" in d.baseid]
        groups[module] = min([groups.get(module, module), *shared])  # a package sorts before its modules
    for item in items:
        item.add_marker(pytest.mark.xdist_group(groups[item.nodeid.split("::")[0]]))
    if hasattr(config, "workerinput"):
        items.sort(key=lambda item: item.get_closest_marker("slow") is None)  # stable: order kept otherwise


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
