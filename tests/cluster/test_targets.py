"""The everyday commands against a remote target: ``kfbox run|runs|models|serve|deploy|predict --context``.

No Kubernetes here: the cluster is a kfbox server (its KFP, Model Registry and InferenceService
APIs) behind the loopback oauth2-proxy/Dex gateway stand-in (tests/cluster/dexgateway.py: Dex
login pages, /pipeline and /api/model_registry/v1alpha3 routes, /v1 answering 404 as on 26.03,
Host-header routing of predictions), and a fake Kubernetes API server (tests/cluster/fakekube.py)
named by a real kubeconfig, which proxies serving.kserve.io to that kfbox and records every other
server-side apply. The laptop's home has no kfbox server at all: whatever answers came from the
target.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import pytest
from typer.testing import CliRunner, Result

from kfbox.cli import main
from kfbox.cli.target import connect
from kfbox.client import ApiClient
from kfbox.cluster.contexts import Context, ContextStore
from kfbox.cluster.remote import Remote
from kfbox.cluster.target import ClusterApi
from kfbox.errors import InvalidInput, NotFound, Unavailable, Unsupported
from tests.cluster.conftest import S3_KEYS
from tests.cluster.dexgateway import PASSWORD, USER, Gateway
from tests.cluster.fakekube import KUBE_CONTEXT, FakeKube, running_kube
from tests.support import ServerProcess, run_cli

NS = "kubeflow-user-example-com"
V1ALPHA3 = "/api/model_registry/v1alpha3"
ISTIO_SCHEMA = json.loads((Path(__file__).parent / "schemas/istio-authorizationpolicy-v1.json").read_text())
PIPELINE = '''
from kfp import dsl


@dsl.component(base_image="python:3.11")
def greet(name: str) -> str:
    print(f"hello {name}")
    return name


@dsl.pipeline(name="remote-greeting")
def greeting(name: str = "cluster"):
    greet(name=name)
'''


@pytest.fixture(scope="module")
def kube(cluster_kfbox: ServerProcess) -> Iterator[FakeKube]:
    with running_kube(cluster_kfbox.url) as fake:
        yield fake


@pytest.fixture(scope="module")
def laptop(tmp_path_factory: pytest.TempPathFactory, gateway: Gateway, kube: FakeKube, s3_endpoint: str) -> Path:
    """A home with the context 'kind' (current) and a kubeconfig naming the fake API server; no server."""
    home = tmp_path_factory.mktemp("laptop")
    kube.kubeconfig(home / "kubeconfig")
    ContextStore(home).add(Context(name="kind", host=gateway.url, auth="dex", username=USER, password=PASSWORD,
                                   kube_context=KUBE_CONTEXT, s3_endpoint=s3_endpoint,
                                   s3_access_key=S3_KEYS["access"], s3_secret_key=S3_KEYS["secret"]))
    ContextStore(home).use("local")
    return home


def kfbox(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """As a user runs it: a new process, errors printed by the entry point."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("KFBOX_")}
    env.update({"KFBOX_HOME": str(home), "KUBECONFIG": str(home / "kubeconfig"), "COLUMNS": "200"})
    return subprocess.run([sys.executable, "-m", "kfbox", *args], capture_output=True, text=True, env=env,
                          timeout=180, check=False)


def kfbox_here(home: Path, *args: str) -> Result:
    """The same commands in this process (the CLI's imports paid once: kubernetes alone takes seconds)."""
    return CliRunner().invoke(main.app, list(args), env={"KFBOX_HOME": str(home), "KFBOX_URL": None,
                                                          "KUBECONFIG": str(home / "kubeconfig"), "COLUMNS": "200"})


