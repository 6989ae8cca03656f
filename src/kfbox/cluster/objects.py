"""Kubernetes objects kfbox writes itself for a cluster: InferenceService, its S3 access, its Istio allow rule, PVC.

Every builder returns a plain dict (what ``kubectl apply`` and the Kubernetes client take);
:func:`check_kserve` validates KServe objects strictly against the kserve SDK's models
(unknown fields and wrong types are errors, unlike the SDK's lenient deserializer).

On Kubeflow the mesh denies everything by default (``global-deny-all``), so a predictor is
unreachable until an ALLOW policy selects it (kubeflow/manifests#3013); upstream CI applies
exactly this one: workload-scoped by label, ``rules: [{}]``.

Example::

    isvc = inference_service("iris", "kubeflow-user-example-com", "s3://mlpipeline/models/iris/v1",
                             model_format="sklearn", service_account="kfbox-s3")
    check_kserve(isvc)
"""

from __future__ import annotations

import re
from typing import Any

from kfbox.cluster.names import check_namespace
from kfbox.errors import InvalidInput
from kfbox.names import check_dns1123_label

MANAGED = {"app.kubernetes.io/managed-by": "kfbox"}
KNATIVE, STANDARD = "Knative", "Standard"
"""KServe 0.16 names of the deployment modes (were Serverless / RawDeployment)."""


def inference_service(name: str, namespace: str, storage_uri: str, *, model_format: str,
                      service_account: str | None = None, mode: str = KNATIVE, min_replicas: int = 1,
                      cpu: str = "100m", memory: str = "256Mi", annotations: dict[str, str] | None = None
                      ) -> dict[str, Any]:
    check_dns1123_label(name)
    check_namespace(namespace)
    if mode not in (KNATIVE, STANDARD):
        raise InvalidInput(f"Deployment mode {mode!r} is not one of {KNATIVE}, {STANDARD}")
    model: dict[str, Any] = {"modelFormat": {"name": model_format}, "storageUri": storage_uri,
                             "resources": {"requests": {"cpu": cpu, "memory": memory},
                                           "limits": {"cpu": "1", "memory": "1Gi"}}}
    predictor: dict[str, Any] = {"minReplicas": min_replicas, "model": model}
    if service_account:
        predictor["serviceAccountName"] = check_dns1123_label(service_account, kind="ServiceAccount")
    return {"apiVersion": "serving.kserve.io/v1beta1", "kind": "InferenceService",
            "metadata": {"name": name, "namespace": namespace, "labels": dict(MANAGED),
                         "annotations": {"serving.kserve.io/deploymentMode": mode,
                                         "serving.kserve.io/enable-prometheus-scraping": "true",
                                         **(annotations or {})}},
            "spec": {"predictor": predictor}}


def predictor_authorization_policy(name: str, namespace: str, mode: str = KNATIVE) -> dict[str, Any]:
    """ALLOW traffic to one predictor (Knative: by its Knative service; Standard: by the ISVC label)."""
    selector = ({"serving.knative.dev/service": f"{name}-predictor"} if mode == KNATIVE
                else {"serving.kserve.io/inferenceservice": name})
    return {"apiVersion": "security.istio.io/v1", "kind": "AuthorizationPolicy",
            "metadata": {"name": f"{name}-predictor-allow", "namespace": check_namespace(namespace),
                         "labels": dict(MANAGED)},
            "spec": {"action": "ALLOW", "selector": {"matchLabels": selector}, "rules": [{}]}}


def s3_access(name: str, namespace: str, endpoint: str, access_key: str, secret_key: str,
              use_https: bool = False, region: str = "us-east-1") -> list[dict[str, Any]]:
    """Secret + ServiceAccount KServe's storage initializer reads for ``s3://`` URIs.

    ``endpoint`` is host:port as seen from inside the cluster (``seaweedfs.kubeflow:8333``).
    """
    check_dns1123_label(name, kind="Secret")
    annotations = {"serving.kserve.io/s3-endpoint": endpoint, "serving.kserve.io/s3-usehttps": "1" if use_https
                   else "0", "serving.kserve.io/s3-region": region, "serving.kserve.io/s3-useanoncredential": "false"}
    secret = {"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
              "metadata": {"name": name, "namespace": check_namespace(namespace), "labels": dict(MANAGED),
                           "annotations": annotations},
              "stringData": {"AWS_ACCESS_KEY_ID": access_key, "AWS_SECRET_ACCESS_KEY": secret_key}}
    account = {"apiVersion": "v1", "kind": "ServiceAccount",
               "metadata": {"name": name, "namespace": namespace, "labels": dict(MANAGED)},
               "secrets": [{"name": name}]}
    return [secret, account]


