"""kfbox's client API answered by a Kubeflow cluster: one routing table instead of per-command cases.

The everyday commands (``kfbox run|runs|models|serve|deploy|predict``) speak kfbox's paths to
an :class:`~kfbox.client.ApiClient`. For a remote target they get a :class:`ClusterApi`, the
same interface, which sends each path where the cluster serves it:

==========================================  ===================================================
kfbox path                                  on a Kubeflow cluster (``kind="kubeflow"``)
==========================================  ===================================================
``/apis/v2beta1/...`` (KFP)                 the gateway's ``/pipeline/apis/v2beta1/...``; lists
                                            get ``namespace=<profile>``, new experiments are
                                            made in it, a run without an experiment goes to
                                            that namespace's ``Default`` (multi-user KFP needs
                                            one), a submitted spec is the cluster form
                                            (:func:`kfbox.cluster.compile.for_cluster`)
``/api/model_registry/v1/...``              the prefix the cluster serves, probed
                                            (``/v1alpha3`` on 26.03: the version skew, explicit)
``/apis/serving.kserve.io/v1beta1/...``     the Kubernetes API of the context's kubeconfig entry
                                            (:class:`~kfbox.cluster.kubeapi.KubeApi`); an
                                            InferenceService written there also gets the ALLOW
                                            AuthorizationPolicy its predictor needs in the mesh
``.../namespaces/NS/deployments`` (deploy)  built here: model version from the cluster's
                                            registry -> InferenceService (+ S3 Secret and
                                            ServiceAccount for ``s3://``) + AuthorizationPolicy
``/serving/NS/NAME/v1|v2/...`` (predict)    the gateway's ``/v1|v2/...`` with KServe's ``Host``
                                            header (``NAME.NS.<domain>``, then ``NAME-NS.<domain>``)
==========================================  ===================================================

Every gateway call carries the context's auth (Dex session cookie, logged in again once on a
401, or a bearer token). The namespace ``default`` (kfbox's default) means the context's profile
namespace: nobody's work lives in ``default`` on Kubeflow. A ``kind="kfbox"`` context (another
kfbox server) serves kfbox's paths itself: only the registry prefix and the namespace change.

Example::

    api = ClusterApi(Remote(ContextStore(home).get("kind"), home))
    api.get("/apis/v2beta1/runs")            # -> GET /pipeline/apis/v2beta1/runs?namespace=kubeflow-user-example-com
"""

from __future__ import annotations

import json
import re
from typing import Any

from kfbox.apis import KFP, SERVING
from kfbox.apis import REGISTRY_V1 as REGISTRY
from kfbox.client import ApiClient
from kfbox.cluster.kubeapi import KubeApi
from kfbox.cluster.objects import inference_service, predictor_authorization_policy, s3_access
from kfbox.cluster.remote import Remote
from kfbox.errors import InvalidInput, KfboxError, NotFound, Unauthorized, Unsupported

S3_SECRET = "kfbox-s3"
_KFP_LISTS = {f"{KFP}/{noun}" for noun in ("runs", "experiments", "recurringruns")}  # pipelines: shared ones too
_NAMESPACED = re.compile(r"^(?P<base>/apis/serving\.kserve\.io/v1beta1/namespaces/)(?P<ns>[^/]+)(?P<rest>/.*)?$")
_SERVING_CALL = re.compile(r"^/serving/(?P<ns>[^/]+)/(?P<name>[^/]+)/(?P<rest>v[12]/.*)$")


