"""The InferenceService manifest (``serving.kserve.io/v1beta1``), read into what kfbox acts on.

The manifest is kept verbatim; :class:`PredictorSpec` is the part that defines a revision. How it is scaled
(the deployment mode, KServe's autoscaling fields, Knative's annotations) is read by
:mod:`kfbox.serving.scaling_spec`.
kfbox's own live under ``serving.kfbox.io/``:
``model-class`` (``module:Class``, a ``kserve.Model`` subclass), ``python-path`` (a folder
to import it from), ``enable-grpc`` and ``allow-unsafe-pickle`` (``"true"``: load pickle/joblib
files with the unrestricted unpickler; see ``kfbox.serving.unpickle``). Of the kserve ModelServer's
arguments (``spec.predictor.model.args``) ``--model_name NAME`` is honoured: the name the model is
served under (``/v1/models/NAME``, ``/v2/models/NAME``) instead of the InferenceService's; the rest
configure a server process kfbox runs itself, so they are refused naming the argument. A
container port named ``h2c``, ``grpc`` or ``grpc-*`` in ``spec.predictor.model.ports`` turns gRPC on, as
``enable-grpc`` does.
``spec.predictor.model.env`` (``name``/``value``) is the replica's environment over the server's,
e.g. ``OMP_NUM_THREADS`` (see ``kfbox.serving.native_threads``); ``valueFrom`` is refused, and so are
``envFrom``, ``volumeMounts``, ``volumeDevices`` and ``workingDir`` (``kfbox.serving.schema``).

Example::

    isvc = InferenceServiceSpec.parse(yaml.safe_load(text), default_namespace="default")
    isvc.predictor.model_format   # "sklearn"
"""

from __future__ import annotations

import dataclasses
import json
import re
from typing import Any

from kfbox.apis import MODEL_NAME_ARG
from kfbox.apis import SERVING_API_VERSION as API_VERSION
from kfbox.errors import InvalidInput
from kfbox.serving.scaling_spec import (
    DEFAULT_PANIC_THRESHOLD_PERCENTAGE,
    DEFAULT_PANIC_WINDOW_PERCENTAGE,
    DEFAULT_TARGET_UTILIZATION,
    MODE_ANNOTATION,
    read_scaling,
)
from kfbox.serving.schema import FieldInvalid, check_fields, mapping

KIND = "InferenceService"
FORMATS = ("sklearn", "xgboost", "lightgbm", "huggingface", "custom")
SHORTHAND = ("sklearn", "xgboost", "lightgbm")
NAME_RE = re.compile(r"^[a-z]([-a-z0-9]{0,61}[a-z0-9])?$")
NAMESPACE_RE = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
CLASS_RE = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")
ENV_NAME_RE = re.compile(r"^[-._a-zA-Z][-._a-zA-Z0-9]*$")  # Kubernetes' rule for an env var name
MODEL_NAME_RE = re.compile(r"^[A-Za-z0-9][-A-Za-z0-9_.]{0,252}$")  # one URL path segment, never '.' or '..'
CLASS_ANNOTATION = "serving.kfbox.io/model-class"
PATH_ANNOTATION = "serving.kfbox.io/python-path"
GRPC_ANNOTATION = "serving.kfbox.io/enable-grpc"
UNSAFE_PICKLE_ANNOTATION = "serving.kfbox.io/allow-unsafe-pickle"


@dataclasses.dataclass(frozen=True)
class PredictorSpec:
    """Everything that makes a revision: a change here means new replicas, but for the HPA's fields of a Standard
    predictor (bounds, metric, target), which its running revision takes in place
    (:func:`kfbox.serving.store.hpa_only`)."""

    model_format: str
    storage_uri: str | None
    model_class: str | None
    python_path: str | None
    min_replicas: int
    max_replicas: int
    scale_target: float
    """An int, but for a fractional ``autoscaling.knative.dev/target``."""
    scale_metric: str
    scale_window: float | None
    enable_grpc: bool
    scale_request: float = 1.0
    """For a cpu or memory ``scale_metric``: the replica's request of it (cores, bytes), the 100% of its target."""
    scale_utilization: float = DEFAULT_TARGET_UTILIZATION
    """The percent of ``scale_target`` a replica is scaled at: Knative's target utilization for ``concurrency``
    and ``rps``; 100 for ``cpu`` and ``memory`` (the HPA aims at its target itself)."""
    allow_unsafe_pickle: bool = False
    model_name: str | None = None  # --model_name; None: the InferenceService's name
    env: dict[str, str] = dataclasses.field(default_factory=dict)  # spec.predictor.model.env, name -> value
    container_concurrency: int = 0
    """``spec.predictor.containerConcurrency``: the most requests one replica is sent at once, the rest wait
    (Knative's queue-proxy); 0: no limit. Always 0 in Standard mode, where KServe has no queue-proxy."""
    initial_scale: int = 1
    """Replicas a new revision starts with before the autoscaler takes over (Knative's ``initial-scale``)."""
    panic_window_percentage: float = DEFAULT_PANIC_WINDOW_PERCENTAGE
    """The panic window as a percent of the window (Knative's ``panic-window-percentage``)."""
    panic_threshold_percentage: float = DEFAULT_PANIC_THRESHOLD_PERCENTAGE
    """Replicas the panic window wants, as a percent of those ready, that start a panic (Knative's
    ``panic-threshold-percentage``)."""
    scale_down_delay: float = 0.0
    """Seconds a higher replica count is kept after the load that asked for it is gone (``scale-down-delay``)."""

    def served_name(self, service: str) -> str:
        """The model name in the V1/V2 paths of this revision (``service`` unless ``--model_name`` set one)."""
        return self.model_name or service

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> PredictorSpec:
        return cls(**json.loads(text))


