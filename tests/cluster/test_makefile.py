"""The original project's make targets still exist and each runs a kfbox cluster command (make -n: nothing runs)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[2]
TARGETS = {
    "cluster": "kfbox cluster up --name kubeflow --components pipelines,kserve,model-registry --until cluster",
    "build-kubeflow": "kfbox cluster up --name kubeflow --components pipelines,kserve,model-registry",
    "kserve-server-side-forcing": "--redo kserve",
    "kubeflow-metallb": "kfbox cluster expose dashboard",
    "expose-kubeflow": "kfbox cluster expose dashboard", "expose_kubeflow": "kfbox cluster expose dashboard",
    "prometheus": ",monitoring", "grafana": ",monitoring",
    "prometheus-expose": "kfbox cluster expose prometheus", "grafana-expose": "kfbox cluster expose grafana",
    "grafana-admin-password": "kfbox cluster creds grafana",
    "model-registry": "model-registry",
    "model-registry-expose": "kfbox cluster expose registry", "expose_model-registry": "kfbox cluster expose registry",
    "minio-expose": "kfbox cluster expose s3", "minio-access-secrets": "kfbox cluster creds s3",
}


@pytest.mark.parametrize(("target", "expected"), TARGETS.items())
def test_original_make_targets_call_the_cli(target: str, expected: str) -> None:
    done = subprocess.run(["make", "-n", "-C", str(ROOT), target], capture_output=True, text=True, timeout=30,
                          check=False)
    assert done.returncode == 0, done.stderr
    assert expected in done.stdout


def test_until_stops_after_the_named_step(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "kfbox", "cluster", "up", "--dry-run", "--until", "cluster",
                           "--home", str(tmp_path)], capture_output=True, text=True, timeout=60, check=False,
                          stdin=subprocess.DEVNULL)
    assert done.returncode == 0 and "kind create cluster" in done.stdout and "cert-manager" not in done.stdout
    bad = subprocess.run([sys.executable, "-m", "kfbox", "cluster", "up", "--dry-run", "--redo", "kserv",
                          "--home", str(tmp_path)], capture_output=True, text=True, timeout=60, check=False,
                         stdin=subprocess.DEVNULL)
    assert bad.returncode == 1 and "No step 'kserv'" in bad.stderr
