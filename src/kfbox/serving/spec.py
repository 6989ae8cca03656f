"""The InferenceService manifest (``serving.kserve.io/v1beta1``), read into what kfbox acts on.

The manifest is kept verbatim; :class:`PredictorSpec` is the part that defines a revision.
Knative's autoscaling annotations are honoured: ``autoscaling.knative.dev/window`` (the idle
window before scaling down, e.g. ``"2s"``) and ``autoscaling.knative.dev/target-utilization-percentage``
(the percent of ``scaleTarget`` the KPA aims at, 1-100, default 70 as Knative's config-autoscaler
``container-concurrency-target-percentage``; for ``concurrency`` and ``rps`` only, as Knative's KPA), in
``metadata.annotations`` or ``spec.predictor.annotations`` (which win, as on the Knative revision KServe writes).
In Knative mode, so are those KServe lets through to the revision: ``target`` and ``metric`` where
``scaleTarget`` / ``scaleMetric`` are unset (KServe writes those over them), ``initial-scale``,
``panic-window-percentage`` and ``scale-down-delay`` (:mod:`kfbox.serving.autoscaler`), each refused outside
Knative's bounds naming it; KServe drops a user's ``min-scale`` / ``max-scale`` (``minReplicas`` /
``maxReplicas`` say them), and so does kfbox. Standard mode makes no Knative revision: none of these count there.
kfbox's own live under ``serving.kfbox.io/``:
``model-class`` (``module:Class``, a ``kserve.Model`` subclass), ``python-path`` (a folder
to import it from), ``enable-grpc`` and ``allow-unsafe-pickle`` (``"true"``: load pickle/joblib
files with the unrestricted unpickler; see ``kfbox.serving.unpickle``). Of the kserve ModelServer's
arguments (``spec.predictor.model.args``) ``--model_name NAME`` is honoured: the name the model is
served under (``/v1/models/NAME``, ``/v2/models/NAME``) instead of the InferenceService's; the rest
configure a server process kfbox runs itself, so they are refused naming the argument. A
container port named ``h2c``, ``grpc`` or ``grpc-*`` in ``spec.predictor.model.ports`` turns gRPC on, as
``enable-grpc`` does.
``spec.predictor.containerConcurrency`` (0-1000, Knative mode) is a replica's hard limit of requests at once
(:meth:`kfbox.serving.pool.ReplicaPool.pick`, HAProxy's per-server ``maxconn``) and caps a ``concurrency``
target, as Knative's ResolveMetricTarget: ``min(scaleTarget, containerConcurrency)``, or ``containerConcurrency``
itself when ``scaleTarget`` is unset; KServe ignores it in Standard mode (no queue-proxy), and so does kfbox.
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
import math
import re
from typing import Any

from kfbox.apis import MODEL_NAME_ARG
from kfbox.apis import SERVING_API_VERSION as API_VERSION
from kfbox.durations import parse_duration
from kfbox.errors import InvalidInput
from kfbox.serving.schema import FieldInvalid, check_fields

KIND = "InferenceService"
FORMATS = ("sklearn", "xgboost", "lightgbm", "huggingface", "custom")
SHORTHAND = ("sklearn", "xgboost", "lightgbm")
NAME_RE = re.compile(r"^[a-z]([-a-z0-9]{0,61}[a-z0-9])?$")
NAMESPACE_RE = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
CLASS_RE = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")
ENV_NAME_RE = re.compile(r"^[-._a-zA-Z][-._a-zA-Z0-9]*$")  # Kubernetes' rule for an env var name
MODEL_NAME_RE = re.compile(r"^[A-Za-z0-9][-A-Za-z0-9_.]{0,252}$")  # one URL path segment, never '.' or '..'
WINDOW_ANNOTATION = "autoscaling.knative.dev/window"
UTILIZATION_ANNOTATION = "autoscaling.knative.dev/target-utilization-percentage"
TARGET_ANNOTATION = "autoscaling.knative.dev/target"
METRIC_ANNOTATION = "autoscaling.knative.dev/metric"
INITIAL_SCALE_ANNOTATION = "autoscaling.knative.dev/initial-scale"
PANIC_WINDOW_ANNOTATION = "autoscaling.knative.dev/panic-window-percentage"
SCALE_DOWN_DELAY_ANNOTATION = "autoscaling.knative.dev/scale-down-delay"
LEGACY_KEYS = {INITIAL_SCALE_ANNOTATION: "autoscaling.knative.dev/initialScale",
               PANIC_WINDOW_ANNOTATION: "autoscaling.knative.dev/panicWindowPercentage",
               SCALE_DOWN_DELAY_ANNOTATION: "autoscaling.knative.dev/scaleDownDelay"}
"""The older spellings Knative still reads (its ``kmap.KeyPriority``), where the new key is unset."""
TARGET_MIN = 0.01  # Knative's TargetMin
DEFAULT_PANIC_WINDOW_PERCENTAGE = 10.0  # Knative's config-autoscaler panic-window-percentage
PANIC_WINDOW_PERCENTAGE_BOUNDS = (1.0, 100.0)
MAX_SCALE_DOWN_DELAY = 3600.0  # Knative's WindowMax: 1h
DEFAULT_TARGET_UTILIZATION = 70.0
"""Knative's config-autoscaler ``container-concurrency-target-percentage`` (and its rps twin): the KPA aims at
70% of the target, leaving headroom for a burst before the next replica is up."""
MODE_ANNOTATION = "serving.kserve.io/deploymentMode"
KNATIVE, STANDARD = "Knative", "Standard"
LEGACY_MODES = {"Serverless": KNATIVE, "RawDeployment": STANDARD}
"""KServe's ParseDeploymentMode: the older names of the modes."""
DEFAULT_MODE = KNATIVE
"""KServe's inferenceservice-config ships ``defaultDeploymentMode: Serverless``."""
AUTOSCALER_CLASS = "serving.kserve.io/autoscalerClass"
AUTOSCALER_CLASSES = ("hpa", "external", "keda", "none")
"""KServe's AutoscalerAllowedClassList."""
KNATIVE_CLASS = "autoscaling.knative.dev/class"
KNATIVE_HPA = "hpa.autoscaling.knative.dev"
""":data:`KNATIVE_CLASS` naming Knative's HPA class: Knative mode scaled by an HPA."""
CLASS_ANNOTATION = "serving.kfbox.io/model-class"
PATH_ANNOTATION = "serving.kfbox.io/python-path"
GRPC_ANNOTATION = "serving.kfbox.io/enable-grpc"
UNSAFE_PICKLE_ANNOTATION = "serving.kfbox.io/allow-unsafe-pickle"
DEFAULT_SCALE_TARGET = 100  # Knative's container-concurrency-target-default
MAX_CONTAINER_CONCURRENCY = 1000
"""Knative's config-defaults ``container-concurrency-max-limit``: its webhook refuses a revision's
``containerConcurrency`` above it (and below 0)."""
DEFAULT_RPS_TARGET = 200  # Knative's requests-per-second-target-default
DEFAULT_UTILIZATION_TARGET = 80  # KServe's DefaultCPUUtilization: a percent of the replica's resource request
SCALE_METRICS = ("concurrency", "rps", "cpu", "memory")
"""KServe's metrics: Knative's KPA ones (in flight, per second) and the HPA's (a percent of the request)."""
UTILIZATION_METRICS = ("cpu", "memory")
DEFAULT_REQUESTS = {"cpu": 1.0, "memory": 2.0 * 2**30}
"""KServe's default resource requests of a predictor container (its inferenceservice config: 1 CPU, 2Gi)."""
QUANTITY_RE = re.compile(r"^([0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:(m|k|M|G|T|P|E|Ki|Mi|Gi|Ti|Pi|Ei)|[eE]([-+]?[0-9]+))?$")
QUANTITY_SUFFIXES = {None: 1.0, "m": 1e-3, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "P": 1e15, "E": 1e18,
                     "Ki": 2.0**10, "Mi": 2.0**20, "Gi": 2.0**30, "Ti": 2.0**40, "Pi": 2.0**50, "Ei": 2.0**60}


