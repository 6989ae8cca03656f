"""Stand-ins for a Kubeflow cluster (there is no Kubernetes here): a second kfbox server behind
our loopback Dex/oauth2-proxy gateway (tests/cluster/dexgateway.py). Session-scoped: the remote
and promotion tests share them.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.cluster.dexgateway import Gateway, running_gateway
from tests.support import ServerProcess


@pytest.fixture(scope="session")
def cluster_kfbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """The kfbox server that stands in for the cluster's Model Registry, KFP and KServe APIs."""
    proc = ServerProcess.start(tmp_path_factory.mktemp("cluster-home"))
    yield proc
    proc.stop()


@pytest.fixture(scope="session")
def gateway(cluster_kfbox: ServerProcess) -> Iterator[Gateway]:
    with running_gateway(cluster_kfbox.url) as gw:
        yield gw
