"""One ``kfbox up`` the serving modules share where a fresh server is not what they test: each server costs a
start (~1.5 s of CPU) and, at its first replica, a replica fork server (a kserve import, ~3 s).

``shared_server`` is package-scoped, with the gRPC gateway on a free port. ``server`` (module-scoped, over
tests/conftest.py's own) hands it to a module and, when the module ends, deletes every InferenceService
it left, so no replica of one module runs during the next one and no name is seen twice. A module that
needs a server of its own (other settings, a token, its own home) defines its own ``server``.
tests/conftest.py's scheduler sends the modules that name ``shared_server`` to one xdist worker; the others
get the shared server of the worker they run on.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest

from tests.serving.helpers import SERVING, SharedServer
from tests.support import ServerProcess


@pytest.fixture(scope="package")
def shared_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SharedServer]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
    # the HPA's stabilization (300 s by default) would hold a cpu-scaled predictor's replicas for five minutes
    # after its load: test_scaling's cpu test waits for the scale-down, with the 2 s window its services get
    shared = SharedServer(ServerProcess.start(tmp_path_factory.mktemp("shared-home"), extra_env=
                                              {"KFBOX_SERVING_GRPC_PORT": str(port),
                                               "KFBOX_SERVING_HPA_DOWNSCALE_STABILIZATION": "2"}), port)
    yield shared
    shared.server.stop()


@pytest.fixture(scope="module")
def server(shared_server: SharedServer) -> Iterator[ServerProcess]:
    """The serving package's shared ``kfbox up``; the InferenceServices the module left are deleted after it."""
    yield shared_server.server
    with shared_server.server.client() as client:
        for item in client.get(f"{SERVING}/inferenceservices").json()["items"]:
            meta = item["metadata"]
            reply = client.delete(f"{SERVING}/namespaces/{meta['namespace']}/inferenceservices/{meta['name']}")
            assert reply.status_code in (200, 404), reply.text