def test_run_and_runs_list_go_through_the_dex_login(laptop: Path, gateway: Gateway, cluster_kfbox: ServerProcess,
                                                     tmp_path: Path) -> None:
    pipeline = tmp_path / "greeting.py"
    pipeline.write_text(PIPELINE)
    logins = gateway.logins
    ran = kfbox_here(laptop, "run", str(pipeline), "--context", "kind", "-o", "json")
    assert ran.exit_code == 0, ran.output
    run = json.loads(ran.stdout)
    with cluster_kfbox.client() as http:  # submitted to the cluster, with the pipeline's spec and defaults
        submitted = http.get(f"/apis/v2beta1/runs/{run['run_id']}").json()
    assert submitted["pipeline_spec"]["pipelineInfo"]["name"] == "remote-greeting"
    assert gateway.logins == logins + 1  # logged in through oauth2-proxy and Dex once, cookie cached
    # multi-user KFP: the run went to the profile namespace's Default experiment
    with cluster_kfbox.client() as http:
        experiment = http.get(f"/apis/v2beta1/experiments/{run['experiment_id']}").json()
    assert (experiment["display_name"], experiment["namespace"]) == ("Default", NS)
    listed = kfbox(laptop, "runs", "list", "--context", "kind", "-o", "json")
    assert listed.returncode == 0, listed.stderr
    assert run["run_id"] in [r["run_id"] for r in json.loads(listed.stdout)]
    assert gateway.logins == logins + 1  # the cached session cookie was reused


def test_models_list_follows_the_prefix_the_cluster_serves(laptop: Path, cluster_kfbox: ServerProcess) -> None:
    with cluster_kfbox.client() as http:
        http.post(f"{V1ALPHA3}/registered_models", json={"name": "on-the-cluster", "owner": "ops"}).raise_for_status()
    listed = kfbox_here(laptop, "models", "list", "--context", "kind", "-o", "json")
    assert listed.exit_code == 0, listed.output  # the gateway answers 404 on /v1: v1alpha3 was used
    assert "on-the-cluster" in [m["name"] for m in json.loads(listed.stdout)]


def test_predict_carries_kserves_host_header_through_the_gateway(laptop: Path, gateway: Gateway) -> None:
    answered = kfbox_here(laptop, "predict", "iris", "--context", "kind", "-d", "[[6.8, 2.8, 4.8, 1.4]]")
    assert answered.exit_code == 0, answered.output
    assert json.loads(answered.stdout)["host"] == f"iris.{NS}.example.com"
    assert gateway.hosts[-1] == f"iris.{NS}.example.com"


def test_deploy_applies_the_inference_service_and_its_mesh_policy_with_the_kubernetes_api(
        laptop: Path, cluster_kfbox: ServerProcess, kube: FakeKube) -> None:
    uri = f"s3://mlpipeline/private/{NS}/models/iris-remote/v1/model"
    with cluster_kfbox.client() as http:
        model = http.post(f"{V1ALPHA3}/registered_models", json={"name": "iris-remote"}).json()
        version = http.post(f"{V1ALPHA3}/registered_models/{model['id']}/versions",
                            json={"name": "v1", "registeredModelId": model["id"]}).json()
        http.post(f"{V1ALPHA3}/model_versions/{version['id']}/artifacts", json={
            "artifactType": "model-artifact", "name": "iris-remote", "uri": uri, "modelFormatName": "sklearn",
        }).raise_for_status()
    deployed = kfbox_here(laptop, "deploy", "iris-remote", "--version", "v1", "--context", "kind", "--no-wait",
                          "-o", "json")
    assert deployed.exit_code == 0, deployed.output
    # the InferenceService went through the Kubernetes API (fake server, kubeconfig token) into the cluster
    assert ("PATCH", f"/apis/serving.kserve.io/v1beta1/namespaces/{NS}/inferenceservices/iris-remote") \
        in kube.requests
    with cluster_kfbox.client() as http:
        isvc = http.get(f"/apis/serving.kserve.io/v1beta1/namespaces/{NS}/inferenceservices/iris-remote").json()
    predictor = isvc["spec"]["predictor"]
    assert (predictor["model"]["storageUri"], predictor["serviceAccountName"]) == (uri, "kfbox-s3")
    policies = f"/apis/security.istio.io/v1/namespaces/{NS}/authorizationpolicies"
    policy = kube.applied[f"{policies}/iris-remote-predictor-allow"]
    jsonschema.validate(policy, ISTIO_SCHEMA)
    assert policy["spec"]["selector"]["matchLabels"] == {"serving.knative.dev/service": "iris-remote-predictor"}
    secret = kube.applied[f"/api/v1/namespaces/{NS}/secrets/kfbox-s3"]
    assert secret["stringData"]["AWS_ACCESS_KEY_ID"] == S3_KEYS["access"]
    assert f"/api/v1/namespaces/{NS}/serviceaccounts/kfbox-s3" in kube.applied
    # kubectl-style apply of the example's manifest: created through the Kubernetes API, then its policy
    manifest = Path(__file__).resolve().parents[2] / "examples/iris/inference.yaml"
    applied = kfbox_here(laptop, "serve", "apply", "-f", str(manifest), "--context", "kind")
    assert applied.exit_code == 0, applied.output
    assert ("POST", f"/apis/serving.kserve.io/v1beta1/namespaces/{NS}/inferenceservices") in kube.requests
    assert f"{policies}/sklearn-inference-predictor-allow" in kube.applied
    listed = kfbox_here(laptop, "serve", "list", "--context", "kind", "-n", NS, "-o", "json")
    assert {"iris-remote", "sklearn-inference"} <= {i["metadata"]["name"] for i in json.loads(listed.stdout)}
    for name in ("iris-remote", "sklearn-inference"):
        assert kfbox_here(laptop, "serve", "delete", name, "--context", "kind").exit_code == 0