@dataclasses.dataclass(frozen=True)
class PredictorSpec:
    """Everything that makes a revision: a change here means new replicas."""

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
        """The same manifest annotated with deployment mode ``mode`` (see :func:`kept_mode`), parsed again: the
        mode decides the predictor's scaling defaults."""
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
        meta = _mapping(manifest.get("metadata"), "metadata")
        name = meta.get("name")
        if not isinstance(name, str) or not NAME_RE.fullmatch(name):  # fullmatch: '$' would let "name\n" in
            ascii_hint = "" if not isinstance(name, str) or name.isascii() else (
                " Kubernetes names are ASCII: spell it without accents (e.g. 'cafe' for 'café').")
            raise InvalidInput(f"metadata.name {name!r} must be a DNS label: lowercase letters, digits and '-', "
                               f"starting with a letter, at most 63 characters.{ascii_hint}")
        namespace = meta.get("namespace") or default_namespace
        if not isinstance(namespace, str) or not NAMESPACE_RE.fullmatch(namespace):
            raise InvalidInput(f"metadata.namespace {namespace!r} must be a DNS label.")
        annotations = _mapping(meta.get("annotations") or {}, "metadata.annotations")
        spec = _mapping(manifest.get("spec"), "spec")
        check_fields(spec)
        predictor = _mapping(spec.get("predictor"), "spec.predictor")
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
        model = _mapping(predictor["model"], where)
        fmt = _mapping(model.get("modelFormat") or {}, "spec.predictor.model.modelFormat").get("name")
    elif shorthand:
        where = f"spec.predictor.{shorthand[0]}"
        model = _mapping(predictor[shorthand[0]], where)
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
    standard = deployment_mode(annotations) == STANDARD
    min_replicas = _int(predictor.get("minReplicas", 1), "minReplicas", 0)
    if standard:  # KServe's HPA reconciler: a Standard predictor keeps at least one replica, whatever is asked
        min_replicas = max(min_replicas, 1)
    max_default = max(min_replicas, 1)
    max_replicas = _int(predictor.get("maxReplicas", max_default), "maxReplicas", 0) or max_default
    if max_replicas < min_replicas:
        raise InvalidInput(f"spec.predictor.maxReplicas {max_replicas} is below minReplicas {min_replicas}.")
    hpa = standard or annotations.get(KNATIVE_CLASS) == KNATIVE_HPA  # KServe's HPA, or Knative's HPA class
    # Knative reads its annotations on the revision, where KServe writes the predictor's over the isvc's
    revision = {**annotations, **_mapping(predictor.get("annotations") or {}, "spec.predictor.annotations")}
    knative = {} if standard else revision  # Standard mode makes no Knative revision: nothing reads these there
    # KServe writes scaleMetric and scaleTarget over the user's metric and target annotations: those count only
    # where these fields are unset
    annotated_metric = None if "scaleMetric" in predictor else _metric(knative.get(METRIC_ANNOTATION), hpa)
    metric = predictor.get("scaleMetric", annotated_metric or ("cpu" if hpa else "concurrency"))
    if metric not in SCALE_METRICS:
        raise InvalidInput(f"spec.predictor.scaleMetric {metric!r} is not one of KServe's: {', '.join(SCALE_METRICS)}.")
    default_target = {"concurrency": DEFAULT_SCALE_TARGET, "rps": DEFAULT_RPS_TARGET}.get(metric,
                                                                                        DEFAULT_UTILIZATION_TARGET)
    annotated_target = None if "scaleTarget" in predictor else _target(knative.get(TARGET_ANNOTATION))
    target: float = (annotated_target if annotated_target is not None
                     else _int(predictor.get("scaleTarget", default_target), "scaleTarget", 1))
    _check_autoscaler(annotations, standard, predictor)
    concurrency = _container_concurrency(predictor.get("containerConcurrency"), standard)
    if concurrency and metric == "concurrency":  # Knative's ResolveMetricTarget: never aim above the hard limit
        explicit = predictor.get("scaleTarget") is not None or annotated_target is not None
        target = min(target, concurrency) if explicit else concurrency
    request = 1.0
    if metric in UTILIZATION_METRICS:
        if min_replicas == 0:
            raise InvalidInput(f"spec.predictor.minReplicas 0 needs scaleMetric 'concurrency' or 'rps': with "
                               f"{metric!r} (Kubernetes' HPA) a revision keeps at least one replica.")
        request = _request(model.get("resources"), metric, f"{where}.resources")
    window = revision.get(WINDOW_ANNOTATION)
    utilization = 100.0 if metric in UTILIZATION_METRICS else _utilization(revision.get(UTILIZATION_ANNOTATION))
    grpc = str(annotations.get(GRPC_ANNOTATION, "false")).lower() in ("1", "true", "yes") or _h2c(model.get("ports"))
    unsafe = str(annotations.get(UNSAFE_PICKLE_ANNOTATION, "false")).lower()
    if unsafe not in ("true", "false"):
        raise InvalidInput(f'Annotation {UNSAFE_PICKLE_ANNOTATION} {unsafe!r} must be "true" or "false".')
    python_path = annotations.get(PATH_ANNOTATION)
    return PredictorSpec(model_format=fmt, storage_uri=storage_uri, model_class=model_class,
                         python_path=str(python_path) if python_path else None, min_replicas=min_replicas,
                         max_replicas=max_replicas, scale_target=target, scale_metric=metric, scale_request=request,
                         scale_utilization=utilization,
                         scale_window=parse_duration(window, WINDOW_ANNOTATION) if window is not None else None,
                         enable_grpc=grpc, allow_unsafe_pickle=unsafe == "true",
                         model_name=_model_name(model.get("args"), f"{where}.args"),
                         env=_env(model.get("env"), f"{where}.env"), container_concurrency=concurrency,
                         initial_scale=_initial_scale(knative), panic_window_percentage=_panic_window(knative),
                         scale_down_delay=_scale_down_delay(knative))


