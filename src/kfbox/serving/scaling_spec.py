"""How an InferenceService asks to be scaled, read and checked as KServe's and Knative's webhooks do.

The deployment mode (annotation ``serving.kserve.io/deploymentMode``) decides the autoscaler, as on a cluster:
Knative's KPA in Knative mode (``concurrency`` or ``rps``), the HPA in Standard mode or under Knative's HPA class
(``cpu`` or ``memory``). The predictor's ``minReplicas``, ``maxReplicas``, ``scaleMetric``, ``scaleTarget`` and
``containerConcurrency`` are read with KServe's defaults, and Knative's annotations with Knative's:
``autoscaling.knative.dev/window`` (the idle window before scaling down, e.g. ``"2s"``) and
``target-utilization-percentage`` (the percent of ``scaleTarget`` the KPA aims at, 1-100, default 70, Knative's
``container-concurrency-target-percentage``), in ``metadata.annotations`` or ``spec.predictor.annotations``
(which win, as on the Knative revision KServe writes). In Knative mode, so are those KServe lets through to the
revision: ``target`` and ``metric`` where ``scaleTarget`` / ``scaleMetric`` are unset (KServe writes those over
them), ``initial-scale``, ``panic-window-percentage``, ``panic-threshold-percentage`` and ``scale-down-delay``
(:mod:`kfbox.serving.autoscaler`), each refused outside Knative's bounds naming it; KServe drops a user's
``min-scale`` / ``max-scale`` (``minReplicas`` / ``maxReplicas`` say them), and so does kfbox. Standard mode makes
no Knative revision: none of these count there. ``containerConcurrency`` (0-1000, Knative mode) is a replica's hard
limit of requests at once (:meth:`kfbox.serving.pool.ReplicaPool.pick`, HAProxy's per-server ``maxconn``) and caps
a ``concurrency`` target, as Knative's ResolveMetricTarget: ``min(scaleTarget, containerConcurrency)``, or
``containerConcurrency`` itself when ``scaleTarget`` is unset; KServe ignores it in Standard mode (no queue-proxy),
and so does kfbox.
"""

from __future__ import annotations

import dataclasses
import math
import re
from typing import TYPE_CHECKING, Any

from kfbox.durations import parse_duration
from kfbox.errors import InvalidInput
from kfbox.serving.schema import FieldInvalid, mapping

if TYPE_CHECKING:
    from kfbox.serving.spec import PredictorSpec

WINDOW_ANNOTATION = "autoscaling.knative.dev/window"
UTILIZATION_ANNOTATION = "autoscaling.knative.dev/target-utilization-percentage"
TARGET_ANNOTATION = "autoscaling.knative.dev/target"
METRIC_ANNOTATION = "autoscaling.knative.dev/metric"
INITIAL_SCALE_ANNOTATION = "autoscaling.knative.dev/initial-scale"
PANIC_WINDOW_ANNOTATION = "autoscaling.knative.dev/panic-window-percentage"
PANIC_THRESHOLD_ANNOTATION = "autoscaling.knative.dev/panic-threshold-percentage"
SCALE_DOWN_DELAY_ANNOTATION = "autoscaling.knative.dev/scale-down-delay"
LEGACY_KEYS = {INITIAL_SCALE_ANNOTATION: "autoscaling.knative.dev/initialScale",
               PANIC_WINDOW_ANNOTATION: "autoscaling.knative.dev/panicWindowPercentage",
               PANIC_THRESHOLD_ANNOTATION: "autoscaling.knative.dev/panicThresholdPercentage",
               SCALE_DOWN_DELAY_ANNOTATION: "autoscaling.knative.dev/scaleDownDelay"}
"""The older spellings Knative still reads (its ``kmap.KeyPriority``), where the new key is unset."""
TARGET_MIN = 0.01  # Knative's TargetMin
DEFAULT_PANIC_WINDOW_PERCENTAGE = 10.0  # Knative's config-autoscaler panic-window-percentage
PANIC_WINDOW_PERCENTAGE_BOUNDS = (1.0, 100.0)
DEFAULT_PANIC_THRESHOLD_PERCENTAGE = 200.0  # Knative's config-autoscaler panic-threshold-percentage
PANIC_THRESHOLD_PERCENTAGE_BOUNDS = (110.0, 1000.0)  # Knative's PanicThresholdPercentageMin and Max
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
class Scaling:
    """The predictor's scaling, by :class:`kfbox.serving.spec.PredictorSpec`'s field names."""

    min_replicas: int
    max_replicas: int
    scale_target: float
    scale_metric: str
    scale_request: float
    scale_utilization: float
    scale_window: float | None
    container_concurrency: int
    initial_scale: int
    panic_window_percentage: float
    panic_threshold_percentage: float
    scale_down_delay: float


def read_scaling(predictor: dict[str, Any], annotations: dict[str, Any], resources: Any, where: str) -> Scaling:
    """``spec.predictor``'s scaling under the InferenceService's ``annotations``; ``resources`` and ``where``:
    the model container's requests (the 100% of a cpu or memory target) and its path, for errors."""
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
    revision = {**annotations, **mapping(predictor.get("annotations") or {}, "spec.predictor.annotations")}
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
        request = _request(resources, metric, f"{where}.resources")
    window = revision.get(WINDOW_ANNOTATION)
    utilization = 100.0 if metric in UTILIZATION_METRICS else _utilization(revision.get(UTILIZATION_ANNOTATION))
    return Scaling(min_replicas=min_replicas, max_replicas=max_replicas, scale_target=target, scale_metric=metric,
                   scale_request=request, scale_utilization=utilization,
                   scale_window=parse_duration(window, WINDOW_ANNOTATION) if window is not None else None,
                   container_concurrency=concurrency, initial_scale=_initial_scale(knative),
                   panic_window_percentage=_panic_window(knative), panic_threshold_percentage=_panic_threshold(knative),
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


def _panic_threshold(annotations: dict[str, Any]) -> float:
    """``panic-threshold-percentage`` as Knative's webhook takes it: a number from 110 to 1000 (a panic needs the
    panic window to want more than the replicas ready, by at least a tenth); 200 when unset."""
    key, value = _annotation(annotations, PANIC_THRESHOLD_ANNOTATION)
    if value is None:
        return DEFAULT_PANIC_THRESHOLD_PERCENTAGE
    low, high = PANIC_THRESHOLD_PERCENTAGE_BOUNDS
    percent = _number(value)
    if not low <= percent <= high:  # NaN fails too
        raise InvalidInput(f"Annotation {key} {value!r} must be a number from {low:g} to {high:g} "
                           '(e.g. "200"): the replicas the panic window wants, as a percent of those ready, '
                           "that start a panic (scaling up at once, never down).")
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
    if spec.panic_threshold_percentage != DEFAULT_PANIC_THRESHOLD_PERCENTAGE:
        scaling["panicThresholdPercentage"] = spec.panic_threshold_percentage
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


def _request(resources: Any, metric: str, where: str) -> float:
    """The container's request of ``metric`` (cores or bytes) from its ``resources``; KServe's default if unset."""
    requests = mapping(resources or {}, where).get("requests") or {}
    value = mapping(requests, f"{where}.requests").get(metric)
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
