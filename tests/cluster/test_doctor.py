"""``kfbox cluster doctor``: for real on this machine, and on canned tool answers.

This machine has a docker client and no docker engine, no kind, and low inotify limits:
the real run must say each of those plainly, with the command that fixes it.
"""

from __future__ import annotations

import json
import socket
from pathlib import Path

from kfbox.cluster.doctor import FAIL, OK, WARN, Host, check_cgroup, check_inotify, check_ports, run_checks
from kfbox.cluster.release import release
from kfbox.cluster.runner import NOT_FOUND, RecordingRunner, Result, SubprocessRunner
from tests.support import run_cli

REL = release("26.03")


def _real_doctor() -> tuple[int, dict]:
    done = run_cli("cluster", "doctor", "--output", "json")
    return done.returncode, json.loads(done.stdout)


def test_doctor_on_this_machine_reports_the_missing_docker_engine() -> None:
    """Real tools, real /proc: the docker client is here, its engine is not (no Docker on these machines)."""
    engine_up = SubprocessRunner().run_argv("docker", "info").ok
    client_found = SubprocessRunner().run_argv("docker", "--version").returncode != NOT_FOUND
    code, report = _real_doctor()
    checks = {check["name"]: check for check in report["checks"]}
    engine = checks["container engine"]
    if engine_up:
        assert engine["status"] == OK
    else:
        assert engine["status"] == FAIL
        assert code == 1 and report["ok"] is False
        if client_found:
            assert "client" in engine["found"] and "engine is NOT reachable" in engine["found"]
            assert "Cannot connect to the Docker daemon" in engine["found"]
            assert "docker info" in engine["fix"]
    # every check names what it needs, and every failure says how to fix it
    assert {"kind", "kubectl", "kustomize", "helm", "git", "inotify limits", "memory", "cpus", "disk", "cgroup",
            "port 8080"} <= set(checks)
    for check in report["checks"]:
        assert check["needed"]
        if check["status"] != OK:
            assert check["fix"], check


def test_doctor_table_names_the_failure_and_its_fix() -> None:
    done = run_cli("cluster", "doctor")
    assert done.returncode == 1
    assert "container engine" in done.stdout and "check(s) failed" in done.stdout
    assert "fs.inotify.max_user_instances=2280" in done.stdout


def _fake_tools(runner: RecordingRunner) -> None:
    """Canned answers of a healthy workstation (a fake: there is no Docker engine or kind here)."""
    info = {"ServerVersion": "28.2.2", "NCPU": 16, "MemTotal": 64 * 1024 ** 3, "DockerRootDir": "/"}
    runner.answer(["docker", "info"], Result(0, json.dumps(info)))
    runner.answer(["kind", "version"], Result(0, "kind v0.30.0 go1.24.6 linux/amd64"))
    runner.answer(["kubectl", "version"], Result(0, json.dumps({"clientVersion": {"gitVersion": "v1.34.1"},
                                                                 "kustomizeVersion": "v5.7.1"})))
    runner.answer(["kustomize", "version"], Result(0, "v5.8.1"))
    runner.answer(["helm", "version"], Result(0, "v3.19.0+g3d8990f"))
    runner.answer(["git", "--version"], Result(0, "git version 2.47.0"))


def _proc(tmp_path: Path, instances: int, watches: int) -> Host:
    inotify = tmp_path / "proc/sys/fs/inotify"
    inotify.mkdir(parents=True)
    (inotify / "max_user_instances").write_text(f"{instances}\n")
    (inotify / "max_user_watches").write_text(f"{watches}\n")
    (tmp_path / "proc/meminfo").write_text("MemTotal:       65536000 kB\n")
    (tmp_path / "cgroup").mkdir()
    (tmp_path / "cgroup/cgroup.controllers").write_text("cpu memory pids\n")
    return Host(proc=tmp_path / "proc", cgroup=tmp_path / "cgroup", disk_path=tmp_path)


def test_versions_and_engine_resources_from_tool_answers(tmp_path: Path) -> None:
    """Fake tools (RecordingRunner with canned answers): no Docker engine or kind exists here."""
    runner = RecordingRunner(default=Result(NOT_FOUND, "", "not found"))
    _fake_tools(runner)
    checks = {c.name: c for c in run_checks(runner, REL, _proc(tmp_path, 2280, 1255360), ports={})}
    assert checks["container engine"].status == OK and "28.2.2" in checks["container engine"].found
    assert checks["kind"].status == OK and checks["kind"].found == "v0.30.0"
    assert checks["kubectl"].status == OK
    assert checks["kustomize"].found == "v5.8.1"
    assert checks["cpus"].found == "16 (engine)" and checks["memory"].status == OK
    assert checks["inotify limits"].status == OK and checks["cgroup"].status == OK
    # every probe was an argv list
    assert all(isinstance(c.argv, tuple) for c in runner.commands)


def test_old_kind_and_far_kubectl_are_flagged(tmp_path: Path) -> None:
    """Fake tools (canned answers): kind v0.29 fails (26.03 needs v0.30); kubectl 1.36 is outside the skew."""
    runner = RecordingRunner(default=Result(NOT_FOUND, "", "not found"))
    _fake_tools(runner)
    runner.answer(["kind", "version"], Result(0, "kind v0.29.0 go1.24 linux/amd64"))
    runner.answer(["kubectl", "version"], Result(0, json.dumps({"clientVersion": {"gitVersion": "v1.36.0"}})))
    checks = {c.name: c for c in run_checks(runner, REL, _proc(tmp_path, 2280, 1255360), ports={})}
    assert checks["kind"].status == FAIL and "kind-linux-amd64" in checks["kind"].fix
    assert checks["kubectl"].status == WARN and "skew" in checks["kubectl"].found


def test_engine_missing_entirely_says_install(tmp_path: Path) -> None:
    """Fake tools: neither docker nor podman exists."""
    runner = RecordingRunner(default=Result(NOT_FOUND, "", "not found"))
    check = run_checks(runner, REL, _proc(tmp_path, 1, 1), ports={})[0]
    assert check.status == FAIL and "neither docker nor podman" in check.found and "install" in check.fix.lower()


def test_inotify_limits_use_upstreams_values(tmp_path: Path) -> None:
    low = check_inotify(_proc(tmp_path / "a", 128, 8192), REL)
    assert low.status == FAIL
    assert "sudo sysctl fs.inotify.max_user_instances=2280 fs.inotify.max_user_watches=1255360" in low.fix
    assert "/etc/sysctl.d/" in low.fix
    assert check_inotify(_proc(tmp_path / "b", 2280, 1255360), REL).status == OK


def test_cgroup_v1_is_a_warning_with_the_boot_flag(tmp_path: Path) -> None:
    assert check_cgroup(Host(cgroup=tmp_path)).status == WARN
    assert "systemd.unified_cgroup_hierarchy=1" in check_cgroup(Host(cgroup=tmp_path)).fix


def test_a_busy_port_is_reported() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        (check,) = check_ports({port: "test"})
    assert check.status == WARN and check.found == "in use" and f":{port}" in check.fix