def _annotation(annotations: dict[str, Any], key: str) -> tuple[str, Any]:
    """The key Knative reads and its value: ``key``, else its older spelling (:data:`LEGACY_KEYS`)."""
    legacy = LEGACY_KEYS.get(key)
    if key not in annotations and legacy in annotations:
        return legacy, annotations[legacy]
    return key, annotations.get(key)


def _number(value: Any) -> float:
    """An annotation's value as a finite number, NaN when it is none."""
    try:
        number = float(value) if isinstance(value, (str, int, float)) and not isinstance(value, bool) else math.nan
    except ValueError:
        return math.nan
    return number if math.isfinite(number) else math.nan


def _metric(value: Any, hpa: bool) -> str | None:
    """The metric annotation as Knative's webhook accepts it: concurrency or rps for its KPA; under its HPA class
    cpu or memory, what kfbox's HPA scales on."""
    if value is None:
        return None
    allowed = UTILIZATION_METRICS if hpa else ("concurrency", "rps")
    if value not in allowed:
        scaler = f"{KNATIVE_CLASS} {KNATIVE_HPA} (the HPA)" if hpa else "Knative's KPA (the default class)"
        raise InvalidInput(f"Annotation {METRIC_ANNOTATION} {value!r} must be {' or '.join(allowed)}: the metrics "
                           f"of {scaler}. spec.predictor.scaleMetric, when set, wins over it.")
    return str(value)


