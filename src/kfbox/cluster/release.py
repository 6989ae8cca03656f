"""The Kubeflow releases kfbox knows how to install, pinned: tag, commit, tools, node image.

Facts from kubeflow/community-distribution (renamed from kubeflow/manifests) at the tag:
``tests/install_KinD_create_KinD_cluster_install_kustomize.sh`` (kind, node image,
kustomize) and the README (inotify limits, 16 GB / 8 cores). A clone of the tag is verified
against ``commit`` so a moved tag cannot change what gets installed.
"""

from __future__ import annotations

import dataclasses

from kfbox.errors import InvalidInput

REPOSITORY = "https://github.com/kubeflow/community-distribution"


@dataclasses.dataclass(frozen=True)
class Release:
    ref: str
    commit: str
    kind_version: tuple[int, int]
    node_image: str
    kubernetes_minor: tuple[int, int]
    kustomize_major: int = 5
    kustomize_pinned: str = "v5.8.1"
    helm_major: int = 3
    inotify_instances: int = 2280
    inotify_watches: int = 1255360
    memory_gib: int = 16
    cpus: int = 8
    disk_gb: int = 70
    """About 65 GB of PVCs (the README's usage table) plus the node images."""


RELEASES: dict[str, Release] = {
    "26.03": Release(
        ref="26.03",
        commit="d68ebc7fab366ab40ddd1541d2ec22febb31bc83",
        kind_version=(0, 30),
        node_image="kindest/node:v1.34.0@sha256:7416a61b42b1662ca6ca89f02028ac133a309a2a30ba309614e8ec94d976dc5a",
        kubernetes_minor=(1, 34),
    ),
}
DEFAULT_REF = "26.03"


def release(ref: str) -> Release:
    try:
        return RELEASES[ref]
    except KeyError:
        known = ", ".join(sorted(RELEASES))
        raise InvalidInput(f"Unknown manifests ref {ref!r}: kfbox pins {known}. "
                           f"Use --manifests-ref {DEFAULT_REF}.") from None