def test_a_wrong_context_name_lists_the_known_ones(laptop: Path) -> None:
    # the entry point's own error printing, in this process (tests.support.run_cli): no fresh imports
    wrong = run_cli("runs", "list", "--context", "kinf", env={"KFBOX_HOME": str(laptop),
                                                              "KUBECONFIG": str(laptop / "kubeconfig")})
    assert wrong.returncode == 1
    assert "No context 'kinf' (known: kind;" in wrong.stderr and "Traceback" not in wrong.stderr


def test_one_target_choice_flag_then_env_then_current_context_then_the_local_record(
        laptop: Path, monkeypatch: pytest.MonkeyPatch, cluster_kfbox: ServerProcess) -> None:
    for choice in ({}, {"context": "local"}):  # no current context: the local server's record, absent here
        with pytest.raises(Unavailable, match="No kfbox server is running"):
            connect(None, laptop, None, **choice)
    ContextStore(laptop).use("kind")
    try:
        current = connect(None, laptop, None)
        assert isinstance(current, ClusterApi) and current.remote.context.name == "kind"
        monkeypatch.setenv("KFBOX_URL", cluster_kfbox.url)  # env beats the current context
        assert type(connect(None, laptop, None)) is ApiClient
        monkeypatch.setenv("KFBOX_CONTEXT", "kind")
        with pytest.raises(InvalidInput, match="unset one"):
            connect(None, laptop, None)
        monkeypatch.delenv("KFBOX_URL")
        assert isinstance(connect(None, laptop, None), ClusterApi)
        assert connect("http://127.0.0.1:1", laptop, None).base_url == "http://127.0.0.1:1"  # a flag beats env
        with pytest.raises(InvalidInput, match="not --url and --context"):
            connect("http://127.0.0.1:1", laptop, None, context="kind")
        with pytest.raises(NotFound, match="known: kind"):
            connect(None, laptop, None, context="nope")
        with pytest.raises(InvalidInput, match="reserved for the local kfbox server"):
            ContextStore(laptop).add(Context(name="local", host="http://127.0.0.1:1", auth="none"))
        adhoc = connect(None, laptop, "sa-token", host="https://kf.example.org/pipeline")
        assert isinstance(adhoc, ClusterApi) and adhoc.remote.context.host == "https://kf.example.org"
        assert adhoc.remote.context.auth == "token"
    finally:
        ContextStore(laptop).use("local")


