"""Two real servers shared by the security modules that opt in (a module fixture ``server`` that
returns one of them): a plain ``kfbox up`` and one with a token. Such a module names its own
objects (models, services, experiments) and checks only those. The fuzzer (it writes whatever it
generates) and the modules with settings of their own (allowed hosts, timeouts, a full disk) start
their own server."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import ServerProcess

TOKEN = "s3cret-token"


@pytest.fixture(scope="package")
def shared_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    proc = ServerProcess.start(tmp_path_factory.mktemp("home"))
    yield proc
    proc.stop()


@pytest.fixture(scope="package")
def token_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """``kfbox up`` with KFBOX_TOKEN=TOKEN: the token and browser-session modules."""
    proc = ServerProcess.start(tmp_path_factory.mktemp("token-home"), token=TOKEN)
    yield proc
    proc.stop()


@pytest.fixture(scope="module")
def home(server: ServerProcess) -> Path:
    """The ``KFBOX_HOME`` of the module's ``server``, where a test puts model files (``pvc/``)."""
    return server.home
