"""Replicas import kserve without its Kubernetes client (kfbox.serving.kserve_import), yet a model that uses
``kserve.KServeClient`` gets the real client at its first use. Real processes: a fresh interpreter for the
helper, a replica of ``kfbox up`` for the whole path."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.serving.helpers import apply, kfbox, manifest, v1, wait_ready
from tests.support import ServerProcess

IMPORTS = """
import json, sys
from kfbox.serving.kserve_import import MODULE, defer_kubernetes_client

defer_kubernetes_client()
import kserve.model_server, kfbox.serving.runtimes, kfbox.serving.fastpath  # the replica fork server's preload
from kserve import KServeClient  # bound to the stand-in, as in a model's module
from kserve.api import kserve_client as stand_in

loaded = "kubernetes" in sys.modules
client = KServeClient(config_file=sys.argv[1])
import kserve

defer_kubernetes_client()  # kserve is imported: changes nothing
print(json.dumps({"kubernetes_at_preload": loaded, "kubernetes_after_use": "kubernetes" in sys.modules,
                  "client": f"{type(client).__module__}.{type(client).__qualname__}",
                  "kserve_has_real_class": kserve.KServeClient is type(client),
                  "module_is_real": sys.modules[MODULE].KServeClient is type(client),
                  "stand_in_resolves": stand_in.isvc_watch is sys.modules[MODULE].isvc_watch}))
"""

KUBECONFIG = """apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: "http://127.0.0.1:9"}}]
users: [{name: u, user: {token: t}}]
contexts: [{name: c, context: {cluster: c, user: u}}]
current-context: c
"""

CLUSTER_AWARE = '''
import sys

import kserve
from kserve import Model

KUBECONFIG = {kubeconfig!r}


class ClusterAware(Model):
    """Reads its own InferenceService with the kserve SDK, as a model on a cluster may."""

    def load(self):
        self.kubernetes_at_load = "kubernetes" in sys.modules
        self.ready = True
        return True

    def predict(self, payload, headers=None):
        before = "kubernetes" in sys.modules
        client = kserve.KServeClient(config_file=KUBECONFIG)
        isvc = client.get(self.name, namespace="default")
        return {{"predictions": [self.kubernetes_at_load, before, type(client).__module__, isvc["metadata"]["name"]]}}
'''


def test_kserve_imports_without_kubernetes_and_its_client_loads_at_first_use(tmp_path: Path) -> None:
    config = tmp_path / "kubeconfig"
    config.write_text(KUBECONFIG)
    done = subprocess.run([sys.executable, "-c", IMPORTS, str(config)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {"kubernetes_at_preload": False, "kubernetes_after_use": True,
                                       "client": "kserve.api.kserve_client.KServeClient",
                                       "kserve_has_real_class": True, "module_is_real": True,
                                       "stand_in_resolves": True}


def test_a_replica_serves_without_kubernetes_until_its_model_uses_kserve_client(server: ServerProcess,
                                                                                tmp_path: Path) -> None:
    config = tmp_path / "kubeconfig"
    assert kfbox("kubeconfig", "-o", str(config), url=server.url).returncode == 0
    code = tmp_path / "code"
    code.mkdir()
    (code / "cluster_aware.py").write_text(CLUSTER_AWARE.format(kubeconfig=str(config)))
    with server.client() as client:
        apply(client, manifest("cluster-aware", None, fmt="custom",
                               annotations={"serving.kfbox.io/model-class": "cluster_aware:ClusterAware",
                                            "serving.kfbox.io/python-path": str(code)}))
        wait_ready(client, "cluster-aware")
        reply = v1(client, "cluster-aware", [[1.0]])
        assert reply.status_code == 200, reply.text
        assert reply.json()["predictions"] == [False, False, "kserve.api.kserve_client", "cluster-aware"]
