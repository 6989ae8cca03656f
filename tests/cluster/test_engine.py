"""The install engine on a fake cluster (tests/cluster/fakes.py): there is no Docker engine or
Kubernetes on these machines, so kind/kubectl/git answers are canned; what is real is the
engine's ordering, waits, retries, state file, resume and dry-run text.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from kfbox.cluster.engine import APPLIED, FOUND, SKIPPED, execute, plan_text, run_plan
from kfbox.cluster.plan import build_plan
from kfbox.cluster.runner import Command, Result, SubprocessRunner
from kfbox.cluster.state import InstallState
from kfbox.cluster.steps import Action
from kfbox.errors import InvalidInput, Unavailable
from tests.cluster.fakes import COMMIT, FakeCluster, has, options
from tests.support import run_cli

ORDER = ["manifests", "cluster", "kubeflow-namespace", "cert-manager", "istio", "oauth2-proxy",
         "kubeflow-istio-resources", "multi-tenancy", "dex", "dashboard", "knative", "kserve", "pipelines", "profile",
         "model-registry"]


def _install(home: Path, runner: FakeCluster, **kw: object) -> tuple[list, list[float]]:
    sleeps: list[float] = []
    outcomes = run_plan(build_plan(options(home, **kw)), runner, InstallState.load(home, "kubeflow"),
                        sleep=sleeps.append, backoff=10.0)
    return outcomes, sleeps


def _index(runner: FakeCluster, *words: str, start: int = 0) -> int:
    for i, command in enumerate(runner.commands[start:], start):
        if all(word in command.argv for word in words):
            return i
    raise AssertionError(f"no command with {words}: {runner.lines()}")


def test_full_install_follows_upstreams_order_and_waits(tmp_path: Path) -> None:
    runner = FakeCluster()
    outcomes, sleeps = _install(tmp_path, runner)
    assert [o.step for o in outcomes] == ORDER
    assert all(o.status == APPLIED and o.attempts == 1 for o in outcomes) and sleeps == []
    # cert-manager: base, webhook pod Ready, endpoints with a Pod, only then the Issuers overlay
    base = _index(runner, "common/cert-manager/base")
    webhook = _index(runner, "app=webhook", start=base)
    endpoints = _index(runner, "app in (cert-manager,webhook)", start=webhook)
    overlay = _index(runner, "common/cert-manager/overlays/kubeflow", start=endpoints)
    assert base < webhook < endpoints < overlay
    # KServe: first pass, CRDs established and webhook serving, then applied again
    first = _index(runner, "applications/kserve/kserve")
    established = _index(runner, "crd/inferenceservices.serving.kserve.io", start=first)
    serving = _index(runner, "kserve-webhook-server-service", start=established)
    second = _index(runner, "applications/kserve/kserve", start=serving + 1)
    assert first < established < serving < second
    # Pipelines' Deployments all waited on, SeaweedFS included
    for deployment in ("ml-pipeline", "seaweedfs", "mysql", "cache-server"):
        _index(runner, f"deployment/{deployment}", "--for=condition=Available")


def test_every_command_is_an_argv_list_on_the_kind_context(tmp_path: Path) -> None:
    runner = FakeCluster("dev")
    _install(tmp_path, runner, name="dev")
    for command in runner.commands:
        assert isinstance(command.argv, tuple) and all(isinstance(a, str) for a in command.argv)
        if command.argv[0] == "kubectl" and command.argv[1] != "kustomize":
            assert command.argv[1:3] == ("--context", "kind-dev"), command.argv
    applies = [c for c in runner.commands if "apply" in c.argv]
    assert applies and all({"--server-side", "--force-conflicts"} <= set(c.argv) for c in applies)


def test_a_render_is_piped_into_its_apply(tmp_path: Path) -> None:
    runner = FakeCluster()
    _install(tmp_path, runner)
    render = _index(runner, "kustomize", "common/dex/overlays/oauth2-proxy")
    apply = runner.commands[render + 1]
    assert "apply" in apply.argv and apply.stdin == "# rendered common/dex/overlays/oauth2-proxy\n"
    assert runner.commands[render].cwd == tmp_path / "cluster/manifests/26.03"


def test_a_failed_wait_retries_the_step_with_backoff(tmp_path: Path) -> None:
    runner = FakeCluster()
    timeout = Result(1, "", "error: timed out waiting for the condition on deployments/kserve-controller-manager")
    runner.fail(has("deployment/kserve-controller-manager"), timeout, timeout)
    outcomes, sleeps = _install(tmp_path, runner)
    kserve = next(o for o in outcomes if o.step == "kserve")
    assert kserve.attempts == 3 and sleeps == [10.0, 20.0]
    # each attempt started over with the (idempotent) first-pass apply
    renders = [c for c in runner.commands if c.argv[:2] == ("kubectl", "kustomize")
               and c.argv[-1] == "applications/kserve/kserve"]
    assert len(renders) == 4  # 3 first passes + the final apply


def test_retries_run_out_with_the_command_and_its_error(tmp_path: Path) -> None:
    runner = FakeCluster()
    forever = [Result(1, "", "error: timed out waiting for the condition")] * 10
    runner.fail(has("deployment/ml-pipeline"), *forever)
    with pytest.raises(Unavailable) as caught:
        _install(tmp_path, runner)
    message = caught.value.message
    assert "Step 'pipelines' failed (after 3 attempts)" in message
    assert "deployment/ml-pipeline" in message and "timed out waiting" in message
    assert "kfbox cluster up again" in message
    state = InstallState.load(tmp_path, "kubeflow")
    assert "kserve" in state.steps and "pipelines" not in state.steps


def test_a_first_pass_apply_may_fail(tmp_path: Path) -> None:
    runner = FakeCluster()
    refused = Result(1, "", 'no matches for kind "ClusterServingRuntime" in version "serving.kserve.io/v1alpha1"')
    runner.fail(lambda c: "apply" in c.argv and (c.stdin or "").endswith("applications/kserve/kserve\n"), refused)
    outcomes, sleeps = _install(tmp_path, runner)
    assert next(o for o in outcomes if o.step == "kserve").attempts == 1 and sleeps == []


def test_an_interrupted_install_resumes_at_the_step_it_was_in(tmp_path: Path) -> None:
    runner = FakeCluster()
    runner.fail(has("crd/compositecontrollers.metacontroller.k8s.io"), KeyboardInterrupt())  # type: ignore[arg-type]
    with pytest.raises(KeyboardInterrupt):
        _install(tmp_path, runner)
    assert set(InstallState.load(tmp_path, "kubeflow").steps) == set(ORDER[:ORDER.index("pipelines")])
    again = FakeCluster(checkout=True, exists=True)
    outcomes, _ = _install(tmp_path, again)
    assert [o.status for o in outcomes[:ORDER.index("pipelines")]] == [SKIPPED] * ORDER.index("pipelines")
    assert [o.step for o in outcomes if o.status == APPLIED] == ["pipelines", "profile", "model-registry"]
    # nothing of the finished steps ran again: the first command is the pipelines step's
    assert "applications/pipeline/upstream/third-party/metacontroller/base/crd.yaml" in again.commands[0].argv


def test_a_second_run_changes_nothing(tmp_path: Path) -> None:
    _install(tmp_path, FakeCluster())
    again = FakeCluster(checkout=True, exists=True)
    outcomes, _ = _install(tmp_path, again)
    assert {o.status for o in outcomes} == {SKIPPED} and again.commands == []


def test_redo_and_changed_plans_rerun_only_what_changed(tmp_path: Path) -> None:
    _install(tmp_path, FakeCluster(), components=("model-registry",))
    # adding kserve changes model-registry's commands (the model-registry:// storage initializer)
    outcomes, _ = _install(tmp_path, FakeCluster(checkout=True, exists=True),
                           components=("kserve", "model-registry"))
    applied = [o.step for o in outcomes if o.status == APPLIED]
    assert applied == ["knative", "kserve", "model-registry"]
    outcomes = run_plan(build_plan(options(tmp_path, components=("kserve", "model-registry"))),
                        FakeCluster(checkout=True, exists=True), InstallState.load(tmp_path, "kubeflow"),
                        redo={"dex"}, sleep=lambda s: None)
    assert [o.step for o in outcomes if o.status == APPLIED] == ["dex"]


def test_an_existing_cluster_and_checkout_are_found_not_recreated(tmp_path: Path) -> None:
    runner = FakeCluster(checkout=True, exists=True)
    outcomes, _ = _install(tmp_path, runner)
    assert [o.status for o in outcomes[:2]] == [FOUND, FOUND]
    assert not any(c.argv[:2] == ("kind", "create") or "clone" in c.argv for c in runner.commands)


def test_a_checkout_at_another_commit_stops_without_retrying(tmp_path: Path) -> None:
    runner = FakeCluster()
    runner.answer(["git", "-C"], Result(0, "0123456789abcdef\n"))
    with pytest.raises(Unavailable) as caught:
        _install(tmp_path, runner)
    assert f"expected {COMMIT}" in caught.value.message and "'0123456789abcdef'" in caught.value.message
    assert not InstallState.load(tmp_path, "kubeflow").steps


def test_remove_deletes_a_partial_clone_but_never_a_real_checkout(tmp_path: Path) -> None:
    """Real git here: a partial folder goes, a checkout at another commit is refused."""
    partial = tmp_path / "cluster/manifests/26.03"
    partial.mkdir(parents=True)
    (partial / "half-written").write_text("x")
    action = Action("remove", Command(("true",)), path=partial)
    execute(action, SubprocessRunner())
    assert not partial.exists()
    partial.mkdir()
    subprocess.run(["git", "init", "-q", str(partial)], check=True)
    subprocess.run(["git", "-C", str(partial), "-c", "user.email=t@t", "-c", "user.name=t", "commit", "-q",
                    "--allow-empty", "-m", "x"], check=True)
    with pytest.raises(Exception, match="not the pinned commit"):
        execute(action, SubprocessRunner())
    assert partial.exists()


def test_dry_run_lists_every_step_its_commands_and_wait_points(tmp_path: Path) -> None:
    text = plan_text(build_plan(options(tmp_path, components=("pipelines", "kserve", "model-registry", "monitoring"),
                                        dex_password_hash="$2y$12$secret-hash")))
    headers = [line.split(":")[0].split(". ")[1] for line in text.splitlines()
               if line.startswith("# ") and ". " in line]
    assert headers == [*ORDER, "monitoring"]
    lines = text.splitlines()
    assert any(line.startswith("wait ") and "crd/inferenceservices.serving.kserve.io" in line for line in lines)
    assert "kind create cluster --name kubeflow --config - --wait 120s" in text
    assert "git -c advice.detachedHead=false clone --depth 1 --branch 26.03" in text
    assert "helm upgrade --install kfbox-monitoring prometheus-community/kube-prometheus-stack" in text
    assert "<Secret auth/dex-passwords: bcrypt> | kubectl --context kind-kubeflow apply --server-side" in text
    assert "secret-hash" not in text
    assert lines[-1].startswith("# 16 steps,") and "wait points" in lines[-1]


def test_cli_dry_run_prints_the_plan_and_changes_nothing(tmp_path: Path) -> None:
    done = run_cli("cluster", "up", "--dry-run", "--home", str(tmp_path), "--password", "a-better-pass",
                   "--components", "kserve")
    assert done.returncode == 0, done.stderr
    assert "# 1. manifests" in done.stdout and "kserve" in done.stdout and "pipelines" not in done.stdout
    assert "a-better-pass" not in done.stdout + done.stderr
    assert "default password" not in done.stderr
    assert not (tmp_path / "cluster").exists()
    default = run_cli("cluster", "up", "--dry-run", "--home", str(tmp_path))
    assert "default password '12341234'" in " ".join(default.stderr.split())


@pytest.mark.parametrize("name", ["Kubeflow", "kube_flow", "-kf", "a" * 51, "", "café"])
def test_cluster_names_are_dns1123_labels(tmp_path: Path, name: str) -> None:
    with pytest.raises(InvalidInput):
        build_plan(options(tmp_path, name=name))


def test_namespaces_are_checked() -> None:
    from kfbox.cluster.names import check_namespace

    assert check_namespace("kubeflow-user-example-com") == "kubeflow-user-example-com"
    with pytest.raises(InvalidInput, match="Namespace 'Team_A'"):
        check_namespace("Team_A")


def test_subprocess_runner_passes_arguments_literally() -> None:
    """No shell: metacharacters reach the program as text; a string argv is refused."""
    result = SubprocessRunner().run(Command(("echo", "a; touch /tmp/kfbox-pwned $(id)")))
    assert result.stdout == "a; touch /tmp/kfbox-pwned $(id)\n"
    with pytest.raises(TypeError):
        Command("kubectl get pods")  # type: ignore[arg-type]
    assert SubprocessRunner().run(Command(("kfbox-no-such-tool",))).returncode == 127
    assert SubprocessRunner().run(Command(("cat",), stdin="piped")).stdout == "piped"
    missing_cwd = SubprocessRunner().run(Command(("ls",), cwd=Path("/nonexistent/kfbox")))
    assert missing_cwd.returncode == 126 and "folder /nonexistent/kfbox does not exist" in missing_cwd.stderr


def test_a_missing_tool_stops_at_once_and_points_to_doctor(tmp_path: Path) -> None:
    runner = FakeCluster()
    runner.answer(["kind", "create"], Result(127, "", "kind: command not found"))
    with pytest.raises(Unavailable, match=r"kind: command not found\. Install it \(see: kfbox cluster doctor\)"):
        _install(tmp_path, runner)


def test_switching_the_renderer_reruns_nothing(tmp_path: Path) -> None:
    _install(tmp_path, FakeCluster())
    again = FakeCluster(checkout=True, exists=True)
    outcomes, _ = _install(tmp_path, again, renderer=("kustomize", "build"))
    assert {o.status for o in outcomes} == {SKIPPED} and again.commands == []