def _target(value: Any) -> float | None:
    """The target annotation (a number of at least Knative's 0.01), an int when whole; None when unset."""
    if value is None:
        return None
    target = _number(value)
    if not target >= TARGET_MIN:  # NaN fails too
        raise InvalidInput(f"Annotation {TARGET_ANNOTATION} {value!r} must be a number of at least {TARGET_MIN} "
                           '(e.g. "10"): the metric a replica is scaled at. spec.predictor.scaleTarget, when set, '
                           "wins over it.")
    return int(target) if target.is_integer() else target


def _initial_scale(annotations: dict[str, Any]) -> int:
    """``initial-scale`` as Knative's webhook takes it: an integer; 0 only where the cluster allows it (its
    config-autoscaler ``allow-zero-initial-scale``, false by default and in kfbox). KServe's controller drops an
    invalid one from the InferenceService's own annotations (Knative's webhook refuses one on the predictor's);
    kfbox refuses either, naming it."""
    key, value = _annotation(annotations, INITIAL_SCALE_ANNOTATION)
    if value is None:
        return 1
    text = str(value) if isinstance(value, (str, int)) and not isinstance(value, bool) else ""
    if not re.fullmatch(r"[-+]?[0-9]{1,9}", text) or int(text) < 1:
        zero = (" (0 only where Knative's config-autoscaler allow-zero-initial-scale is true; it is false)"
                if re.fullmatch(r"[-+]?0+", text) else "")
        raise InvalidInput(f"Annotation {key} {value!r} must be an integer of at least 1{zero}: the replicas a "
                           "new revision starts with.")
    return int(text)


def _panic_window(annotations: dict[str, Any]) -> float:
    key, value = _annotation(annotations, PANIC_WINDOW_ANNOTATION)
    if value is None:
        return DEFAULT_PANIC_WINDOW_PERCENTAGE
    low, high = PANIC_WINDOW_PERCENTAGE_BOUNDS
    percent = _number(value)
    if not low <= percent <= high:
        raise InvalidInput(f"Annotation {key} {value!r} must be a number from {low:g} to {high:g} "
                           '(e.g. "10"): the panic window as a percent of the window.')
    return percent


