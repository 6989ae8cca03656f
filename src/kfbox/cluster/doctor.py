"""``kfbox cluster doctor``: can this machine run Kubeflow on Kind? Read-only checks, each with its fix.

A check is ``ok``, ``warn`` (works, but upstream advises otherwise) or ``fail`` (the install
will not work). The container engine is checked by asking it (``docker info``), not by
finding the client: a client without a reachable engine is the most common broken setup.

Example::

    checks = run_checks(SubprocessRunner(), release("26.03"))
    [c for c in checks if c.status == "fail"]
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
import socket
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from kfbox.cluster.release import Release
from kfbox.cluster.runner import NOT_FOUND, Command, CommandRunner

OK, WARN, FAIL = "ok", "warn", "fail"
PORTS = {8080: "Kubeflow dashboard (istio-ingressgateway)", 8081: "Model Registry", 8333: "SeaweedFS S3",
         3000: "Grafana", 9090: "Prometheus"}
GIB = 1024 ** 3
_VERSION = re.compile(r"v?(\d+)\.(\d+)(?:\.(\d+))?")


@dataclasses.dataclass(frozen=True)
class Check:
    name: str
    status: str
    found: str
    needed: str
    fix: str = ""

    def as_dict(self) -> dict[str, str]:
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class Host:
    """Where the host facts are read; tests point it at fixture files."""

    proc: Path = Path("/proc")
    cgroup: Path = Path("/sys/fs/cgroup")
    disk_path: Path = dataclasses.field(default_factory=Path.home)


def parse_version(text: str) -> tuple[int, int, int] | None:
    match = _VERSION.search(text)
    if not match:
        return None
    return int(match[1]), int(match[2]), int(match[3] or 0)


def check_engine(runner: CommandRunner) -> tuple[Check, dict[str, Any]]:
    """docker (or podman) with its engine answering; returns the engine's info for CPU/memory."""
    install = ("Install Docker Engine: https://docs.docker.com/engine/install/ "
               "(or podman, then export KIND_EXPERIMENTAL_PROVIDER=podman)")
    for tool in ("docker", "podman"):
        result = runner.run(Command((tool, "info", "--format", "{{json .}}"), timeout=30))
        if result.returncode == NOT_FOUND:
            continue
        ok, out, err = result.ok, result.stdout, result.first_error_line()
        info: dict[str, Any] = {}
        try:
            info = json.loads(out) if out.strip() else {}
        except ValueError:
            info = {}
        server = info.get("ServerVersion") or info.get("version", {}).get("Version", "")
        if ok and (server or tool == "podman"):
            found = f"{tool} engine {server or 'reachable'}"
            return Check("container engine", OK, found, "docker or podman engine"), info
        client = (info.get("ClientInfo") or {}).get("Version", "")
        found = f"{tool} client {client} found, but its engine is NOT reachable: {err}".replace("client  ", "client ")
        fix = ("Start the engine: sudo systemctl start docker (Docker Desktop: start the app; a remote engine: "
               "set DOCKER_HOST), then check with: docker info") if tool == "docker" else \
            "Start podman's service: systemctl --user start podman.socket, then check with: podman info"
        return Check("container engine", FAIL, found, "a reachable docker or podman engine", fix), {}
    return Check("container engine", FAIL, "neither docker nor podman is installed", "docker or podman engine",
                 install), {}


def check_tool(runner: CommandRunner, name: str, argv: Sequence[str], needed: tuple[int, int], needed_text: str,
               fix: str, *, required: bool = True, max_minor: int | None = None) -> Check:
    result = runner.run(Command(tuple(argv), timeout=30))
    if result.returncode == NOT_FOUND:
        return Check(name, FAIL if required else WARN, "not installed", needed_text, fix)
    ok, out, err = result.ok, result.stdout, result.first_error_line()
    version = parse_version(out) if ok else None
    if version is None:
        return Check(name, FAIL if required else WARN, f"cannot read its version: {err}", needed_text, fix)
    text = "v{}.{}.{}".format(*version)
    if version[:2] < needed:
        return Check(name, FAIL if required else WARN, text, needed_text, fix)
    if max_minor is not None and version[0] == needed[0] and version[1] > max_minor:
        return Check(name, WARN, text, needed_text, fix)
    return Check(name, OK, text, needed_text)


