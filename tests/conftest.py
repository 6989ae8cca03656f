"""Fixtures shared by every test: a clean environment, real servers, real databases."""

from __future__ import annotations

import inspect
import os
import re
import sys
import types
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from tests import zygote
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


def pytest_sessionstart(session: pytest.Session) -> None:
    """Before collection, in the process that imports the test modules; not in pytest-xdist's controller (its
    ``dsession`` plugin), which only hands them out to the workers: kserve's import is ~1.5 s of CPU there,
    before any worker starts."""
    if not session.config.pluginmanager.hasplugin("dsession"):
        _import_kserve_without_pytest_arguments()


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
