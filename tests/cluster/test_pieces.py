"""Pure parts of the cluster path: kind config, Dex password, status from kubectl JSON, secrets.

Where a cluster answers (kubectl get secret/deployments), the answer is canned JSON: there is
no Kubernetes on these machines.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
from pathlib import Path

import bcrypt
import pytest
import yaml

from kfbox.cluster import access, dex
from kfbox.cluster.health import step_health
from kfbox.cluster.kindconfig import kind_config
from kfbox.cluster.plan import build_plan
from kfbox.cluster.release import release
from kfbox.cluster.runner import RecordingRunner, Result
from kfbox.errors import InvalidInput, NotFound
from tests.cluster.fakes import options


def test_kind_config_pins_the_node_and_patches_the_issuer_for_any_kubeadm_version() -> None:
    config = yaml.safe_load(kind_config(release("26.03"), workers=2))
    assert [n["role"] for n in config["nodes"]] == ["control-plane", "worker", "worker"]
    assert {n["image"] for n in config["nodes"]} == {release("26.03").node_image}
    assert "@sha256:7416a61b" in release("26.03").node_image
    (patch,) = [yaml.safe_load(p) for p in config["kubeadmConfigPatches"]]
    # no apiVersion: kind would silently skip a v1beta2 patch on a v1beta3 node (upstream's script does)
    assert "apiVersion" not in patch
    assert patch["apiServer"]["extraArgs"]["service-account-issuer"] == "https://kubernetes.default.svc"


def test_dex_hash_is_bcrypt_2y_cost_12_and_checks() -> None:
    digest = dex.hash_password("a-better-pass")
    assert digest.startswith("$2y$12$") and len(digest) == 60
    assert bcrypt.checkpw(b"a-better-pass", digest.encode()) and not bcrypt.checkpw(b"12341234", digest.encode())
    secret = yaml.safe_load(dex.secret_yaml(digest))
    assert (secret["metadata"]["namespace"], secret["metadata"]["name"]) == ("auth", "dex-passwords")
    assert secret["stringData"]["DEX_USER_PASSWORD"] == digest


def test_dex_password_is_kept_private(tmp_path: Path) -> None:
    assert dex.load_password(tmp_path) == ("12341234", True)
    path = dex.save_password(tmp_path, "a-better-pass")
    assert os.stat(path).st_mode & 0o777 == 0o600
    assert dex.load_password(tmp_path) == ("a-better-pass", False)


def _deployment(ns: str, name: str, available: bool) -> dict:
    return {"metadata": {"namespace": ns, "name": name},
            "status": {"conditions": [{"type": "Available", "status": "True" if available else "False"}]}}


def test_status_names_the_deployments_that_are_not_available(tmp_path: Path) -> None:
    steps = [s for s in build_plan(options(tmp_path)) if s.name in ("dashboard", "model-registry")]
    live = {"items": [_deployment("kubeflow", "centraldashboard", True),
                      _deployment("kubeflow", "model-registry-db", True),
                      _deployment("kubeflow", "model-registry-deployment", False)]}
    rows = {row["step"]: row for row in step_health(steps, live)}
    assert rows["dashboard"]["healthy"] is True
    assert rows["model-registry"]["missing"] == ["kubeflow/model-registry-deployment", "kubeflow/model-registry-ui"]


def test_secrets_are_read_and_decoded_with_kubectl() -> None:
    """Fake kubectl (canned Secret JSON)."""
    data = {"accesskey": base64.b64encode(b"AKIA-profile").decode(), "secretkey": base64.b64encode(b"s3cr3t").decode()}
    runner = RecordingRunner([(["kubectl"], Result(0, json.dumps({"data": data})))])
    keys = access.read_secret(runner, "kind-kubeflow", "kubeflow-user-example-com", "mlpipeline-minio-artifact")
    assert keys == {"accesskey": "AKIA-profile", "secretkey": "s3cr3t"}
    assert runner.commands[0].argv == ("kubectl", "--context", "kind-kubeflow", "get", "secret",
                                       "mlpipeline-minio-artifact", "-n", "kubeflow-user-example-com", "-o", "json")
    missing = RecordingRunner(default=Result(1, "", 'Error from server (NotFound): secrets "x" not found'))
    with pytest.raises(NotFound, match="kfbox cluster status"):
        access.read_secret(missing, "kind-kubeflow", "monitoring", "x")


def test_port_forwards_refuse_a_busy_port_and_unknown_services(tmp_path: Path) -> None:
    import socket

    with pytest.raises(InvalidInput, match="dashboard, registry, s3"):
        access.service("minio")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        busy = sock.getsockname()[1]
        from kfbox.errors import Conflict

        with pytest.raises(Conflict, match=f"Port {busy}"):
            access.start_forward(tmp_path, "kubeflow", access.SERVICES["registry"], port=busy)
    assert access.running_forwards(tmp_path, "kubeflow") == {}


FAKE_KUBECTL = """#!{python}
# a stand-in kubectl (no Kubernetes here): `port-forward ... LOCAL:REMOTE` listens on 127.0.0.1:LOCAL
import http.server, sys
port = int(sys.argv[-1].split(":")[0])
assert sys.argv[sys.argv.index("--address") + 1] == "127.0.0.1"
http.server.HTTPServer(("127.0.0.1", port), http.server.SimpleHTTPRequestHandler).serve_forever()
"""


def test_expose_tracks_its_port_forward_and_down_stops_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A fake kubectl on PATH stands in for the cluster's port-forward (no Kubernetes here)."""
    import socket
    import sys
    import time

    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "kubectl").write_text(FAKE_KUBECTL.format(python=sys.executable))
    (bin_dir / "kubectl").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    record = access.start_forward(tmp_path, "kubeflow", access.SERVICES["registry"], port=port)
    assert record["url"] == f"http://127.0.0.1:{port}"
    assert access.start_forward(tmp_path, "kubeflow", access.SERVICES["registry"], port=port) == record
    assert set(access.running_forwards(tmp_path, "kubeflow")) == {"registry"}
    assert access.stop_forwards(tmp_path, "kubeflow") == ["registry"]
    pid = int(record["pid"])
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and Path(f"/proc/{pid}").exists():
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)
        time.sleep(0.05)
    assert not Path(f"/proc/{pid}").exists()  # the port-forward process is gone, not just forgotten
