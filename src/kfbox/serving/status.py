"""An InferenceService as KServe shows it: the applied manifest plus a ``status`` block.

``status.url`` is KServe's host-based URL (``http://NAME.NAMESPACE.DOMAIN``, reached through
the gateway with that ``Host`` header); ``status.address.url`` is the path-based URL on the
kfbox port. ``status.replicas`` / ``status.desiredReplicas`` are kfbox additions.
"""

from __future__ import annotations

import dataclasses
import datetime
from collections.abc import Callable
from typing import Any

from kfbox.serving.deployment import Deployment, traffic_split
from kfbox.serving.scaling_spec import annotations_of, autoscaling, deployment_mode
from kfbox.serving.store import ServiceRecord, revision_name


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


Check = tuple[bool, str | None, str | None]
"""A condition's value: whether it holds, and the reason and message when it does not."""


def condition(deployment: Deployment, kind: str, check: Check, key: str | None = None) -> dict[str, Any]:
    """A status condition of type ``kind``; its ``lastTransitionTime`` is kept under ``key`` (default ``kind``),
    so two objects that show the same fact under different names (the InferenceService's ``PredictorReady``,
    its Knative Service's ``Ready``) show the same time."""
    ok, reason, message = check
    value = "True" if ok else "False"
    slot = key or kind
    seen = deployment.transitions.get(slot)
    if seen is None or seen[0] != value:
        seen = deployment.transitions[slot] = (value, _now())
    result: dict[str, Any] = {"type": kind, "status": value, "lastTransitionTime": seen[1]}
    if not ok:
        result["reason"] = reason
        result["message"] = message
    return result


def _traffic(record: ServiceRecord, split: dict[int, int], ready: set[int]) -> list[dict[str, Any]]:
    """``status.components.predictor.traffic`` as Knative resolves it for KServe: the target that follows the
    latest revision (``latestRevision: true``; kubectl's LATEST and LATESTREADYREVISION columns) names the
    revision its share goes to now. That is the serving revision during a rollout without a canary percent,
    and the stable one while a canary is not ``ready`` (kfbox sends the canary's share there, as Knative
    routes it to the latest *ready* revision). A canary's stable revision is the ``prev`` target."""
    traffic = []
    for number, percent in sorted(split.items()):
        latest = number == record.latest or len(split) == 1  # alone, it is the target following the latest
        unready_canary = len(split) > 1 and number == record.latest and number not in ready
        shown = record.stable if unready_canary and record.stable is not None else number
        traffic.append({"revisionName": revision_name(record.name, shown), "percent": percent,
                        "latestRevision": latest, **({} if latest else {"tag": "prev"})})
    return traffic


@dataclasses.dataclass(frozen=True)
class PredictorState:
    """The predictor as KServe's Knative Service reports it and the InferenceService mirrors it: one rule for
    both objects (:func:`describe`, :mod:`kfbox.serving.knative`)."""

    routes: Check
    """A revision that takes traffic answers (Knative's ``RoutesReady``)."""
    latest: Check
    """The latest revision is ready (``LatestDeploymentReady``; Knative's ``ConfigurationsReady``)."""
    ready: Check
    """Both, and the latest generation takes its traffic (``PredictorReady``; the Knative Service's ``Ready``)."""
    failing: bool
    """A revision that takes traffic, or the latest, failed to load its model."""
    failure: str | None
    """The latest revision's load failure."""
    component: dict[str, Any]
    """``status.components.predictor``: revision names, traffic, the predictor's URL."""


