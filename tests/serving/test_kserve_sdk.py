"""The kserve SDK's ``KServeClient`` against ``kfbox up`` through the kubeconfig ``kfbox kubeconfig``
writes — create, wait (watch), replace (resourceVersion), patch (canary), get, delete — as against a
cluster. There is no Kubernetes here: kfbox is the API server the SDK's kubernetes client talks to."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest

if TYPE_CHECKING:  # imported where used: every pytest worker imports this module, few run it
    from kserve import KServeClient, V1beta1InferenceService

from tests.serving.helpers import ROWS, expected, inference_service, kfbox, train_iris
from tests.support import ServerProcess

NS = "sdk"
NAME = "sdk-iris"


@pytest.fixture(scope="module")
def kserve(server: ServerProcess, tmp_path_factory: pytest.TempPathFactory) -> Iterator[KServeClient]:
    from kserve import KServeClient

    config = tmp_path_factory.mktemp("kube") / "config"
    assert kfbox("kubeconfig", "-o", str(config), url=server.url).returncode == 0
    yield KServeClient(config_file=str(config))


def isvc(uri: str, canary: int | None = None, version: str | None = None) -> V1beta1InferenceService:
    return inference_service(NAME, uri, namespace=NS, resource_version=version,  # type: ignore[no-any-return]
                             canary_traffic_percent=canary)


def predict(server: ServerProcess) -> Any:
    reply = httpx.post(f"{server.url}/serving/{NS}/{NAME}/v1/models/{NAME}:predict", json={"instances": ROWS})
    assert reply.status_code == 200, reply.text
    return reply.json()["predictions"]


def test_create_wait_replace_patch_delete(kserve: KServeClient, server: ServerProcess, tmp_path: Path) -> None:
    logistic = train_iris(server.home / "pvc" / "models" / "sdk-v1")
    tree = train_iris(server.home / "pvc" / "models" / "sdk-v2", kind="tree")
    created = kserve.create(isvc("pvc://models/sdk-v1"))
    assert created["metadata"]["generation"] == 1 and created["metadata"]["uid"]
    assert not kserve.is_isvc_ready(NAME, namespace=NS)  # nothing is loaded yet: the watch below must wait
    kserve.wait_isvc_ready(NAME, namespace=NS, watch=True, timeout_seconds=90)
    assert kserve.is_isvc_ready(NAME, namespace=NS)
    assert predict(server) == expected(logistic)

    replaced = kserve.replace(NAME, isvc("pvc://models/sdk-v2"))  # the SDK fills in the resourceVersion
    assert replaced["metadata"]["generation"] == 2
    kserve.wait_isvc_ready(NAME, namespace=NS, watch=True, timeout_seconds=90, expected_generation=2)
    assert kserve.is_isvc_ready(NAME, namespace=NS, expected_generation=2)
    assert predict(server) == expected(tree)  # Ready for generation 2 means revision 2 serves

    with pytest.raises(RuntimeError, match="409"):  # a stale resourceVersion is refused
        kserve.replace(NAME, isvc("pvc://models/sdk-v1", version=created["metadata"]["resourceVersion"]))

    patched = kserve.patch(NAME, isvc("pvc://models/sdk-v2", canary=30))  # a merge patch; spec changed: gen 3
    assert patched["spec"]["predictor"]["canaryTrafficPercent"] == 30
    assert patched["metadata"]["generation"] == 3
    kserve.wait_isvc_ready(NAME, namespace=NS, watch=True, timeout_seconds=90, expected_generation=3)
    assert kserve.get(NAME, namespace=NS)["status"]["components"]["predictor"]["latestCreatedRevision"] == \
        f"{NAME}-predictor-00002"  # the same predictor: no new revision

    kserve.delete(NAME, namespace=NS)
    with pytest.raises(RuntimeError, match=r"Not Found|404"):
        kserve.get(NAME, namespace=NS)