@dataclasses.dataclass(frozen=True)
class InferenceServiceSpec:
    namespace: str
    name: str
    manifest: dict[str, Any]
    predictor: PredictorSpec
    canary_percent: int | None

    def with_mode(self, mode: str) -> InferenceServiceSpec:
        """The same manifest annotated with deployment mode ``mode`` (:func:`kfbox.serving.scaling_spec.kept_mode`),
        parsed again: the mode decides the predictor's scaling defaults."""
        meta = self.manifest.get("metadata") or {}
        annotations = {**(meta.get("annotations") or {}), MODE_ANNOTATION: mode}
        return InferenceServiceSpec.parse({**self.manifest, "metadata": {**meta, "annotations": annotations}},
                                          default_namespace=self.namespace)

    @classmethod
    def parse(cls, manifest: Any, default_namespace: str = "default") -> InferenceServiceSpec:
        if not isinstance(manifest, dict):
            raise InvalidInput("An InferenceService manifest must be a mapping (YAML or JSON object).")
        if manifest.get("apiVersion") != API_VERSION or manifest.get("kind") != KIND:
            raise InvalidInput(f"Expected apiVersion {API_VERSION} and kind {KIND}, got "
                               f"{manifest.get('apiVersion')!r} / {manifest.get('kind')!r}.")
        meta = mapping(manifest.get("metadata"), "metadata")
        name = meta.get("name")
        if not isinstance(name, str) or not NAME_RE.fullmatch(name):  # fullmatch: '$' would let "name\n" in
            ascii_hint = "" if not isinstance(name, str) or name.isascii() else (
                " Kubernetes names are ASCII: spell it without accents (e.g. 'cafe' for 'café').")
            raise InvalidInput(f"metadata.name {name!r} must be a DNS label: lowercase letters, digits and '-', "
                               f"starting with a letter, at most 63 characters.{ascii_hint}")
        namespace = meta.get("namespace") or default_namespace
        if not isinstance(namespace, str) or not NAMESPACE_RE.fullmatch(namespace):
            raise InvalidInput(f"metadata.namespace {namespace!r} must be a DNS label.")
        annotations = mapping(meta.get("annotations") or {}, "metadata.annotations")
        spec = mapping(manifest.get("spec"), "spec")
        check_fields(spec)
        predictor = mapping(spec.get("predictor"), "spec.predictor")
        canary = predictor.get("canaryTrafficPercent")
        if canary is not None and (not isinstance(canary, int) or isinstance(canary, bool) or not 0 <= canary <= 100):
            raise InvalidInput(f"spec.predictor.canaryTrafficPercent {canary!r} must be an integer 0-100.")
        clean = json.loads(json.dumps(manifest))
        clean.setdefault("metadata", {})["namespace"] = namespace
        return cls(namespace=namespace, name=name, manifest=clean,
                   predictor=_predictor(predictor, annotations), canary_percent=canary)


