"""``dsl.TaskConfig``: the pod settings a component asks to receive, built as the KFP driver builds them.

A component declared with ``task_config_passthroughs`` gets, in each input of type ``TASK_CONFIG``,
the Kubernetes fragments of its own pod -- env, resources, volumes and mounts, node selector,
tolerations, affinity -- so it can hand them on to a workload it launches (a training job, say).
A passed-through field applies to the task itself only with ``apply_to_task=True``; a component
without passthroughs gets every field applied and an empty TaskConfig. This follows
``getTaskConfigOptions``, ``initPodSpecPatch`` and ``extendPodSpecPatch`` in kubeflow/pipelines
``backend/src/v2/driver``: the same field names (Go's JSON of the Kubernetes types), the same order
(workspace volume first, then PVC mounts, secret and config map volumes).

Resource quantities are passed as the component wrote them (``"100Mi"``); the older float fields are
formatted as the driver formats them before parsing, without Kubernetes' canonical rewrite.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

RESOURCES = "RESOURCES"
ENV = "ENV"
AFFINITY = "KUBERNETES_AFFINITY"
TOLERATIONS = "KUBERNETES_TOLERATIONS"
NODE_SELECTOR = "KUBERNETES_NODE_SELECTOR"
VOLUMES = "KUBERNETES_VOLUMES"
FIELDS = (RESOURCES, ENV, AFFINITY, TOLERATIONS, NODE_SELECTOR, VOLUMES)
PARAMETER_TYPE = "TASK_CONFIG"

Resolve = Callable[[dict[str, Any]], Any]  # an IR input spec (runtimeValue, componentInputParameter...) -> value


def options(component: dict[str, Any]) -> tuple[set[str], set[str]]:
    """``(fields passed through, fields applied to the task)``, as the driver's ``getTaskConfigOptions``."""
    passthroughs = component.get("taskConfigPassthroughs") or []
    if not passthroughs:
        return set(), set(FIELDS)
    passed: set[str] = set()
    applied: set[str] = set()
    for entry in passthroughs:
        field = str(entry.get("field", ""))
        passed.add(field)
        if entry.get("applyToTask"):
            applied.add(field)
    return passed, applied


def inputs(component: dict[str, Any]) -> list[str]:
    """The component's inputs of type ``dsl.TaskConfig``."""
    declared = component.get("inputDefinitions", {}).get("parameters", {})
    return [name for name, spec in declared.items() if spec.get("parameterType") == PARAMETER_TYPE]


class TaskConfigBuilder:
    """Accumulates one task's TaskConfig in the driver's order; ``value()`` is what the input receives."""

    def __init__(self, passed: set[str]) -> None:
        self.passed = passed
        self.env: list[dict[str, Any]] | None = None
        self.volumes: list[dict[str, Any]] | None = None
        self.volume_mounts: list[dict[str, Any]] | None = None
        self.resources: dict[str, Any] = {}
        self.node_selector: dict[str, str] | None = None
        self.tolerations: list[dict[str, Any]] | None = None
        self.affinity: dict[str, Any] | None = None

    def value(self) -> dict[str, Any]:
        return {"affinity": self.affinity, "tolerations": self.tolerations, "nodeSelector": self.node_selector,
                "env": self.env, "volumes": self.volumes, "volumeMounts": self.volume_mounts,
                "resources": self.resources}

    def add_env(self, items: list[dict[str, Any]]) -> None:
        if ENV in self.passed:
            self.env = [*(self.env or []), *items]

    def add_volume(self, volume: dict[str, Any], mount_path: str) -> None:
        if VOLUMES in self.passed:
            self.volumes = [*(self.volumes or []), volume]
            self.volume_mounts = [*(self.volume_mounts or []), {"name": volume["name"], "mountPath": mount_path}]

    def container(self, container: dict[str, Any], env: list[dict[str, Any]], fill: Callable[[str], str]) -> None:
        """``initPodSpecPatch``'s part: the container's env and its resources."""
        if ENV in self.passed:
            self.env = list(env)
        if RESOURCES in self.passed:
            self.resources = resources(container.get("resources") or {}, fill)

    def platform(self, platform: dict[str, Any], pvcs: list[tuple[str, str]], name_of: Callable[[Any, str], str],
                 resolve: Resolve) -> None:
        """``extendPodSpecPatch``'s part: PVC mounts (``(claim, mount path)``), scheduling, secrets, config maps."""
        for claim, path in pvcs:
            self.add_volume({"name": claim, "persistentVolumeClaim": {"claimName": claim}}, path)
        selector = platform.get("nodeSelector")
        if selector is not None and NODE_SELECTOR in self.passed:
            json_spec = selector.get("nodeSelectorJson")
            self.node_selector = dict(resolve(json_spec) or {}) if json_spec else dict(selector.get("labels") or {})
        if platform.get("tolerations") is not None and TOLERATIONS in self.passed:
            self.tolerations = tolerations(platform["tolerations"], resolve)
        for entry in platform.get("secretAsVolume") or []:
            name = name_of(entry, "secretName")
            self.add_volume({"name": name, "secret": {"secretName": name, "optional": bool(entry.get("optional"))}},
                            str(entry.get("mountPath", "")))
        for entry in platform.get("secretAsEnv") or []:
            self.add_env([_env_ref(pair["envVar"], "secretKeyRef", name_of(entry, "secretName"), pair["secretKey"],
                                   entry) for pair in entry.get("keyToEnv") or []])
        for entry in platform.get("configMapAsVolume") or []:
            name = name_of(entry, "configMapName")
            self.add_volume({"name": name, "configMap": {"name": name, "optional": bool(entry.get("optional"))}},
                            str(entry.get("mountPath", "")))
        for entry in platform.get("configMapAsEnv") or []:
            self.add_env([_env_ref(pair["envVar"], "configMapKeyRef", name_of(entry, "configMapName"),
                                   pair["configMapKey"], entry) for pair in entry.get("keyToEnv") or []])
        self.add_env([{"name": field["name"], "valueFrom": {"fieldRef": {"fieldPath": field["fieldPath"]}}}
                      for field in platform.get("fieldPathAsEnv") or []])
        terms = platform.get("nodeAffinity") or []
        if terms and AFFINITY in self.passed:
            node_affinity = affinity(terms, resolve)
            if node_affinity:
                self.affinity = {"nodeAffinity": node_affinity}


