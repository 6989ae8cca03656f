"""The kind cluster config: node image pinned by digest, 1 control plane + N workers, the SA issuer patch.

The kubeadm patch carries no ``apiVersion``: kind applies a versioned patch only when it
matches the kubeadm API it generates (v1beta3 for nodes < 1.36), and upstream's ``v1beta2``
patch is silently ignored on node 1.34. Unversioned, it applies on every node version.

Example::

    text = kind_config(release("26.03"), workers=2)
"""

from __future__ import annotations

from typing import Any

import yaml

from kfbox.cluster.release import Release

ISSUER = "https://kubernetes.default.svc"


def kind_config(rel: Release, workers: int = 2) -> str:
    patch = {"kind": "ClusterConfiguration", "metadata": {"name": "config"},
             "apiServer": {"extraArgs": {"service-account-issuer": ISSUER,
                                         "service-account-signing-key-file": "/etc/kubernetes/pki/sa.key"}}}
    nodes: list[dict[str, Any]] = [{"role": "control-plane", "image": rel.node_image}]
    nodes += [{"role": "worker", "image": rel.node_image} for _ in range(workers)]
    config = {"apiVersion": "kind.x-k8s.io/v1alpha4", "kind": "Cluster",
              "kubeadmConfigPatches": [yaml.safe_dump(patch, sort_keys=False)], "nodes": nodes}
    return yaml.safe_dump(config, sort_keys=False)
