"""The Kubernetes API of one kubeconfig context, over httpx: plain REST calls and server-side apply.

The everyday commands reach a cluster's InferenceServices here (``kfbox serve|deploy --context``):
the same ``/apis/serving.kserve.io/v1beta1/...`` paths kfbox serves, sent to the API server of
the context's kubeconfig entry (``kind-kubeflow``), with its credentials. The kubeconfig is read
by the kubernetes client's own loader, so client certificates (kind), bearer tokens and exec
plugins work as with kubectl; ``KUBECONFIG`` is honoured.

Objects kfbox writes itself (the predictor's AuthorizationPolicy, the S3 Secret and
ServiceAccount) go in with server-side apply (``PATCH`` ``application/apply-patch+yaml``,
``fieldManager=kfbox``, ``force=true``): what ``kubectl apply --server-side --force-conflicts``
sends, so a re-run converges instead of failing on "already exists".

Example::

    kube = KubeApi.from_context("kind-kubeflow")
    kube.get("/apis/serving.kserve.io/v1beta1/namespaces/kubeflow-user-example-com/inferenceservices")
    kube.apply(predictor_authorization_policy("iris", "kubeflow-user-example-com"))
"""

from __future__ import annotations

import json
import os
from typing import Any

import httpx

from kfbox.client import ApiClient
from kfbox.errors import InvalidInput, NotFound

FIELD_MANAGER = "kfbox"
PLURALS = {"InferenceService": "inferenceservices", "AuthorizationPolicy": "authorizationpolicies",
           "Secret": "secrets", "ServiceAccount": "serviceaccounts", "PersistentVolumeClaim": "persistentvolumeclaims",
           "ConfigMap": "configmaps"}


def object_path(obj: dict[str, Any]) -> str:
    """``/api/v1/namespaces/NS/secrets/NAME`` or ``/apis/GROUP/VERSION/namespaces/NS/PLURAL/NAME``."""
    kind, api_version = obj.get("kind", ""), str(obj.get("apiVersion", ""))
    if kind not in PLURALS:
        raise InvalidInput(f"kfbox does not apply objects of kind {kind!r} (known: {', '.join(sorted(PLURALS))})")
    metadata = obj.get("metadata") or {}
    base = f"/api/{api_version}" if "/" not in api_version else f"/apis/{api_version}"
    return f"{base}/namespaces/{metadata['namespace']}/{PLURALS[kind]}/{metadata['name']}"


class KubeApi(ApiClient):
    """An :class:`ApiClient` bound to a Kubernetes API server; errors come from its ``Status`` bodies."""

    @classmethod
    def from_context(cls, kube_context: str, kubeconfig: str | None = None, timeout: float = 60.0) -> KubeApi:
        from kubernetes import client, config
        from kubernetes.config.config_exception import ConfigException

        configuration = client.Configuration()
        # read KUBECONFIG now: the loader's default is frozen when the kubernetes package is first imported
        kubeconfig = kubeconfig or os.environ.get("KUBECONFIG") or None
        try:
            config.load_kube_config(config_file=kubeconfig, context=kube_context,
                                    client_configuration=configuration)
        except (ConfigException, OSError, TypeError) as exc:
            raise NotFound(f"kubectl context {kube_context!r} is not usable: {exc}. "
                           "List contexts with: kubectl config get-contexts") from exc
        # the loader keeps a token (or an exec plugin's) as "Bearer x" in api_key
        auth = str((configuration.api_key or {}).get("authorization") or "")
        token = auth.removeprefix("Bearer ").strip() or None
        api = cls(configuration.host, token, timeout)
        verify: Any = configuration.ssl_ca_cert or bool(configuration.verify_ssl)
        cert = (configuration.cert_file, configuration.key_file) if configuration.cert_file else None
        api.http.close()
        api.http = httpx.Client(base_url=configuration.host, headers=dict(api.http.headers), timeout=timeout,
                                verify=verify, cert=cert)
        return api

    def apply(self, obj: dict[str, Any]) -> dict[str, Any]:
        """Server-side apply of one object (created when missing, our fields forced when present)."""
        applied: dict[str, Any] = self.request(
            "PATCH", object_path(obj), params={"fieldManager": FIELD_MANAGER, "force": "true"},
            content=json.dumps(obj), headers={"Content-Type": "application/apply-patch+yaml"})
        return applied