def check_kubectl(runner: CommandRunner, rel: Release) -> tuple[Check, str | None]:
    """kubectl ≥ 1.31 (``wait --for=create``) and within one minor of the node; returns its kustomize."""
    major, minor = rel.kubernetes_minor
    needed = f"v{major}.{minor - 1}-v{major}.{minor + 1} (node is v{major}.{minor}; skew policy ±1)"
    fix = (f"Install kubectl v{major}.{minor}: curl -LO https://dl.k8s.io/release/v{major}.{minor}.0/bin/linux/amd64/"
           "kubectl && install -m 0755 kubectl ~/.local/bin/kubectl")
    result = runner.run(Command(("kubectl", "version", "--client", "-o", "json"), timeout=30))
    if result.returncode == NOT_FOUND:
        return Check("kubectl", FAIL, "not installed", needed, fix), None
    ok, out, err = result.ok, result.stdout, result.first_error_line()
    try:
        data = json.loads(out) if ok else {}
    except ValueError:
        data = {}
    version = parse_version(data.get("clientVersion", {}).get("gitVersion", ""))
    if version is None:
        return Check("kubectl", FAIL, f"cannot read its version: {err}", needed, fix), None
    text = "v{}.{}.{}".format(*version)
    kustomize = data.get("kustomizeVersion")
    if version[:2] < (1, 31):
        return Check("kubectl", FAIL, text, needed + "; ≥ v1.31 for wait --for=create", fix), kustomize
    if abs(version[1] - minor) > 1:
        return Check("kubectl", WARN, f"{text} (outside the ±1 skew of the v{major}.{minor} node)", needed, fix), \
            kustomize
    return Check("kubectl", OK, text, needed), kustomize


def check_kustomize(runner: CommandRunner, rel: Release, kubectl_kustomize: str | None) -> Check:
    needed = f"kustomize v{rel.kustomize_major}.x (upstream CI pins {rel.kustomize_pinned})"
    fix = (f"Install kustomize {rel.kustomize_pinned}: https://github.com/kubernetes-sigs/kustomize/releases/tag/"
           f"kustomize%2F{rel.kustomize_pinned}")
    standalone = check_tool(runner, "kustomize", ("kustomize", "version"), (rel.kustomize_major, 0), needed, fix)
    if standalone.found != "not installed":
        return standalone
    version = parse_version(kubectl_kustomize or "")
    if version and version[0] >= rel.kustomize_major:
        return Check("kustomize", OK, f"kubectl kustomize v{version[0]}.{version[1]}.{version[2]} (embedded)", needed)
    return Check("kustomize", FAIL, "not installed (and kubectl has no kustomize v5)", needed, fix)


def check_inotify(host: Host, rel: Release) -> Check:
    values = {}
    for key in ("max_user_instances", "max_user_watches"):
        try:
            values[key] = int((host.proc / "sys/fs/inotify" / key).read_text().strip())
        except (OSError, ValueError):
            values[key] = -1
    needed = f"max_user_instances ≥ {rel.inotify_instances}, max_user_watches ≥ {rel.inotify_watches}"
    found = f"max_user_instances={values['max_user_instances']}, max_user_watches={values['max_user_watches']}"
    if values["max_user_instances"] >= rel.inotify_instances and values["max_user_watches"] >= rel.inotify_watches:
        return Check("inotify limits", OK, found, needed)
    fix = (f"sudo sysctl fs.inotify.max_user_instances={rel.inotify_instances} "
           f"fs.inotify.max_user_watches={rel.inotify_watches}; to persist: printf "
           f"'fs.inotify.max_user_instances={rel.inotify_instances}\\nfs.inotify.max_user_watches="
           f"{rel.inotify_watches}\\n' | sudo tee /etc/sysctl.d/99-kubeflow.conf "
           "(Docker Desktop/podman machine: run it inside the VM)")
    return Check("inotify limits", FAIL, found, needed, fix)


