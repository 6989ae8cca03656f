"""Cluster and namespace names: DNS-1123 labels, checked before any command is built.

A kind cluster name becomes a kubectl context (``kind-NAME``), Docker container names and
a folder in the kfbox home, so a bad one must stop the install before it starts.
"""

from __future__ import annotations

from kfbox.names import check_dns1123_label

# kind prefixes node containers and the context; keep room under the 63-character label
CLUSTER_NAME_MAX = 50


def check_cluster_name(name: str) -> str:
    check_dns1123_label(name, kind="Kind cluster")
    if len(name) > CLUSTER_NAME_MAX:
        from kfbox.errors import InvalidInput

        raise InvalidInput(f"Kind cluster name {name!r} is {len(name)} characters; use at most {CLUSTER_NAME_MAX} "
                           "(kind adds '-control-plane' and 'kind-' to it).")
    return name


def check_namespace(name: str) -> str:
    return check_dns1123_label(name, kind="Namespace")