def test_kfbox_only_verbs_on_a_cluster_say_what_to_run_instead(laptop: Path) -> None:
    answer = kfbox_here(laptop, "serve", "logs", "iris", "--context", "kind")
    assert isinstance(answer.exception, Unsupported) and "kubectl logs" in answer.exception.message



def _recording(api: ClusterApi, answers: dict[tuple[str, str], Any]) -> list[httpx.Request]:
    """Swap the gateway for httpx's MockTransport (real httpx code, canned KFP answers); returns what was sent."""
    sent: list[httpx.Request] = []

    def handle(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        key = (request.method, request.url.path)
        if key not in answers:
            return httpx.Response(404, json={"message": "no route"})
        answer = answers[key](request) if callable(answers[key]) else answers[key]
        return answer if isinstance(answer, httpx.Response) else httpx.Response(200, json=answer)

    api.http = httpx.Client(base_url=api.base_url, headers=api.http.headers, transport=httpx.MockTransport(handle))
    return sent


def test_a_run_on_a_cluster_goes_to_the_profiles_default_experiment_in_the_cluster_form(tmp_path: Path) -> None:
    from kfbox.pipelines.source import load_spec

    api = ClusterApi(Remote(Context(name="kf", host="http://kf.test", auth="token", token="sa").validate(), tmp_path))
    sent = _recording(api, {("GET", "/pipeline/apis/v2beta1/experiments"): {"experiments": []},
                            ("POST", "/pipeline/apis/v2beta1/experiments"): {"experiment_id": "exp-1"},
                            ("POST", "/pipeline/apis/v2beta1/runs"): {"run_id": "run-1", "state": "PENDING"},
                            ("GET", "/pipeline/apis/v2beta1/runs"): {"runs": []}})
    spec = load_spec(f"{Path(__file__).resolve().parents[2]}/examples/iris/pipelines.py:iris_training")
    api.post("/apis/v2beta1/runs", json={"display_name": "iris", "pipeline_spec": spec})
    api.get("/apis/v2beta1/runs", params={"page_size": 5})
    lookup, made, submitted, listed = sent
    assert lookup.url.params["namespace"] == NS and "Default" in lookup.url.params["filter"]
    assert json.loads(made.content) == {"namespace": NS, "display_name": "Default"}
    body = json.loads(submitted.content)
    assert body["experiment_id"] == "exp-1"
    code = json.dumps(body["pipeline_spec"]["deploymentSpec"]["executors"]["exec-register-model"])
    assert "model-registry==0.3.14" in code and "model-registry>=0.3.15" not in code
    assert (listed.url.params["namespace"], listed.url.params["page_size"]) == (NS, "5")
    assert all(r.headers["authorization"] == "Bearer sa" for r in sent)


def test_a_prediction_tries_knatives_host_then_the_standard_one(tmp_path: Path) -> None:
    api = ClusterApi(Remote(Context(name="kf", host="http://kf.test", auth="none").validate(), tmp_path))
    sent = _recording(api, {("POST", "/v1/models/raw:predict"): lambda request: (
        httpx.Response(404) if request.headers["host"].startswith("raw.")  # Istio: no route for Knative's Host
        else {"predictions": [2]})})
    assert api.post("/serving/default/raw/v1/models/raw:predict", json={"instances": [[1, 2, 3, 4]]}) == \
        {"predictions": [2]}
    assert [r.headers["host"] for r in sent] == [f"raw.{NS}.example.com", f"raw-{NS}.example.com"]


def test_a_kubeflow_cluster_is_not_asked_for_kfboxs_healthz(tmp_path: Path) -> None:
    """``kfbox serve get`` reads the HAProxy ingress from a kfbox server's /healthz; a Kubeflow cluster has none
    (its gateway would send a Dex login), so nothing is sent and no ingress row is shown."""
    api = ClusterApi(Remote(Context(name="kf", host="http://kf.test", auth="none").validate(), tmp_path))
    sent = _recording(api, {("GET", "/healthz"): {"status": "ok", "ingress_url": "http://kf.test:8081"}})
    assert api.health() == {} and sent == []