def _meminfo_bytes(host: Host) -> int:
    try:
        for line in (host.proc / "meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return 0


def check_resources(host: Host, rel: Release, engine: dict[str, Any]) -> list[Check]:
    """Memory and CPUs as the engine sees them (a Docker Desktop VM may have less than the host)."""
    memory = int(engine.get("MemTotal") or 0) or _meminfo_bytes(host)
    cpus = int(engine.get("NCPU") or 0) or (os.cpu_count() or 0)
    where = "engine" if engine.get("MemTotal") else "host"
    raise_fix = "Give the machine (or Docker Desktop's VM) more; or install fewer components (--components)"
    mem_status = OK if memory >= rel.memory_gib * GIB * 0.95 else (WARN if memory >= 12 * GIB else FAIL)
    cpu_status = OK if cpus >= rel.cpus else (WARN if cpus >= 2 else FAIL)
    checks = [
        Check("memory", mem_status, f"{memory / GIB:.1f} GiB ({where})",
              f"≥ {rel.memory_gib} GiB advised (hosts with 12 GB fail)", "" if mem_status == OK else raise_fix),
        Check("cpus", cpu_status, f"{cpus} ({where})", f"≥ {rel.cpus} advised (2-4 with fewer components)",
              "" if cpu_status == OK else raise_fix),
    ]
    path = Path(engine.get("DockerRootDir") or host.disk_path)
    try:
        free = shutil.disk_usage(path if path.exists() else host.disk_path).free
    except OSError:
        free = 0
    disk_status = OK if free >= rel.disk_gb * 1e9 else (WARN if free >= 30e9 else FAIL)
    checks.append(Check("disk", disk_status, f"{free / 1e9:.0f} GB free at {path}",
                        f"≥ {rel.disk_gb} GB (PVCs ~65 GB plus node images)",
                        "" if disk_status == OK else "Free space, or point Docker's data-root at a larger disk"))
    return checks


def check_cgroup(host: Host) -> Check:
    if (host.cgroup / "cgroup.controllers").exists():
        return Check("cgroup", OK, "v2", "v2")
    return Check("cgroup", WARN, "v1 (no /sys/fs/cgroup/cgroup.controllers)",
                 "v2 (kubelet ≥ 1.35 refuses v1; node 1.34 still runs, deprecated)",
                 "Boot with systemd.unified_cgroup_hierarchy=1 (add it to GRUB_CMDLINE_LINUX, update-grub, reboot)")


def port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def check_ports(ports: dict[int, str] = PORTS) -> list[Check]:
    checks = []
    for port, use in ports.items():
        if port_free(port):
            checks.append(Check(f"port {port}", OK, "free", f"free for {use}"))
        else:
            checks.append(Check(f"port {port}", WARN, "in use", f"free for {use}",
                                f"Find the owner with: ss -ltnp 'sport = :{port}'; or expose on another port "
                                f"(kfbox cluster expose SERVICE --port N)"))
    return checks


def run_checks(runner: CommandRunner, rel: Release, host: Host | None = None,
               ports: dict[int, str] = PORTS) -> list[Check]:
    host = host or Host()
    engine_check, engine = check_engine(runner)
    kubectl_check, kubectl_kustomize = check_kubectl(runner, rel)
    kind_needed = f"≥ v{rel.kind_version[0]}.{rel.kind_version[1]}"
    kind_fix = (f"curl -Lo ~/.local/bin/kind https://kind.sigs.k8s.io/dl/v{rel.kind_version[0]}."
                f"{rel.kind_version[1]}.0/kind-linux-amd64 && chmod +x ~/.local/bin/kind")
    checks = [
        engine_check,
        check_tool(runner, "kind", ("kind", "version"), rel.kind_version, kind_needed, kind_fix),
        kubectl_check,
        check_kustomize(runner, rel, kubectl_kustomize),
        check_tool(runner, "helm", ("helm", "version", "--short"), (rel.helm_major, 0),
                   f"v{rel.helm_major}.x (only for --components monitoring)",
                   "Install helm: https://helm.sh/docs/intro/install/", required=False),
        check_tool(runner, "git", ("git", "--version"), (2, 0), "≥ 2.0 (clones the pinned manifests)",
                   "sudo apt-get install git"),
        check_inotify(host, rel),
        *check_resources(host, rel, engine),
        check_cgroup(host),
        *check_ports(ports),
    ]
    return checks


def failed(checks: Sequence[Check]) -> list[Check]:
    return [check for check in checks if check.status == FAIL]
