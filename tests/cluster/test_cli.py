"""``kfbox cluster status|creds|down`` as a user runs them, with stand-in ``kubectl`` and ``kind``
programs on PATH (there is no Kubernetes or Docker engine here): they answer from canned JSON
and log their argv, so the test sees exactly what kfbox asked.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from kfbox.cluster.plan import PlanOptions, build_plan
from kfbox.cluster.state import InstallState
from tests.support import run_cli

FAKE = """#!{python}
import json, os, sys
with open(os.environ["FAKE_LOG"], "a") as log:
    log.write(json.dumps(sys.argv[1:]) + "\\n")
args = sys.argv[1:]
if "apply" in args:
    with open(os.environ["FAKE_LOG"] + ".stdin", "a") as log:
        log.write(sys.stdin.read() + "\\n---\\n")
if "deployments" in args:
    print(json.dumps({{"items": [
        {{"metadata": {{"namespace": "kubeflow", "name": "centraldashboard"}},
          "status": {{"conditions": [{{"type": "Available", "status": "True"}}]}}}},
        {{"metadata": {{"namespace": "auth", "name": "dex"}},
          "status": {{"conditions": [{{"type": "Available", "status": "False"}}]}}}}]}}))
elif "secret" in args:
    print(json.dumps({{"data": {{"accesskey": "{access}", "secretkey": "{secret}"}}}}))
elif "token" in args:
    print("eyJhbGciOi.fake.jwt")
elif args[:2] == ["delete", "cluster"]:
    print("Deleting cluster ...", file=sys.stderr)