def _scale_down_delay(annotations: dict[str, Any]) -> float:
    key, value = _annotation(annotations, SCALE_DOWN_DELAY_ANNOTATION)
    if value is None:
        return 0.0
    seconds = parse_duration(value, f"Annotation {key}")
    if seconds > MAX_SCALE_DOWN_DELAY or not seconds.is_integer():
        raise InvalidInput(f"Annotation {key} {value!r} must be a duration from 0s to 1h in whole seconds "
                           '(e.g. "30s"): how long a higher replica count outlasts the load that asked for it.')
    return seconds


def _check_autoscaler(annotations: dict[str, Any], standard: bool, predictor: dict[str, Any]) -> None:
    """KServe's validating webhook on the autoscaler (``validateInferenceServiceAutoscaler``,
    ``validateAutoScalingCompExtension``), with its messages. It checks the metric against the HPA only where the
    manifest names the HPA: Standard mode with ``autoscalerClass: hpa``, or Knative's HPA class. A Standard
    predictor without the class is not checked (KServe's HPA then gets no metric and the API server's default,
    80% CPU: see :mod:`kfbox.serving.raw`); ``external`` and ``none`` are not either; KEDA takes no scaleMetric.
    Knative mode without Knative's HPA class is scaled by Knative's KPA, which refuses cpu and memory."""
    autoscaler = annotations.get(AUTOSCALER_CLASS)
    if autoscaler is not None and autoscaler not in AUTOSCALER_CLASSES:
        raise InvalidInput(f"[{autoscaler}] is not a supported autoscaler class type")
    if standard and autoscaler == "keda" and predictor.get("scaleMetric") is not None:
        raise InvalidInput("ScaleMetric is not supported for KEDA")
    if not standard and annotations.get(KNATIVE_CLASS) != KNATIVE_HPA:  # Knative's KPA
        kpa_metric = predictor.get("scaleMetric") or "concurrency"
        if kpa_metric in UTILIZATION_METRICS:
            raise InvalidInput(f"[{kpa_metric}] is not a supported metric: Knative's KPA scales on concurrency or "
                               f"rps. For {kpa_metric}, annotate {MODE_ANNOTATION}: {STANDARD} (KServe's HPA) or "
                               f"{KNATIVE_CLASS}: {KNATIVE_HPA} (Knative's HPA class).")
        return
    if standard and autoscaler != "hpa":
        return
    metric, target = predictor.get("scaleMetric") or "cpu", predictor.get("scaleTarget")
    if metric not in UTILIZATION_METRICS:
        raise InvalidInput(f"[{metric}] is not a supported metric")
    # KServe's ``metric == MetricCPU && target < 1 || target > 100`` refuses memory over 100 too (under 1: above)
    if isinstance(target, int) and target > 100:
        raise InvalidInput("the target utilization percentage should be a [1-100] integer")


def deployment_mode(annotations: dict[str, Any]) -> str:
    """``Knative`` (Serverless: Knative's KPA scales it) or ``Standard`` (RawDeployment: the HPA does), the older
    names read as these; ``ModelMesh`` or another value as written."""
    mode = annotations.get(MODE_ANNOTATION) or DEFAULT_MODE
    return LEGACY_MODES.get(str(mode), str(mode))


def kept_mode(current: dict[str, Any], new: dict[str, Any]) -> str | None:
    """KServe fixes an InferenceService's deployment mode when it is created. An update whose annotation names
    another mode is refused with the message of KServe's validating webhook (which compares the annotation, its
    older names renamed by the defaulting webhook, with ``status.deploymentMode``); an update without the
    annotation keeps the current mode, as KServe's controller reads the status first: returned, for the new
    manifest to carry. None when the new manifest says it itself (or the mode is the default)."""
    old = deployment_mode(annotations_of(current))
    written = annotations_of(new).get(MODE_ANNOTATION)
    if written is None:
        return old if old != DEFAULT_MODE else None
    if (mode := deployment_mode({MODE_ANNOTATION: written})) != old:
        raise InvalidInput(f"update rejected: deploymentMode cannot be changed from '{old}' to '{mode}'")
    return None


def annotations_of(manifest: dict[str, Any]) -> dict[str, Any]:
    annotations = (manifest.get("metadata") or {}).get("annotations")
    return annotations if isinstance(annotations, dict) else {}