def model_pvc(name: str, namespace: str, size: str = "1Gi", storage_class: str | None = None) -> dict[str, Any]:
    """The PVC the iris pipeline writes models to (``pvc://NAME/...`` storage URIs)."""
    if not re.fullmatch(r"[0-9]+(\.[0-9]+)?(Ki|Mi|Gi|Ti|k|M|G|T)?", size):
        raise InvalidInput(f"PVC size {size!r} is not a Kubernetes quantity (e.g. 1Gi)")
    spec: dict[str, Any] = {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": size}}}
    if storage_class:
        spec["storageClassName"] = storage_class
    return {"apiVersion": "v1", "kind": "PersistentVolumeClaim",
            "metadata": {"name": check_dns1123_label(name, kind="PersistentVolumeClaim"),
                         "namespace": check_namespace(namespace), "labels": dict(MANAGED)},
            "spec": spec}


_PRIMITIVES: dict[str, tuple[type, ...]] = {"str": (str,), "int": (int,), "float": (int, float), "bool": (bool,),
                                            "datetime": (str,), "date": (str,)}


def _model_class(name: str) -> Any:
    import kserve.models
    import kubernetes.client.models

    klass = getattr(kserve.models, name, None) or getattr(kubernetes.client.models, name, None)
    if klass is None:
        raise InvalidInput(f"No model named {name} in the kserve or kubernetes SDKs")
    return klass


def model_errors(value: Any, type_name: str, path: str = "") -> list[str]:
    """Where ``value`` does not fit the SDK model ``type_name`` (strict: unknown fields are errors)."""
    if type_name == "object":
        return []
    if type_name.startswith("list["):
        if not isinstance(value, list):
            return [f"{path}: expected a list, got {type(value).__name__}"]
        return [e for i, item in enumerate(value) for e in model_errors(item, type_name[5:-1], f"{path}[{i}]")]
    if type_name.startswith("dict("):
        if not isinstance(value, dict):
            return [f"{path}: expected a map, got {type(value).__name__}"]
        inner = type_name[5:-1].split(",", 1)[1].strip()
        return [e for key, item in value.items() for e in model_errors(item, inner, f"{path}.{key}")]
    if type_name in _PRIMITIVES:
        kinds = _PRIMITIVES[type_name]
        if not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds):
            return [f"{path}: expected {type_name}, got {value!r}"]
        return []
    klass = _model_class(type_name)
    if not isinstance(value, dict):
        return [f"{path}: expected a {type_name} object, got {value!r}"]
    by_json = {json_key: attr for attr, json_key in klass.attribute_map.items()}
    errors = []
    for key, item in value.items():
        if key not in by_json:
            errors.append(f"{path}.{key}: unknown field of {type_name}")
        else:
            errors += model_errors(item, klass.openapi_types[by_json[key]], f"{path}.{key}")
    if not errors:
        try:  # the SDK's own setters check required fields and enums
            klass(**{by_json[key]: item for key, item in value.items()})
        except (ValueError, TypeError) as exc:
            errors.append(f"{path or type_name}: {exc}")
    return errors


def check_kserve(obj: dict[str, Any]) -> dict[str, Any]:
    """``obj`` when it is a valid KServe object for the kserve SDK, else InvalidInput listing every error."""
    kind, version = obj.get("kind", ""), str(obj.get("apiVersion", "")).rsplit("/", 1)[-1]
    type_name = f"{version.capitalize()}{kind}"
    errors = model_errors(obj, type_name)
    if kind == "InferenceService" and not (obj.get("spec") or {}).get("predictor"):
        errors.append(".spec.predictor: required")
    if errors:
        raise InvalidInput(f"{kind} {obj.get('metadata', {}).get('name')!r} is invalid: " + "; ".join(errors))
    return obj
