"""Which fields of KServe's InferenceService schema kfbox honours, refuses, or lets pass unused.

KServe's ``v1beta1`` schema (the kserve SDK's models, generated from its CRD) is the yardstick:
a field that is not in it is refused as an unknown field, as ``kubectl apply`` (strict field
validation) does on a cluster; a field kfbox cannot honour -- a transformer, an explainer, a
custom container, a container's volume mounts, ``envFrom`` or ``workingDir`` -- is refused naming
it, never silently dropped; pod-level fields that mean nothing on one machine (resources, read only
as the 100% of a cpu or memory ``scaleMetric``; nodeSelector, serviceAccountName...) are accepted unused,
so the same manifest runs here and on a cluster. ``tests/serving/test_schema.py`` checks these
tables against the installed kserve package's models, field by field (the server never
imports kserve: it is slow to import).

Example::

    check_fields(manifest["spec"])   # FieldInvalid("spec.transformer: ...", field="spec.transformer")
"""

from __future__ import annotations

import difflib
from typing import Any

from kfbox.errors import InvalidInput

SEE = "kfbox serves predictors only; run it on a Kubeflow cluster (kfbox promote) or drop the field"
FORMAT_SHORTHANDS = ("sklearn", "xgboost", "lightgbm")

# V1beta1InferenceServiceSpec
SPEC_HONOURED = frozenset({"predictor"})
SPEC_REFUSED = {
    "transformer": f"a transformer (pre/post-processing in front of the predictor) is not supported: {SEE}",
    "explainer": f"an explainer is not supported: {SEE}",
    "canary": f"canary rollout settings are not supported (use spec.predictor.canaryTrafficPercent): {SEE}",
}
SPEC_UNUSED = frozenset({"tracing"})

# V1beta1PredictorSpec: kfbox's own fields, then what it refuses; every other field of KServe's
# PredictorSpec (the pod spec's scheduling, security and resource fields) passes unused
PREDICTOR_HONOURED = frozenset({"model", "minReplicas", "maxReplicas", "scaleMetric", "scaleTarget",
                                "containerConcurrency", "canaryTrafficPercent", "annotations", *FORMAT_SHORTHANDS})
PREDICTOR_REFUSED = {
    "containers": f"a custom container predictor is not supported (use spec.predictor.model): {SEE}",
    "initContainers": f"init containers are not supported: {SEE}",
    "workerSpec": f"multi-node workers are not supported: {SEE}",
    "batcher": f"the request batcher is not supported: {SEE}",
    "logger": f"the payload logger is not supported: {SEE}",
    "storageUris": "several storage URIs are not supported; set spec.predictor.model.storageUri",
    "huggingface": "write spec.predictor.model.modelFormat.name: huggingface with spec.predictor.model.storageUri",
    **{fmt: f"model format {fmt!r} is not served by kfbox (sklearn, xgboost, lightgbm, huggingface, custom)"
       for fmt in ("onnx", "pmml", "paddle", "pytorch", "tensorflow", "triton")},
}
PREDICTOR_UNUSED = frozenset({
    "activeDeadlineSeconds", "affinity", "autoScaling", "automountServiceAccountToken",
    "deploymentStrategy", "dnsConfig", "dnsPolicy", "enableServiceLinks",
    "ephemeralContainers", "hostAliases", "hostIPC", "hostNetwork", "hostPID", "hostUsers", "hostname",
    "hostnameOverride", "imagePullSecrets", "labels", "name", "nodeName", "nodeSelector", "os", "overhead",
    "preemptionPolicy", "priority", "priorityClassName", "readinessGates", "resourceClaims", "resources",
    "restartPolicy", "runtimeClassName", "scaleMetricType", "schedulerName", "schedulingGates",
    "schedulingGroup", "securityContext", "serviceAccount", "serviceAccountName", "setHostnameAsFQDN",
    "shareProcessNamespace", "storageContainerName", "subdomain", "terminationGracePeriodSeconds", "timeout",
    "tolerations", "topologySpreadConstraints", "volumes",
})

