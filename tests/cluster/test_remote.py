"""The remote target against a loopback gateway that behaves like Kubeflow's (oauth2-proxy + Dex
login pages + Istio routing; our own test server, no Kubernetes here) in front of a real kfbox
server standing in for the cluster's APIs.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from kfbox.cluster.contexts import Context, ContextStore
from kfbox.cluster.remote import SESSION_COOKIE, Remote, dex_login, installed_client_prefix
from kfbox.errors import InvalidInput, NotFound, Unauthorized, Unavailable
from tests.cluster.dexgateway import PASSWORD, TOKEN, USER, Gateway, running_gateway
from tests.support import ServerProcess, run_cli


def _context(gateway: Gateway, **kw: object) -> Context:
    values: dict[str, object] = {"name": "kind", "host": gateway.url, "auth": "dex", "username": USER,
                                 "password": PASSWORD}
    values.update(kw)
    return Context(**values).validate()  # type: ignore[arg-type]


def test_dex_login_follows_oauth2_proxy_and_dex_to_a_session_cookie(gateway: Gateway) -> None:
    before = gateway.logins
    cookies = dex_login(gateway.url, USER, PASSWORD)
    assert SESSION_COOKIE in cookies and cookies[SESSION_COOKIE] in gateway.sessions
    assert gateway.logins == before + 1


def test_dex_login_with_a_wrong_password_says_so(gateway: Gateway) -> None:
    with pytest.raises(Unauthorized, match="wrong user or password"):
        dex_login(gateway.url, USER, "12341234")


def test_dex_login_to_nothing_says_to_expose_the_gateway() -> None:
    with running_gateway() as gw:
        url = gw.url
    with pytest.raises(Unavailable, match="kfbox cluster expose dashboard"):
        dex_login(url, USER, PASSWORD, timeout=5)


def test_registry_prefix_is_probed_and_the_skew_is_explicit(gateway: Gateway, tmp_path: Path) -> None:
    remote = Remote(_context(gateway), tmp_path)
    assert remote.registry_prefix() == "/api/model_registry/v1alpha3"
    versions = remote.registry_versions()
    assert versions["python_client"] == installed_client_prefix() == "/api/model_registry/v1"
    assert versions["compatible"] is False and "serves /api/model_registry/v1alpha3" in versions["note"]
    page = remote.call("GET", "/api/model_registry/v1alpha3/registered_models")
    assert page["items"] == [] or isinstance(page["items"], list)


def test_registry_prefix_of_a_kfbox_target_is_found_directly(cluster_kfbox: ServerProcess, tmp_path: Path) -> None:
    remote = Remote(Context(name="box", host=cluster_kfbox.url, auth="none", kind="kfbox").validate(), tmp_path)
    assert remote.registry_prefix() == "/api/model_registry/v1alpha3"


def test_no_registry_is_a_clear_error(tmp_path: Path) -> None:
    with running_gateway(backend=None) as gw:
        remote = Remote(_context(gw), tmp_path)
        with pytest.raises(NotFound, match="--components model-registry"):
            remote.registry_prefix()


def test_an_expired_session_logs_in_again_once(gateway: Gateway, tmp_path: Path) -> None:
    remote = Remote(_context(gateway), tmp_path)
    remote.call("GET", "/api/model_registry/v1alpha3/registered_models")
    cached = tmp_path / "contexts/kind.cookies"
    assert os.stat(cached).st_mode & 0o777 == 0o600
    logins = gateway.logins
    remote.call("GET", "/api/model_registry/v1alpha3/registered_models")
    assert gateway.logins == logins  # the cached cookie was reused
    gateway.expire_sessions()
    remote.call("GET", "/api/model_registry/v1alpha3/registered_models")
    assert gateway.logins == logins + 1


def test_a_service_account_token_is_sent_as_bearer(gateway: Gateway, tmp_path: Path) -> None:
    remote = Remote(_context(gateway, auth="token", token=TOKEN, password=None), tmp_path)
    assert remote.registry_prefix() == "/api/model_registry/v1alpha3"
    bad = Remote(_context(gateway, auth="token", token="not-it", password=None), tmp_path)
    with pytest.raises(Unauthorized):
        bad.registry_prefix()


def test_kfp_client_reaches_pipelines_through_the_gateway_with_the_cookie(gateway: Gateway, tmp_path: Path) -> None:
    client = Remote(_context(gateway), tmp_path).kfp_client()
    experiment = client.create_experiment("promoted-from-laptop", namespace="kubeflow-user-example-com")
    listed = client.list_experiments(namespace="kubeflow-user-example-com").experiments or []
    assert experiment.experiment_id in [e.experiment_id for e in listed]
    token_client = Remote(_context(gateway, auth="token", token=TOKEN, password=None), tmp_path).kfp_client()
    assert token_client.get_experiment(experiment_id=experiment.experiment_id).display_name == "promoted-from-laptop"


def test_predictions_carry_the_host_header_kserve_routes_on(gateway: Gateway, tmp_path: Path) -> None:
    remote = Remote(_context(gateway), tmp_path)
    answer = remote.predict("iris", {"instances": [[6.8, 2.8, 4.8, 1.4]]})
    assert answer["host"] == "iris.kubeflow-user-example-com.example.com"
    assert remote.service_host("iris", mode="Standard") == "iris-kubeflow-user-example-com.example.com"
    with pytest.raises(NotFound):
        remote.predict("iris", {"instances": [[1, 2, 3, 4]]}, mode="Standard")


def test_contexts_are_saved_private_and_listed_without_secrets(tmp_path: Path) -> None:
    store = ContextStore(tmp_path)
    store.add(Context(name="kind", host="http://127.0.0.1:8080/", password="pw-123456"))
    store.add(Context(name="prod", host="https://kubeflow.example.org", auth="token", token="jwt"),
              make_current=False)
    assert store.current() == "kind" and store.get().host == "http://127.0.0.1:8080"
    assert os.stat(tmp_path / "contexts.json").st_mode & 0o777 == 0o600
    assert "pw-123456" not in repr(store.get("kind"))
    assert store.use("prod").auth == "token" and store.current() == "prod"
    assert [c.public()["token"] for c in store.list()] == [None, "(set)"]
    with pytest.raises(NotFound, match="known: kind, prod"):
        store.get("staging")
    for bad in (Context(name="Bad_Name", host="http://x"), Context(name="x", host="ftp://x"),
                Context(name="x", host="http://x", auth="token"), Context(name="x", host="http://x", auth="dex")):
        with pytest.raises(InvalidInput):
            bad.validate()


def test_context_cli_add_use_list(tmp_path: Path, gateway: Gateway) -> None:
    def kfbox(*args: str) -> subprocess.CompletedProcess[str]:
        return run_cli(*args, env={"KFBOX_HOME": str(tmp_path)})  # in this process: no fresh imports

    added = kfbox("context", "add", "kind", "--host", gateway.url, "--auth", "dex", "--password", PASSWORD,
                  "--check")
    assert added.returncode == 0, added.stderr
    assert "/api/model_registry/v1alpha3" in added.stdout
    assert kfbox("context", "add", "prod", "--host", "https://kf.example.org", "--auth", "token",
                 "--token", "jwt", "--no-use").returncode == 0
    listed = json.loads(kfbox("context", "list", "-o", "json").stdout)
    assert [(c["name"], c["current"]) for c in listed] == [("kind", True), ("prod", False)]
    assert PASSWORD not in json.dumps(listed)
    assert kfbox("context", "use", "prod").returncode == 0
    assert json.loads(kfbox("context", "list", "-o", "json").stdout)[1]["current"] is True
    wrong = kfbox("context", "add", "bad", "--host", gateway.url, "--auth", "dex", "--password", "nope", "--check")
    assert wrong.returncode == 1 and "wrong user or password" in wrong.stderr