def effective_target(spec: PredictorSpec) -> float:
    """What a replica is scaled at: Knative's ``max(1, target * utilization)`` (its ResolveMetricTarget), so a
    ``scaleTarget`` of 1 stays 1; for cpu and memory the target itself."""
    return max(1.0, spec.scale_target * spec.scale_utilization / 100)


def autoscaling(spec: PredictorSpec) -> dict[str, Any]:
    """How a revision scales, for its status and pages: the metric, its target a replica (``per`` says in what,
    with the utilization it is scaled at for the KPA's metrics), the replica bounds."""
    per = {"concurrency": "requests in flight a replica", "rps": "requests per second a replica",
           "cpu": f"percent of the {spec.scale_request:g} CPU a replica requests",
           "memory": f"percent of the {spec.scale_request / 2**20:g} MiB a replica requests"}[spec.scale_metric]
    scaling: dict[str, Any] = {"metric": spec.scale_metric, "target": spec.scale_target, "per": per,
                               "minReplicas": spec.min_replicas, "maxReplicas": spec.max_replicas}
    if spec.scale_metric not in UTILIZATION_METRICS:
        scaling["targetUtilizationPercentage"] = spec.scale_utilization
        scaling["per"] += f" (scaled at {spec.scale_utilization:g}%: {effective_target(spec):g})"
    if spec.container_concurrency:
        scaling["containerConcurrency"] = spec.container_concurrency
    if spec.initial_scale != 1:
        scaling["initialScale"] = spec.initial_scale
    if spec.panic_window_percentage != DEFAULT_PANIC_WINDOW_PERCENTAGE:
        scaling["panicWindowPercentage"] = spec.panic_window_percentage
    if spec.scale_down_delay:
        scaling["scaleDownDelaySeconds"] = spec.scale_down_delay
    return scaling


def _container_concurrency(value: Any, standard: bool) -> int:
    """``containerConcurrency`` as KServe's webhook (>= 0) and, for the Knative revision it becomes, Knative's
    (at most :data:`MAX_CONTAINER_CONCURRENCY`) accept it; Standard mode has no queue-proxy to enforce it, so
    KServe ignores it there: 0."""
    if value is None:
        return 0
    field = "spec.predictor.containerConcurrency"
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise FieldInvalid(field, f"{value!r} must be an integer from 0 (no limit) to {MAX_CONTAINER_CONCURRENCY}: "
                                  "the most requests a replica is sent at once")
    if standard:
        return 0
    if value > MAX_CONTAINER_CONCURRENCY:
        raise FieldInvalid(field, f"{value} is above Knative's container-concurrency-max-limit "
                                  f"{MAX_CONTAINER_CONCURRENCY} (0 means no limit)")
    return value


def _utilization(value: Any) -> float:
    """The annotation's percent, validated as Knative's webhook does (a number from 1 to 100); 70 when unset."""
    if value is None:
        return DEFAULT_TARGET_UTILIZATION
    percent = _number(value)
    if not 1 <= percent <= 100:  # NaN fails too
        raise InvalidInput(f"Annotation {UTILIZATION_ANNOTATION} {value!r} must be a number from 1 to 100 "
                           '(e.g. "70"): the percent of scaleTarget a replica is scaled at.')
    return percent


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


def _mapping(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise InvalidInput(f"{where} must be a mapping, got {type(value).__name__}.")
    return value


def _request(resources: Any, metric: str, where: str) -> float:
    """The container's request of ``metric`` (cores or bytes) from its ``resources``; KServe's default if unset."""
    requests = _mapping(resources or {}, where).get("requests") or {}
    value = _mapping(requests, f"{where}.requests").get(metric)
    if value is None:
        return DEFAULT_REQUESTS[metric]
    match = QUANTITY_RE.fullmatch(str(value)) if isinstance(value, (str, int, float)) else None
    try:
        amount = (float(match.group(1)) * QUANTITY_SUFFIXES[match.group(2)] * 10.0 ** int(match.group(3) or 0)
                  if match else 0.0)
    except OverflowError:  # '1e999'
        amount = math.inf
    if not 0 < amount < math.inf:
        raise InvalidInput(f"{where}.requests.{metric} {value!r} must be a positive Kubernetes quantity "
                           "(e.g. '500m', '2', '128Mi').")
    return amount


def _int(value: Any, field: str, minimum: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise InvalidInput(f"spec.predictor.{field} {value!r} must be an integer >= {minimum}.")
    return value