def _predictor(predictor: dict[str, Any], annotations: dict[str, Any]) -> PredictorSpec:
    model_class = annotations.get(CLASS_ANNOTATION)
    if model_class is not None and (not isinstance(model_class, str) or not CLASS_RE.match(model_class)):
        raise InvalidInput(f"Annotation {CLASS_ANNOTATION} {model_class!r} must look like 'package.module:Class'.")
    shorthand = [key for key in SHORTHAND if key in predictor]
    if "model" in predictor:
        where = "spec.predictor.model"
        model = mapping(predictor["model"], where)
        fmt = mapping(model.get("modelFormat") or {}, "spec.predictor.model.modelFormat").get("name")
    elif shorthand:
        where = f"spec.predictor.{shorthand[0]}"
        model = mapping(predictor[shorthand[0]], where)
        fmt = shorthand[0]
    elif model_class:
        where, model, fmt = "spec.predictor.model", {}, "custom"
    else:
        raise InvalidInput("spec.predictor needs a model: set spec.predictor.model.modelFormat.name "
                           f"({', '.join(FORMATS)}) and storageUri, or annotation {CLASS_ANNOTATION}.")
    fmt = fmt or ("custom" if model_class else None)
    if fmt not in FORMATS:
        raise InvalidInput(f"Model format {fmt!r} is not served by kfbox; use one of: {', '.join(FORMATS)}.")
    if fmt == "custom" and not model_class:
        raise InvalidInput(f"Model format 'custom' needs annotation {CLASS_ANNOTATION}: 'package.module:Class'.")
    storage_uri = model.get("storageUri")
    if storage_uri is not None and not isinstance(storage_uri, str):
        raise InvalidInput(f"storageUri {storage_uri!r} must be a string.")
    if storage_uri is None and fmt != "custom":
        raise InvalidInput(f"spec.predictor.model.storageUri is required for format {fmt!r} "
                           "(file:///..., pvc://NAME/path, model-registry://MODEL/VERSION or s3://...).")
    scaling = read_scaling(predictor, annotations, model.get("resources"), where)
    grpc = str(annotations.get(GRPC_ANNOTATION, "false")).lower() in ("1", "true", "yes") or _h2c(model.get("ports"))
    unsafe = str(annotations.get(UNSAFE_PICKLE_ANNOTATION, "false")).lower()
    if unsafe not in ("true", "false"):
        raise InvalidInput(f'Annotation {UNSAFE_PICKLE_ANNOTATION} {unsafe!r} must be "true" or "false".')
    python_path = annotations.get(PATH_ANNOTATION)
    return PredictorSpec(model_format=fmt, storage_uri=storage_uri, model_class=model_class,
                         python_path=str(python_path) if python_path else None, **dataclasses.asdict(scaling),
                         enable_grpc=grpc, allow_unsafe_pickle=unsafe == "true",
                         model_name=_model_name(model.get("args"), f"{where}.args"),
                         env=_env(model.get("env"), f"{where}.env"))


def _h2c(ports: Any) -> bool:
    """A container port named for gRPC is how a KServe manifest asks its model server for it: ``h2c``
    (Knative's name) or ``grpc``/``grpc-*`` (Istio's protocol by port name, as KServe's dual-protocol
    predictors name it beside an ``http-*`` port)."""
    def grpc(name: Any) -> bool:
        return isinstance(name, str) and (name in ("h2c", "grpc") or name.startswith("grpc-"))

    return isinstance(ports, list) and any(isinstance(p, dict) and grpc(p.get("name")) for p in ports)


def _model_name(args: Any, where: str) -> str | None:
    """``--model_name NAME`` (or ``--model_name=NAME``) from the ModelServer's arguments; any other refused."""
    if args is None:
        return None
    if not isinstance(args, list) or not all(isinstance(arg, str) for arg in args):
        raise FieldInvalid(where, f"must be a list of strings, got {args!r}")
    name, rest = None, list(args)
    while rest:
        arg = rest.pop(0)
        flag, has_value, value = arg.partition("=")
        if flag != MODEL_NAME_ARG:
            raise FieldInvalid(where, f"the model server argument {arg!r} is not supported here: kfbox runs the "
                                      f"kserve ModelServer itself and honours only {MODEL_NAME_ARG} NAME")
        if not has_value:
            if not rest:
                raise FieldInvalid(where, f"{MODEL_NAME_ARG} needs a value: {MODEL_NAME_ARG} NAME")
            value = rest.pop(0)
        if not MODEL_NAME_RE.fullmatch(value):
            raise FieldInvalid(where, f"{MODEL_NAME_ARG} {value!r} must be letters, digits, '-', '_' and '.', "
                                      "starting with a letter or digit, at most 253 characters")
        name = value
    return name


def _env(entries: Any, where: str) -> dict[str, str]:
    """The container's ``env`` as the replica's environment: ``name``/``value`` pairs, later names winning as
    in a pod. ``valueFrom`` (a Secret, a ConfigMap, a field of the pod) has nothing to read here: refused."""
    if entries is None:
        return {}
    if not isinstance(entries, list):
        raise FieldInvalid(where, f"must be a list of {{name, value}} entries, got {entries!r}")
    env: dict[str, str] = {}
    for index, entry in enumerate(entries):
        at = f"{where}[{index}]"
        if not isinstance(entry, dict):
            raise FieldInvalid(at, f"must be a mapping with name and value, got {entry!r}")
        name, value = entry.get("name"), entry.get("value", "")
        if not isinstance(name, str) or not ENV_NAME_RE.fullmatch(name):
            raise FieldInvalid(f"{at}.name", f"{name!r} must be a variable name: letters, digits, '_', '-' and '.', "
                                             "not starting with a digit")
        if "valueFrom" in entry:
            raise FieldInvalid(f"{at}.valueFrom", "values from Secrets, ConfigMaps or the pod are not supported "
                                                  "here; set value (kfbox runs no pods)")
        if not isinstance(value, str):
            raise FieldInvalid(f"{at}.value", f"must be a string, got {value!r} (quote numbers in YAML)")
        unknown = set(entry) - {"name", "value"}
        if unknown:
            raise FieldInvalid(at, f"unknown field(s) {', '.join(sorted(unknown))}: an env entry has name and value")
        env[name] = value
    return env



