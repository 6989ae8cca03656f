"""A ``kfbox up`` the serving modules share where a fresh server is not what they test: each server costs a
start (~1.5 s of CPU) and, at its first replica, a replica fork server (a kserve import, ~2 s).

Package-scoped: tests/conftest.py's scheduler sends the modules that ask for it to one xdist worker, so it
starts once there. A module that uses it deletes its InferenceServices when it ends, so no replica of
one module runs while the next one's tests do.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest

from tests.serving.helpers import GrpcServer
from tests.support import ServerProcess


@pytest.fixture(scope="package")
def grpc_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GrpcServer]:
    """A ``kfbox up`` with the gRPC gateway on a free port, for test_protocol, test_model_args and
    test_replica_env."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
    proc = ServerProcess.start(tmp_path_factory.mktemp("grpc-home"), extra_env={"KFBOX_SERVING_GRPC_PORT": str(port)})
    yield GrpcServer(proc, port)
    proc.stop()