def predictor_state(deployment: Deployment, domain: str) -> PredictorState:
    record = deployment.record
    name, namespace = record.name, record.namespace
    split = traffic_split(record)
    serving = [deployment.pools[n] for n, pct in split.items() if pct > 0 and n in deployment.pools]
    latest = deployment.pools.get(record.latest)
    # a revision with an initial scale is ready only once that many replicas were ready at once (Knative's
    # "scale target initialized"); after that, by the usual rules
    ready_revisions = [n for n, p in deployment.pools.items()
                       if p.initialized and (p.ready_count or (p.ever_ready and p.failure is None))]

    def healthy(pool: Any) -> bool:
        return pool.initialized and (bool(pool.ready_count)
                                     or (pool.ever_ready and pool.failure is None and not pool.replicas))

    ok = bool(serving) and any(healthy(p) for p in serving)
    failing = next((p for p in serving if p.failure), None) or (latest if latest and latest.failure else None)
    if ok:
        reason, message = None, None
    elif failing is not None:
        reason, message = "ModelLoadFailed", failing.failure
    else:
        reason, message = "ReplicasStarting", "Waiting for a model replica to load and report ready."
    latest_ok = latest is not None and healthy(latest)
    routes: Check = (ok, reason, message)
    # a rollout is under way: Ready for this generation only once its revision is ready and, without a
    # canary percent, takes the traffic (the manager hands it over on its next tick)
    handed_over = record.canary_percent is not None or split.get(record.latest, 0) > 0
    if ok and not (latest_ok and handed_over):
        ok = False
        if latest is not None and latest.failure:
            reason, message = "ModelLoadFailed", latest.failure
        else:
            reason, message = "RevisionNotReady", (f"Revision {revision_name(name, record.latest)} is starting; "
                                                   "the previous revision serves meanwhile.")
    latest_check: Check = (latest_ok, "ModelLoadFailed" if latest and latest.failure else "ReplicasStarting",
                           latest.failure if latest and latest.failure else "The latest revision is starting.")
    traffic = _traffic(record, split, set(ready_revisions))
    predictor: dict[str, Any] = {
        "latestCreatedRevision": revision_name(name, record.latest),
        "traffic": traffic,
        "url": f"http://{name}-predictor.{namespace}.{domain}",
    }
    if ready_revisions:
        predictor["latestReadyRevision"] = revision_name(name, max(ready_revisions))
    if record.stable is not None:
        predictor["latestRolledoutRevision"] = revision_name(name, record.stable)
    return PredictorState(routes=routes, latest=latest_check, ready=(ok, reason, message),
                          failing=failing is not None, failure=latest.failure if latest else None,
                          component=predictor)


def describe(deployment: Deployment, platform_url: str, domain: str,
             handoff_refusal: Callable[[Deployment], str | None] | None = None) -> dict[str, Any]:
    """The InferenceService as KServe's API returns it, with kfbox's own status fields (revisions, autoscaling; with
    the connection hand-off, ``handoff``: whether plain connections go to its replicas, and if not, why)."""
    record = deployment.record
    name, namespace = record.name, record.namespace
    state = predictor_state(deployment, domain)
    failure = state.failure
    conditions = [
        condition(deployment, "IngressReady", (True, None, None)),
        condition(deployment, "LatestDeploymentReady", state.latest),
        condition(deployment, "PredictorReady", state.ready),
        condition(deployment, "Ready", state.ready),
    ]
    body = dict(record.manifest)
    body["metadata"] = {**body.get("metadata", {}), "namespace": namespace, "uid": record.uid,
                        "resourceVersion": str(record.resource_version), "generation": record.generation,
                        "creationTimestamp": datetime.datetime.fromtimestamp(record.created_ms / 1000, datetime.UTC)
                        .strftime("%Y-%m-%dT%H:%M:%SZ")}
    if record.managed_fields:
        body["metadata"]["managedFields"] = record.managed_fields
    body["status"] = {
        "url": f"http://{name}.{namespace}.{domain}",
        "address": {"url": f"{platform_url}/serving/{namespace}/{name}"},
        "conditions": conditions,
        "components": {"predictor": state.component},
        "modelStatus": {
            "states": {"activeModelState": "Loaded" if state.routes[0] else
                       ("FailedToLoad" if state.failing else "Pending"),
                       "targetModelState": "Loaded"},
            **({"lastFailureInfo": {"reason": "ModelLoadFailed", "message": failure}} if failure else {}),
        },
        "observedGeneration": record.generation,
        "deploymentMode": deployment_mode(annotations_of(record.manifest)),
        **({"autoscaling": autoscaling(latest.spec)} if (latest := deployment.pools.get(record.latest)) else {}),
        **({"handoff": handoff_status(handoff_refusal(deployment))} if handoff_refusal is not None else {}),
        "replicas": sum(p.ready_count for p in deployment.pools.values()),
        "desiredReplicas": sum(p.desired for p in deployment.pools.values()),
        "revisions": {revision_name(name, n): {"ready": p.ready_count, "replicas": len(p.replicas),
                                               "desired": p.desired, "failure": p.failure,
                                               # held by kfbox's gateway: every replica at containerConcurrency
                                               "queued": p.queued,
                                               # each ready replica's own address, for benchmarks and debugging
                                               "endpoints": [r.url for r in p.replicas if r.ready],
                                               "pids": [r.child.pid for r in p.replicas if r.ready],
                                               "grpcEndpoints": [f"127.0.0.1:{r.grpc_port}" for r in p.replicas
                                                                 if r.ready and r.grpc_port]}
                      for n, p in sorted(deployment.pools.items())},
    }
    return body


def handoff_status(refusal: str | None) -> dict[str, str]:
    """``{"connections": "replicas"}``, or ``{"connections": "kfbox", "reason": ...}`` when kfbox keeps them."""
    return {"connections": "replicas"} if refusal is None else {"connections": "kfbox", "reason": refusal}