def _env_ref(env_var: str, kind: str, name: str, key: str, entry: dict[str, Any]) -> dict[str, Any]:
    selector: dict[str, Any] = {"name": name, "key": key}
    if "optional" in entry:
        selector["optional"] = bool(entry["optional"])
    return {"name": env_var, "valueFrom": {kind: selector}}


_OLD_FORMAT = {"resourceCpuLimit": ("cpuLimit", "{}"), "resourceCpuRequest": ("cpuRequest", "{}"),
               "resourceMemoryLimit": ("memoryLimit", "{}G"), "resourceMemoryRequest": ("memoryRequest", "{}G")}


def resources(spec: dict[str, Any], fill: Callable[[str], str]) -> dict[str, Any]:
    """Kubernetes ``ResourceRequirements`` from the IR's resources (empty parts left out, as Go's omitempty)."""
    limits: dict[str, str] = {}
    requests: dict[str, str] = {}
    for new, (old, form) in _OLD_FORMAT.items():
        value = fill(str(spec[new])) if spec.get(new) else (form.format(_go_float(spec[old])) if spec.get(old) else "")
        if value:
            target = limits if new.endswith("Limit") else requests
            target["cpu" if "Cpu" in new else "memory"] = value
    accelerator = spec.get("accelerator") or {}
    kind = fill(str(accelerator["resourceType"])) if accelerator.get("resourceType") else accelerator.get("type")
    count = fill(str(accelerator["resourceCount"])) if accelerator.get("resourceCount") else (
        str(accelerator["count"]) if int(accelerator.get("count") or 0) > 0 else "")
    if kind and count:
        limits[str(kind)] = count
    return {**({"limits": limits} if limits else {}), **({"requests": requests} if requests else {})}


def _go_float(value: Any) -> str:
    number = float(value)
    return str(int(number)) if number.is_integer() else repr(number)


def tolerations(entries: list[dict[str, Any]], resolve: Resolve) -> list[dict[str, Any]]:
    """Kubernetes tolerations: plain entries, or ``tolerationJson`` (one toleration or a list)."""
    found: list[dict[str, Any]] = []
    for entry in entries:
        if entry.get("tolerationJson"):
            value = resolve(entry["tolerationJson"])
            found.extend(value if isinstance(value, list) else [value] if value else [])
            continue
        toleration = {k: entry[k] for k in ("key", "operator", "value", "effect") if entry.get(k)}
        if entry.get("tolerationSeconds") not in (None, ""):
            toleration["tolerationSeconds"] = int(entry["tolerationSeconds"])
        found.append(toleration)
    return found


def affinity(terms: list[dict[str, Any]], resolve: Resolve) -> dict[str, Any]:
    """A Kubernetes ``NodeAffinity`` from ``add_node_affinity`` terms (weighted ones are preferred)."""
    required: list[dict[str, Any]] = []
    preferred: list[dict[str, Any]] = []
    for term in terms:
        if term.get("nodeAffinityJson"):
            value = resolve(term["nodeAffinityJson"]) or {}
            required.extend((value.get("requiredDuringSchedulingIgnoredDuringExecution") or {})
                            .get("nodeSelectorTerms") or [])
            preferred.extend(value.get("preferredDuringSchedulingIgnoredDuringExecution") or [])
            continue
        selector: dict[str, Any] = {}
        for field in ("matchExpressions", "matchFields"):
            if term.get(field):
                selector[field] = [{"key": e.get("key", ""), "operator": e.get("operator", ""),
                                    **({"values": list(e["values"])} if e.get("values") else {})}
                                   for e in term[field]]
        if not selector:
            continue
        if term.get("weight") is not None:
            preferred.append({"weight": int(term["weight"]), "preference": selector})
        else:
            required.append(selector)
    result: dict[str, Any] = {}
    if required:
        result["requiredDuringSchedulingIgnoredDuringExecution"] = {"nodeSelectorTerms": required}
    if preferred:
        result["preferredDuringSchedulingIgnoredDuringExecution"] = preferred
    return result
