"""Prometheus HTTP service discovery: the server and every model replica, as ``http_sd_configs`` reads them.

Prometheus polls ``/monitoring/sd?job=...`` every few seconds, so a replica the autoscaler
starts is scraped from its next refresh, without a restart or a config reload. Replica
targets carry the Knative label names (``namespace_name``, ``service_name``,
``revision_name``) so per-replica queries read the same here and on a cluster.

Example::

    targets(platform, "kfbox-replica")
    # [{"targets": ["127.0.0.1:40123"], "labels": {"namespace_name": "default", ...}}]
"""

from __future__ import annotations

from typing import Any

from kfbox.addresses import bracket, connect_host
from kfbox.errors import InvalidInput
from kfbox.monitoring.collectors import revision_name
from kfbox.server.platform import Platform

SERVER_JOB = "kfbox"
REPLICA_JOB = "kfbox-replica"
JOBS = (SERVER_JOB, REPLICA_JOB)


def targets(platform: Platform, job: str) -> list[dict[str, Any]]:
    """One target group per process in ``job`` (Prometheus's http_sd JSON format)."""
    if job == SERVER_JOB:
        return [{"targets": [scrape_address(platform.settings.host, platform.settings.port)],
                 "labels": {"component": "server"}}]
    if job != REPLICA_JOB:
        raise InvalidInput(f"Unknown scrape job {job!r}; use one of {', '.join(JOBS)}.")
    groups = []
    serving = platform.services.serving
    for (namespace, name), deployment in list(serving.deployments.items()) if serving else []:
        for number, pool in list(deployment.pools.items()):
            for replica in list(pool.replicas):
                if replica.broken:
                    continue
                groups.append({"targets": [f"127.0.0.1:{replica.port}"],
                               "labels": {"component": "replica", "namespace_name": namespace, "service_name": name,
                                          "revision_name": revision_name(name, number),
                                          "replica": str(replica.index)}})
    return groups


def scrape_address(host: str, port: int) -> str:
    """``host:port`` Prometheus scrapes the server bound to ``host``:``port`` at (loopback for a wildcard)."""
    return f"{bracket(connect_host(host))}:{port}"