# V1beta1ModelSpec (and the format shorthands' V1beta1SKLearnSpec etc., the same less modelFormat/runtime)
# args: the ModelServer's --model_name; ports: one named h2c turns gRPC on; env: the replica's (see kfbox.serving.spec)
MODEL_HONOURED = frozenset({"modelFormat", "storageUri", "args", "ports", "env"})
MODEL_REFUSED = {
    "image": f"a custom model server image is not supported: {SEE}",
    "command": f"a custom model server command is not supported: {SEE}",
    "storage": "storage by key (spec.predictor.model.storage) is not supported; set storageUri",
    # a replica is a process, not a pod: nothing to mount or read these from, and silently dropping them
    # would serve a model without the files or variables the manifest relies on
    "envFrom": "variables from Secrets or ConfigMaps are not supported here (kfbox runs no pods); "
               "list them in env with name and value",
    "volumeMounts": "volume mounts are not supported here (kfbox runs no pods); "
                    "give the model's files by storageUri (file://, pvc://, s3://, model-registry://)",
    "volumeDevices": "block devices are not supported here (kfbox runs no pods)",
    "workingDir": "a working directory is not supported here (kfbox runs no pods); give files by storageUri "
                  "and a custom model's folder by annotation serving.kfbox.io/python-path",
}
MODEL_UNUSED = frozenset({
    "confidential", "imagePullPolicy", "lifecycle", "livenessProbe", "name",
    "protocolVersion", "readinessProbe", "resizePolicy", "resources", "restartPolicy", "restartPolicyRules",
    "runtime", "runtimeVersion", "securityContext", "startupProbe", "stdin", "stdinOnce",
    "terminationMessagePath", "terminationMessagePolicy", "tty",
})
MODEL_FORMAT_FIELDS = frozenset({"name", "version"})


class FieldInvalid(InvalidInput):
    """A field of the manifest is refused; ``field`` is its path (the Kubernetes Status cause's field)."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.field = field


def check_fields(spec: dict[str, Any]) -> None:
    """Refuse unknown and unsupported fields of ``spec`` (an InferenceService's), naming the first one."""
    _check(spec, "spec", SPEC_HONOURED, SPEC_REFUSED, SPEC_UNUSED)
    predictor = spec.get("predictor")
    if not isinstance(predictor, dict):
        return  # the parser says what is wrong with it
    _check(predictor, "spec.predictor", PREDICTOR_HONOURED, PREDICTOR_REFUSED, PREDICTOR_UNUSED)
    for key in ("model", *FORMAT_SHORTHANDS):
        model = predictor.get(key)
        if isinstance(model, dict):
            shorthand = key != "model"
            honoured = MODEL_HONOURED - {"modelFormat"} if shorthand else MODEL_HONOURED
            unused = MODEL_UNUSED - {"runtime"} if shorthand else MODEL_UNUSED
            _check(model, f"spec.predictor.{key}", honoured, MODEL_REFUSED, unused)
            model_format = model.get("modelFormat")
            if isinstance(model_format, dict):
                _check(model_format, f"spec.predictor.{key}.modelFormat", MODEL_FORMAT_FIELDS, {}, frozenset())


def _check(obj: dict[str, Any], where: str, honoured: frozenset[str], refused: dict[str, str],
           unused: frozenset[str]) -> None:
    for key, value in obj.items():
        if value is None:
            continue  # null is absent, as in Kubernetes
        path = f"{where}.{key}"
        if key in refused:
            raise FieldInvalid(path, refused[key])
        if key not in honoured and key not in unused:
            close = difflib.get_close_matches(str(key), sorted(honoured | unused), n=1)
            hint = f"; did you mean {close[0]!r}?" if close else f"; kfbox uses {', '.join(sorted(honoured))}"
            raise FieldInvalid(path, f"unknown field {key!r} (not in KServe's v1beta1 InferenceService schema){hint}")


def mapping(value: Any, where: str) -> dict[str, Any]:
    """``value`` as a mapping, or a 400 naming ``where``."""
    if not isinstance(value, dict):
        raise InvalidInput(f"{where} must be a mapping, got {type(value).__name__}.")
    return value
