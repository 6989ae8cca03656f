"""Stand-ins for a Kubeflow cluster (there is no Kubernetes here): a second kfbox server behind
our loopback Dex/oauth2-proxy gateway (tests/cluster/dexgateway.py), and an S3-compatible
server on loopback (moto's) as the cluster's SeaweedFS. Session-scoped: the remote and
promotion tests share them.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.cluster.dexgateway import Gateway, running_gateway
from tests.support import ServerProcess, moto_s3

S3_KEYS = {"access": "AKIAKFBOXTEST", "secret": "kfbox-test-secret"}


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    with moto_s3() as (endpoint, _client):
        yield endpoint


@pytest.fixture(scope="session")
def cluster_kfbox(tmp_path_factory: pytest.TempPathFactory, s3_endpoint: str) -> Iterator[ServerProcess]:
    """The kfbox server standing in for the cluster's Model Registry, KFP and KServe APIs (reads s3:// from moto)."""
    env = {"KFBOX_S3_ENDPOINT": s3_endpoint, "KFBOX_S3_ACCESS_KEY": S3_KEYS["access"],
           "KFBOX_S3_SECRET_KEY": S3_KEYS["secret"]}
    proc = ServerProcess.start(tmp_path_factory.mktemp("cluster-home"), extra_env=env)
    yield proc
    proc.stop()


@pytest.fixture(scope="session")
def gateway(cluster_kfbox: ServerProcess) -> Iterator[Gateway]:
    with running_gateway(cluster_kfbox.url) as gw:
        yield gw