class ClusterApi(ApiClient):
    """An :class:`ApiClient` whose kfbox paths are answered by a cluster's gateway and Kubernetes API."""

    def __init__(self, remote: Remote, timeout: float = 60.0) -> None:
        ctx = remote.context
        super().__init__(ctx.host, ctx.token if ctx.auth == "token" else None, timeout)
        self.remote = remote
        self.namespace = ctx.namespace
        self._kube: KubeApi | None = None
        self._default_experiment: str | None = None
        self._logged_in = False

    @property
    def kubeflow(self) -> bool:
        return self.remote.context.kind == "kubeflow"

    def health(self) -> dict[str, Any]:
        """A Kubeflow cluster has no kfbox ``/healthz`` (asking its gateway could start a Dex login): {}."""
        return {} if self.kubeflow else super().health()

    # --- the routing table
    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        if path == REGISTRY or path.startswith(REGISTRY + "/"):
            return self._gateway(method, self.remote.registry_prefix() + path[len(REGISTRY):], **kwargs)
        if path.startswith(("/serving/", SERVING)):
            path = self._profile_namespace(path)
        if not self.kubeflow:
            return self._gateway(method, path, **kwargs)
        if path.startswith(KFP):
            return self._pipelines(method, path, **kwargs)
        if path.startswith(SERVING):
            return self._serving(method, path, **kwargs)
        found = _SERVING_CALL.match(path)
        if found:
            return self._predict(method, found["ns"], found["name"], found["rest"], **kwargs)
        return self._gateway(method, path, **kwargs)

    def _profile_namespace(self, path: str) -> str:
        """kfbox's ``default`` namespace is the context's profile namespace on a cluster."""
        for prefix in (f"{SERVING}/namespaces/default/", "/serving/default/"):
            if path.startswith(prefix):
                return prefix.replace("/default/", f"/{self.namespace}/") + path[len(prefix):]
        return path

    # --- the gateway, with the context's auth
    def _gateway(self, method: str, path: str, **kwargs: Any) -> Any:
        if self.remote.context.auth == "dex" and not self._logged_in:
            self._set_cookies(self.remote.cookies())
        try:
            return super().request(method, path, **kwargs)
        except Unauthorized:
            if self.remote.context.auth != "dex":
                raise
            self._set_cookies(self.remote.cookies(fresh=True))  # the cached session expired (24 h)
            return super().request(method, path, **kwargs)

    def _set_cookies(self, cookies: dict[str, str]) -> None:
        for name, value in cookies.items():
            self.http.cookies.set(name, value)
        self._logged_in = True

    # --- Pipelines (multi-user KFP behind /pipeline)
    def _pipelines(self, method: str, path: str, **kwargs: Any) -> Any:
        if method == "GET" and path in _KFP_LISTS:
            kwargs["params"] = {"namespace": self.namespace, **(kwargs.get("params") or {})}
        elif method == "POST" and path == f"{KFP}/experiments":
            kwargs["json"] = {"namespace": self.namespace, **kwargs.get("json", {})}
        elif method == "POST" and path == f"{KFP}/runs":
            from kfbox.cluster.compile import for_cluster

            body = dict(kwargs.get("json") or {})
            if body.get("pipeline_spec"):
                body["pipeline_spec"] = for_cluster(body["pipeline_spec"]).spec
            if not body.get("experiment_id"):
                body["experiment_id"] = self._default_experiment_id()
            kwargs["json"] = body
        return self._gateway(method, "/pipeline" + path, **kwargs)

    def _default_experiment_id(self) -> str:
        """The profile namespace's ``Default`` experiment (kfp.Client does the same), made when missing."""
        if self._default_experiment is None:
            flt = json.dumps({"predicates": [{"key": "display_name", "operation": "EQUALS",
                                              "string_value": "Default"}]})
            found = self.get(f"{KFP}/experiments", params={"filter": flt}).get("experiments") or []
            self._default_experiment = str(found[0]["experiment_id"]) if found else str(
                self.post(f"{KFP}/experiments", json={"display_name": "Default"})["experiment_id"])
        return self._default_experiment

    # --- InferenceServices through the Kubernetes API
    def kube(self) -> KubeApi:
        if self._kube is None:
            ctx = self.remote.context
            if not ctx.kube_context:
                raise InvalidInput(f"Context {ctx.name!r} has no kubectl context for InferenceServices. Add it: "
                                   f"kfbox context add {ctx.name} --host {ctx.host} ... --kube-context kind-kubeflow")
            self._kube = KubeApi.from_context(ctx.kube_context, timeout=self.http.timeout.read or 60.0)
        return self._kube

    def _serving(self, method: str, path: str, **kwargs: Any) -> Any:
        found = _NAMESPACED.match(path)
        rest = (found["rest"] or "") if found else ""
        if found and method == "POST" and rest == "/deployments":
            return self._deploy(found["ns"], kwargs.get("json") or {})
        if rest.endswith(("/logs", "/promote", "/rollback")):
            name = rest.split("/")[2]
            hint = {"/logs": f"kubectl logs -n {found['ns'] if found else ''} -l serving.kserve.io/inferenceservice="
                             f"{name} -c kserve-container",
                    "/promote": "kubectl patch isvc ... --type merge -p '{\"spec\":{\"predictor\":"
                                "{\"canaryTrafficPercent\":100}}}'",
                    "/rollback": "kubectl patch isvc ... --type merge -p '{\"spec\":{\"predictor\":"
                                 "{\"canaryTrafficPercent\":0}}}'"}["/" + rest.rsplit("/", 1)[1]]
            raise Unsupported(f"{rest.rsplit('/', 1)[1]} is kfbox's own verb; on a cluster use: {hint}")
        answer = self.kube().request(method, path, **kwargs)
        if found and method in ("POST", "PUT", "PATCH") and isinstance(answer, dict) \
                and answer.get("kind") == "InferenceService":
            self._allow_predictor(answer)
        return answer

    def _allow_predictor(self, isvc: dict[str, Any]) -> None:
        """The mesh denies by default (global-deny-all): the predictor needs an ALLOW policy."""
        metadata = isvc["metadata"]
        mode = (metadata.get("annotations") or {}).get("serving.kserve.io/deploymentMode", "Knative")
        mode = "Standard" if mode in ("Standard", "RawDeployment") else "Knative"
        self.kube().apply(predictor_authorization_policy(metadata["name"], metadata["namespace"], mode))

    def _deploy(self, namespace: str, body: dict[str, Any]) -> dict[str, Any]:
        """``kfbox deploy`` on a cluster: the version's model artifact from the cluster's registry, served."""
        model, version = str(body.get("model") or ""), body.get("version")
        artifact = self._model_artifact(model, version)
        uri = str(artifact.get("uri") or "")
        if not uri or uri.startswith("file://"):
            raise InvalidInput(f"{model} {version or '(latest)'} has artifact URI {uri!r}, which pods cannot read. "
                               f"Copy it to the cluster first: kfbox promote {model} --version V --to "
                               f"{self.remote.context.name}")
        ctx = self.remote.context
        use_s3 = uri.startswith("s3://") and bool(ctx.s3_access_key and ctx.s3_secret_key)
        name = body.get("name") or re.sub(r"[^a-z0-9-]+", "-", model.lower()).strip("-")
        # the builder's output is checked against the kserve SDK's models in tests/cluster/test_objects.py;
        # importing kserve here would cost seconds on every deploy
        isvc = inference_service(name, namespace, uri,
                                 model_format=artifact.get("modelFormatName") or body.get("format") or "sklearn",
                                 service_account=S3_SECRET if use_s3 else None)
        if use_s3:
            for obj in s3_access(S3_SECRET, namespace, ctx.s3_cluster_endpoint, ctx.s3_access_key or "",
                                 ctx.s3_secret_key or ""):
                self.kube().apply(obj)
        applied = self.kube().apply(isvc)
        self._allow_predictor(applied)
        return {**applied, "registry": None}

    def _model_artifact(self, model: str, version: str | None) -> dict[str, Any]:
        try:
            registered = self.get(f"{REGISTRY}/registered_model", params={"name": model})
        except NotFound as exc:
            raise NotFound(f"Model {model!r} is not in the registry of context {self.remote.context.name!r}. "
                           f"Promote it: kfbox promote {model} --version V --to {self.remote.context.name}") from exc
        if version:
            found = self.get(f"{REGISTRY}/model_version", params={"name": version,
                                                                  "parentResourceId": registered["id"]})
        else:
            items = self.get(f"{REGISTRY}/registered_models/{registered['id']}/versions",
                             params={"pageSize": "1", "orderBy": "CREATE_TIME", "sortOrder": "DESC"})["items"]
            if not items:
                raise NotFound(f"Model {model!r} has no versions on context {self.remote.context.name!r}")
            found = items[0]
        artifacts = self.get(f"{REGISTRY}/model_versions/{found['id']}/artifacts")["items"]
        models = [a for a in artifacts if a.get("artifactType") == "model-artifact"]
        if not models:
            raise NotFound(f"{model} {found['name']} has no model artifact to serve")
        return dict(models[0])

    # --- predictions through the gateway
    def _predict(self, method: str, namespace: str, name: str, rest: str, **kwargs: Any) -> Any:
        """KServe routes on Host: ``NAME.NS.<domain>`` (Knative), else ``NAME-NS.<domain>`` (Standard)."""
        for mode in ("Knative", "Standard"):
            headers = {**(kwargs.get("headers") or {}), "Host": self.remote.service_host(name, mode, namespace)}
            try:
                return self._gateway(method, "/" + rest, **{**kwargs, "headers": headers})
            except NotFound:
                if mode == "Standard":
                    raise NotFound(f"No InferenceService {namespace}/{name} answers at {self.remote.context.host} "
                                   f"(Host {self.remote.service_host(name, 'Knative', namespace)} or "
                                   f"{headers['Host']}). List them with: kfbox serve list --context "
                                   f"{self.remote.context.name}") from None
            except KfboxError as exc:
                if "RBAC: access denied" in exc.message:
                    raise Unauthorized(f"The mesh denied the call to {name}: it needs an ALLOW AuthorizationPolicy "
                                       "(kfbox deploy/serve apply --context add it).") from exc
                raise
        raise AssertionError("unreachable")