"""


@pytest.fixture()
def tools(tmp_path: Path) -> dict[str, str]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    script = FAKE.format(python=sys.executable, access=base64.b64encode(b"profile-key").decode(),
                         secret=base64.b64encode(b"profile-secret").decode())
    for name in ("kubectl", "kind"):
        (bin_dir / name).write_text(script)
        (bin_dir / name).chmod(0o755)
    env = {k: v for k, v in os.environ.items() if not k.startswith("KFBOX_")}
    env.update({"PATH": f"{bin_dir}:{env['PATH']}", "FAKE_LOG": str(tmp_path / "calls.log"),
                "KFBOX_HOME": str(tmp_path / "home"), "COLUMNS": "200"})
    return env


def _kfbox(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    """``kfbox cluster ...`` in this process (no fresh imports); the stand-in tools are real processes."""
    return run_cli("cluster", *args, env={name: env[name] for name in ("PATH", "FAKE_LOG", "KFBOX_HOME")})


def _calls(env: dict[str, str]) -> list[list[str]]:
    return [json.loads(line) for line in Path(env["FAKE_LOG"]).read_text().splitlines()]


def test_status_without_an_install_says_how_to_start(tools: dict[str, str]) -> None:
    done = _kfbox(tools, "status")
    assert done.returncode == 1 and "kfbox cluster up" in done.stderr


def test_status_shows_installed_steps_and_what_is_not_available(tools: dict[str, str]) -> None:
    home = Path(tools["KFBOX_HOME"])
    state = InstallState.load(home, "kubeflow")
    for step in build_plan(PlanOptions(home=home)):
        if step.name in ("manifests", "cluster", "dex", "dashboard"):
            state.record(step.name, step.fingerprint())
    state.info.update({"components": ["pipelines", "kserve", "model-registry"], "manifests_ref": "26.03"})
    state.save()
    done = _kfbox(tools, "status", "-o", "json")
    assert done.returncode == 0, done.stderr
    rows = {row["step"]: row for row in json.loads(done.stdout)["steps"]}
    assert rows["dashboard"]["healthy"] is True and rows["dashboard"]["installed"]
    assert rows["dex"]["healthy"] is False and rows["dex"]["missing"] == ["auth/dex"]
    assert rows["kserve"]["installed"] == ""
    assert ["--context", "kind-kubeflow", "get", "deployments", "-A", "-o", "json"] in _calls(tools)


def test_creds_read_the_profile_s3_keys_and_a_token(tools: dict[str, str]) -> None:
    s3 = json.loads(_kfbox(tools, "creds", "s3", "-o", "json").stdout)
    assert (s3["access key"], s3["secret key"], s3["bucket"]) == ("profile-key", "profile-secret", "mlpipeline")
    token = json.loads(_kfbox(tools, "creds", "token", "-o", "json").stdout)
    assert token["token"] == "eyJhbGciOi.fake.jwt"
    dex = json.loads(_kfbox(tools, "creds", "dex", "-o", "json").stdout)
    assert dex["user"] == "user@example.com" and dex["password"] == "12341234 (upstream default)"
    calls = _calls(tools)
    assert ["--context", "kind-kubeflow", "get", "secret", "mlpipeline-minio-artifact", "-n",
            "kubeflow-user-example-com", "-o", "json"] in calls
    assert ["--context", "kind-kubeflow", "-n", "kubeflow-user-example-com", "create", "token", "default-editor",
            "--duration=24h"] in calls


def test_down_deletes_the_kind_cluster_and_forgets_the_state(tools: dict[str, str]) -> None:
    home = Path(tools["KFBOX_HOME"])
    InstallState.load(home, "dev").record("cluster", "x")
    done = _kfbox(tools, "down", "--name", "dev", "--yes")
    assert done.returncode == 0, done.stderr
    assert ["delete", "cluster", "--name", "dev"] in _calls(tools)
    assert not (home / "cluster/dev/state.json").exists()


def test_context_from_a_kind_install_takes_its_password_context_and_s3_keys(tools: dict[str, str]) -> None:
    from kfbox.cluster import dex
    from kfbox.cluster.contexts import ContextStore

    home = Path(tools["KFBOX_HOME"])
    dex.save_password(home / "cluster/kubeflow", "a-better-pass")
    done = run_cli("context", "add", "kind", "--from-cluster", "kubeflow",
                   env={name: tools[name] for name in ("PATH", "FAKE_LOG", "KFBOX_HOME")})
    assert done.returncode == 0, done.stderr
    context = ContextStore(home).get("kind")
    assert (context.host, context.password, context.kube_context) == (
        "http://127.0.0.1:8080", "a-better-pass", "kind-kubeflow")
    assert (context.s3_endpoint, context.s3_access_key, context.s3_secret_key) == (
        "http://127.0.0.1:8333", "profile-key", "profile-secret")


def test_a_new_password_on_an_installed_cluster_reruns_only_dex(tools: dict[str, str]) -> None:
    import bcrypt
    import yaml

    from kfbox.cluster import dex

    home = Path(tools["KFBOX_HOME"])
    state = InstallState.load(home, "kubeflow")
    for step in build_plan(PlanOptions(home=home, dex_password_hash="$2y$12$old")):
        state.record(step.name, step.fingerprint())
    dex.save_password(home / "cluster/kubeflow", "old-password-1")
    (home / "cluster/manifests/26.03").mkdir(parents=True)  # the renders run in the checkout
    done = _kfbox(tools, "up", "--password", "new-password-2")
    assert done.returncode == 0, done.stderr + done.stdout
    calls = _calls(tools)
    assert ["--context", "kind-kubeflow", "rollout", "restart", "deployment/dex", "-n", "auth"] in calls
    assert not any("common/cert-manager/base" in call for call in calls)
    secrets = [d for d in yaml.safe_load_all(Path(tools["FAKE_LOG"] + ".stdin").read_text())
               if d and d.get("kind") == "Secret"]
    digest = secrets[-1]["stringData"]["DEX_USER_PASSWORD"]
    assert bcrypt.checkpw(b"new-password-2", digest.encode())
    assert dex.load_password(home / "cluster/kubeflow") == ("new-password-2", False)
