"""What an InferenceService manifest turns on: gRPC from a container port's name, as KServe manifests ask for it."""

from __future__ import annotations

from typing import Any

import pytest

from kfbox.errors import InvalidInput
from kfbox.serving.scaling_spec import MODE_ANNOTATION, UTILIZATION_ANNOTATION, autoscaling, kept_mode
from kfbox.serving.spec import InferenceServiceSpec


def parse(ports: list[dict[str, Any]], *, legacy: bool = False) -> InferenceServiceSpec:
    predictor: dict[str, Any] = (
        {"sklearn": {"storageUri": "pvc://models/iris", "ports": ports}} if legacy else
        {"model": {"modelFormat": {"name": "sklearn"}, "storageUri": "pvc://models/iris", "ports": ports}})
    return InferenceServiceSpec.parse({"apiVersion": "serving.kserve.io/v1beta1", "kind": "InferenceService",
                                       "metadata": {"name": "iris"}, "spec": {"predictor": predictor}})


@pytest.mark.parametrize(("ports", "grpc"), [
    ([{"containerPort": 8081, "name": "h2c", "protocol": "TCP"}], True),  # Knative's name (kserve e2e test_sklearn)
    # kserve e2e test_grpc's dual-protocol predictor: Istio's protocol-by-name convention
    ([{"containerPort": 8081, "name": "grpc-port"}, {"containerPort": 8080, "name": "http-rest"}], True),
    ([{"containerPort": 8081, "name": "grpc"}], True),
    ([{"containerPort": 8080, "name": "http-rest"}], False),
    ([{"containerPort": 8080, "name": "grpcish"}], False),
    ([], False),
])
@pytest.mark.parametrize("legacy", [False, True], ids=["model", "sklearn"])
def test_a_port_named_for_grpc_turns_grpc_on(ports: list[dict[str, Any]], grpc: bool, legacy: bool) -> None:
    assert parse(ports, legacy=legacy).predictor.enable_grpc is grpc


KNATIVE_HPA_CLASS = {"autoscaling.knative.dev/class": "hpa.autoscaling.knative.dev"}
"""Knative mode scaled by Knative's HPA class: where Knative mode takes cpu and memory."""


def predictor(annotations: dict[str, str] | None = None, **fields: Any) -> InferenceServiceSpec:
    return InferenceServiceSpec.parse({"apiVersion": "serving.kserve.io/v1beta1", "kind": "InferenceService",
                                       "metadata": {"name": "iris", "annotations": annotations or {}},
                                       "spec": {"predictor": {
                                           "model": {"modelFormat": {"name": "sklearn"},
                                                     "storageUri": "pvc://models/iris"}, **fields}}})


@pytest.mark.parametrize(("fields", "metric", "target"), [
    ({}, "concurrency", 100),
    ({"scaleMetric": "rps"}, "rps", 200),  # Knative's requests-per-second-target-default
    ({"scaleMetric": "rps", "scaleTarget": 5}, "rps", 5),  # kserve e2e test_sklearn_kserve_rps
])
def test_knatives_scale_metrics_are_served_with_knatives_default_targets(fields: dict[str, Any], metric: str,
                                                                         target: int) -> None:
    spec = predictor(**fields).predictor
    assert (spec.scale_metric, spec.scale_target) == (metric, target)


def utilized(value: Any, **fields: Any) -> InferenceServiceSpec:
    return InferenceServiceSpec.parse({"apiVersion": "serving.kserve.io/v1beta1", "kind": "InferenceService",
                                       "metadata": {"name": "iris", "annotations": {UTILIZATION_ANNOTATION: value}},
                                       "spec": {"predictor": {"sklearn": {"storageUri": "pvc://models/iris"},
                                                              **fields}}})


@pytest.mark.parametrize(("value", "percent"), [("70", 70.0), ("100", 100.0), ("1", 1.0), ("62.5", 62.5), (85, 85.0)])
def test_the_target_utilization_annotation_is_read_as_knative_reads_it(value: Any, percent: float) -> None:
    assert utilized(value).predictor.scale_utilization == percent
    assert predictor().predictor.scale_utilization == 70.0  # Knative's container-concurrency-target-percentage


@pytest.mark.parametrize("value", ["0.5", "101", "0", "-70", "seventy", "70%", "nan", True, ""])
def test_a_target_utilization_outside_knatives_bounds_is_refused(value: Any) -> None:
    """Knative's webhook accepts a number from 1 to 100; so does kfbox, naming the annotation and the range."""
    with pytest.raises(InvalidInput, match=f"Annotation {UTILIZATION_ANNOTATION} .* must be a number from 1 to 100"):
        utilized(value)


def test_the_predictors_own_autoscaling_annotations_win_as_on_the_knative_revision() -> None:
    """KServe writes the predictor's annotations over the InferenceService's on the Knative revision, where
    Knative reads them: the window and the target utilization there win."""
    spec = utilized("90", annotations={UTILIZATION_ANNOTATION: "60", "autoscaling.knative.dev/window": "7s"})
    assert (spec.predictor.scale_utilization, spec.predictor.scale_window) == (60.0, 7.0)
    assert utilized("90").predictor.scale_window is None


def test_the_scaling_summary_says_the_utilization_of_the_kpas_metrics_only() -> None:
    summary = autoscaling(utilized("70", scaleTarget=10).predictor)
    assert summary["per"] == "requests in flight a replica (scaled at 70%: 7)"
    assert summary["targetUtilizationPercentage"] == 70.0
    assert autoscaling(utilized("50", scaleMetric="rps", scaleTarget=5).predictor)["per"] == (
        "requests per second a replica (scaled at 50%: 2.5)")
    hpa = autoscaling(scaled({**KNATIVE_HPA_CLASS, UTILIZATION_ANNOTATION: "50"}, scaleMetric="cpu",
                             scaleTarget=60).predictor)  # the HPA has no utilization
    assert hpa["per"] == "percent of the 1 CPU a replica requests" and "targetUtilizationPercentage" not in hpa


def test_other_scale_metrics_are_refused_naming_kserves() -> None:
    with pytest.raises(InvalidInput, match="'latency' is not one of KServe's: concurrency, rps, cpu, memory"):
        predictor(scaleMetric="latency")


@pytest.mark.parametrize(("resources", "metric", "request_"), [
    ({"requests": {"cpu": "25m", "memory": "128Mi"}}, "cpu", 0.025),  # kserve e2e test_sklearn_scale_raw
    ({"requests": {"cpu": "25m", "memory": "128Mi"}}, "memory", 128 * 2**20),
    ({"requests": {"cpu": 2}}, "cpu", 2.0),
    ({"requests": {"memory": "1G"}}, "memory", 1e9),
    ({"requests": {"memory": "1e3"}}, "memory", 1000.0),
    ({}, "cpu", 1.0),  # KServe's default request of a predictor: 1 CPU, 2Gi
    ({}, "memory", 2 * 2**30),
])
def test_hpa_metrics_scale_on_a_percent_of_the_replicas_request(resources: dict[str, Any], metric: str,
                                                                 request_: float) -> None:
    spec = InferenceServiceSpec.parse({"apiVersion": "serving.kserve.io/v1beta1", "kind": "InferenceService",
                                       "metadata": {"name": "iris", "annotations": KNATIVE_HPA_CLASS},
                                       "spec": {"predictor": {
                                           "scaleMetric": metric, "sklearn": {"storageUri": "pvc://models/iris",
                                                                              "resources": resources}}}}).predictor
    assert (spec.scale_metric, spec.scale_target) == (metric, 80)  # KServe's DefaultCPUUtilization
    assert spec.scale_request == pytest.approx(request_)


@pytest.mark.parametrize(("fields", "message"), [
    ({"scaleMetric": "cpu", "minReplicas": 0}, "minReplicas 0 needs scaleMetric 'concurrency' or 'rps'"),
    ({"scaleMetric": "cpu", "model": {"modelFormat": {"name": "sklearn"}, "storageUri": "pvc://models/iris",
                                      "resources": {"requests": {"cpu": "lots"}}}},
     r"spec.predictor.model.resources.requests.cpu 'lots' must be a positive Kubernetes quantity"),
    ({"scaleMetric": "memory", "model": {"modelFormat": {"name": "sklearn"}, "storageUri": "pvc://models/iris",
                                         "resources": {"requests": {"memory": "1e999"}}}},
     "must be a positive Kubernetes quantity"),
    ({"scaleMetric": "cpu", "model": {"modelFormat": {"name": "sklearn"}, "storageUri": "pvc://models/iris",
                                      "resources": {"requests": {"cpu": "0"}}}},
     "must be a positive Kubernetes quantity"),
])
def test_hpa_metrics_refuse_what_the_hpa_cannot_do(fields: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        predictor(KNATIVE_HPA_CLASS, **fields)


def standard(mode: str, **fields: Any) -> InferenceServiceSpec:
    return InferenceServiceSpec.parse({"apiVersion": "serving.kserve.io/v1beta1", "kind": "InferenceService",
                                       "metadata": {"name": "iris", "annotations": {
                                           "serving.kserve.io/deploymentMode": mode}},
                                       "spec": {"predictor": {"model": {"modelFormat": {"name": "sklearn"},
                                                                        "storageUri": "pvc://models/iris"},
                                                              **fields}}})


@pytest.mark.parametrize("mode", ["Standard", "RawDeployment"])
def test_a_standard_predictor_scales_as_kserves_hpa_would(mode: str) -> None:
    """KServe's Standard mode (RawDeployment, its older name) scales with an HPA: on CPU at 80% of the request
    when no scaleMetric is given, and never below one replica (its reconciler raises a minReplicas of 0)."""
    spec = standard(mode).predictor
    assert (spec.scale_metric, spec.scale_target, spec.scale_request) == ("cpu", 80, 1.0)
    assert standard(mode, minReplicas=0).predictor.min_replicas == 1
    explicit = standard(mode, scaleMetric="memory", scaleTarget=60).predictor
    assert (explicit.scale_metric, explicit.scale_target) == ("memory", 60)


def test_a_serverless_predictor_keeps_knatives_defaults() -> None:
    spec = standard("Serverless", minReplicas=0).predictor
    assert (spec.scale_metric, spec.min_replicas) == ("concurrency", 0)


def test_knatives_hpa_class_scales_on_cpu_by_default_as_kserve_checks_it() -> None:
    spec = predictor(KNATIVE_HPA_CLASS).predictor
    assert (spec.scale_metric, spec.scale_target, spec.scale_request) == ("cpu", 80, 1.0)


def scaled(annotations: dict[str, str], **fields: Any) -> InferenceServiceSpec:
    return InferenceServiceSpec.parse({"apiVersion": "serving.kserve.io/v1beta1", "kind": "InferenceService",
                                       "metadata": {"name": "iris", "annotations": annotations},
                                       "spec": {"predictor": {"model": {"modelFormat": {"name": "sklearn"},
                                                                        "storageUri": "pvc://models/iris"},
                                                              **fields}}})


HPA_CLASS = {"serving.kserve.io/autoscalerClass": "hpa"}


@pytest.mark.parametrize(("annotations", "fields", "message"), [
    ({MODE_ANNOTATION: "Standard", **HPA_CLASS}, {"scaleMetric": "concurrency"},
     r"^\[concurrency\] is not a supported metric$"),
    ({MODE_ANNOTATION: "RawDeployment", **HPA_CLASS}, {"scaleMetric": "rps"}, r"^\[rps\] is not a supported metric$"),
    ({"autoscaling.knative.dev/class": "hpa.autoscaling.knative.dev"}, {"scaleMetric": "concurrency"},
     r"^\[concurrency\] is not a supported metric$"),  # Knative mode, scaled by Knative's HPA class
    ({MODE_ANNOTATION: "Standard", **HPA_CLASS}, {"scaleMetric": "memory", "scaleTarget": 150},
     r"^the target utilization percentage should be a \[1-100\] integer$"),
    ({MODE_ANNOTATION: "Standard", "serving.kserve.io/autoscalerClass": "keda"}, {"scaleMetric": "cpu"},
     "^ScaleMetric is not supported for KEDA$"),
    ({MODE_ANNOTATION: "Standard", "serving.kserve.io/autoscalerClass": "kpa"}, {},
     r"^\[kpa\] is not a supported autoscaler class type$"),
    # Knative mode without Knative's HPA class: Knative's KPA, which takes concurrency and rps only
    ({}, {"scaleMetric": "cpu"}, r"^\[cpu\] is not a supported metric: Knative's KPA scales on concurrency or rps\. "
                                 r"For cpu, annotate serving.kserve.io/deploymentMode: Standard"),
    ({MODE_ANNOTATION: "Serverless"}, {"scaleMetric": "memory"}, r"^\[memory\] is not a supported metric"),
    ({"autoscaling.knative.dev/class": "kpa.autoscaling.knative.dev"}, {"scaleMetric": "cpu"},
     r"^\[cpu\] is not a supported metric"),
])
def test_kserves_webhook_refuses_a_metric_the_named_autoscaler_cannot_serve(
        annotations: dict[str, str], fields: dict[str, Any], message: str) -> None:
    """KServe's validating webhook, with its messages: the HPA (named by autoscalerClass hpa in Standard mode, or
    by Knative's HPA class) scales on cpu or memory only, at most 100%; KEDA takes no scaleMetric; Knative's KPA
    (Knative mode without Knative's HPA class) on concurrency or rps only (kfbox adds how to get cpu)."""
    with pytest.raises(InvalidInput, match=message):
        scaled(annotations, **fields)


@pytest.mark.parametrize("annotations", [
    {MODE_ANNOTATION: "Standard"},  # KServe's HPA gets no metric: the API server defaults it to 80% CPU
    {MODE_ANNOTATION: "Standard", "serving.kserve.io/autoscalerClass": "external"},
    {MODE_ANNOTATION: "Standard", "serving.kserve.io/autoscalerClass": "none"},
    {"serving.kserve.io/autoscalerClass": "hpa"},  # the class is read in Standard mode only
])
def test_kserves_webhook_checks_the_metric_only_where_the_manifest_names_the_hpa(annotations: dict[str, str]) -> None:
    """Only what KServe refuses is refused: the same predictor is let through where the HPA is not named."""
    assert scaled(annotations, scaleMetric="concurrency").predictor.scale_metric == "concurrency"
    with pytest.raises(InvalidInput, match="concurrency"):
        scaled({**annotations, MODE_ANNOTATION: "Standard", **HPA_CLASS}, scaleMetric="concurrency")
    assert scaled({MODE_ANNOTATION: "Standard", **HPA_CLASS}, scaleMetric="cpu",
                  scaleTarget=100).predictor.scale_target == 100


def test_an_update_keeps_the_deployment_mode_the_inference_service_was_created_in() -> None:
    def annotated(mode: str | None) -> dict[str, Any]:
        return {"metadata": {"name": "m", **({"annotations": {MODE_ANNOTATION: mode}} if mode else {})}}

    assert kept_mode(annotated(None), annotated(None)) is None  # Knative, the default, either way
    assert kept_mode(annotated("RawDeployment"), annotated("Standard")) is None  # one mode, two names
    assert kept_mode(annotated("Standard"), annotated(None)) == "Standard"  # dropped: kept, for the manifest
    assert kept_mode(annotated("ModelMesh"), annotated(None)) == "ModelMesh"
    for old, new, said in ((None, "Standard", "'Knative' to 'Standard'"),
                           ("Standard", "Serverless", "'Standard' to 'Knative'"),
                           ("Knative", "ModelMesh", "'Knative' to 'ModelMesh'")):
        with pytest.raises(InvalidInput, match=f"update rejected: deploymentMode cannot be changed from {said}"):
            kept_mode(annotated(old), annotated(new))


@pytest.mark.parametrize(("fields", "target"), [
    ({"containerConcurrency": 5}, 5),  # no scaleTarget: Knative aims at containerConcurrency itself
    ({"containerConcurrency": 500}, 500),  # even above the default target of 100
    ({"containerConcurrency": 5, "scaleTarget": 10}, 5),  # min(target annotation, containerConcurrency)
    ({"containerConcurrency": 20, "scaleTarget": 10}, 10),
    ({"containerConcurrency": 0, "scaleTarget": 10}, 10),  # 0: no limit, nothing capped
    ({"containerConcurrency": 2, "scaleMetric": "rps", "scaleTarget": 10}, 10),  # rps: the limit caps nothing
])
def test_container_concurrency_caps_the_concurrency_target_as_knatives_resolve_metric_target(
        fields: dict[str, Any], target: int) -> None:
    spec = predictor(**fields).predictor
    assert (spec.container_concurrency, spec.scale_target) == (fields["containerConcurrency"], target)
    assert autoscaling(spec).get("containerConcurrency") == (fields["containerConcurrency"] or None)


@pytest.mark.parametrize(("value", "message"), [
    (-1, "must be an integer from 0"),  # KServe's webhook: parallelism cannot be less than 0
    (1001, "above Knative's container-concurrency-max-limit 1000"),
    ("4", "must be an integer from 0"),
    (True, "must be an integer from 0"),
    (2.5, "must be an integer from 0"),
])
def test_a_container_concurrency_outside_the_webhooks_bounds_is_refused_naming_the_field(value: Any,
                                                                                        message: str) -> None:
    with pytest.raises(InvalidInput, match=message) as caught:
        predictor(containerConcurrency=value)
    assert getattr(caught.value, "field", None) == "spec.predictor.containerConcurrency"


def test_standard_mode_has_no_queue_proxy_so_container_concurrency_is_ignored_there() -> None:
    """KServe copies containerConcurrency only to the Knative revision; its raw reconcilers do not read it."""
    spec = standard("RawDeployment", containerConcurrency=1, scaleMetric="concurrency", scaleTarget=10).predictor
    assert (spec.container_concurrency, spec.scale_target) == (0, 10)
    assert standard("Standard", containerConcurrency=5000).predictor.container_concurrency == 0
    with pytest.raises(InvalidInput, match="must be an integer from 0"):
        standard("Standard", containerConcurrency=-1)


TARGET, METRIC = "autoscaling.knative.dev/target", "autoscaling.knative.dev/metric"
THRESHOLD = "autoscaling.knative.dev/panic-threshold-percentage"
INITIAL, PANIC, DELAY = ("autoscaling.knative.dev/initial-scale", "autoscaling.knative.dev/panic-window-percentage",
                         "autoscaling.knative.dev/scale-down-delay")


@pytest.mark.parametrize(("annotations", "fields", "metric", "target"), [
    ({TARGET: "10"}, {}, "concurrency", 10),
    ({TARGET: "2.5"}, {}, "concurrency", 2.5),  # Knative's target is a float, down to 0.01
    ({METRIC: "rps"}, {}, "rps", 200),  # the metric's default target, as if scaleMetric said rps
    ({METRIC: "rps", TARGET: "5"}, {}, "rps", 5),
    ({TARGET: "3", "autoscaling.knative.dev/target-utilization-percentage": "50"}, {"containerConcurrency": 4},
     "concurrency", 3),
    ({METRIC: "memory", "autoscaling.knative.dev/class": "hpa.autoscaling.knative.dev"}, {}, "memory", 80),
])
def test_knatives_metric_and_target_annotations_count_where_kserve_lets_them_through(
        annotations: dict[str, str], fields: dict[str, Any], metric: str, target: float) -> None:
    spec = scaled(annotations, **fields).predictor
    assert (spec.scale_metric, spec.scale_target) == (metric, target)


def test_scale_metric_and_scale_target_win_over_the_annotations_as_kserve_writes_them_over() -> None:
    """KServe writes scaleMetric and scaleTarget over a user's metric and target annotations on the revision;
    containerConcurrency caps an annotated target as it caps scaleTarget (Knative's ResolveMetricTarget)."""
    annotated = {METRIC: "rps", TARGET: "50"}
    assert (scaled(annotated).predictor.scale_metric, scaled(annotated).predictor.scale_target) == ("rps", 50)
    spec = scaled(annotated, scaleMetric="concurrency", scaleTarget=3).predictor
    assert (spec.scale_metric, spec.scale_target) == ("concurrency", 3)
    assert scaled({TARGET: "50"}, containerConcurrency=4).predictor.scale_target == 4
    assert scaled({TARGET: "2"}, containerConcurrency=4).predictor.scale_target == 2


def test_the_predictors_metric_and_target_annotations_win_over_the_inference_services() -> None:
    on_isvc = {TARGET: "10", METRIC: "concurrency"}
    spec = InferenceServiceSpec.parse({"apiVersion": "serving.kserve.io/v1beta1", "kind": "InferenceService",
                                       "metadata": {"name": "iris", "annotations": on_isvc},
                                       "spec": {"predictor": {"sklearn": {"storageUri": "pvc://models/iris"},
                                                              "annotations": {TARGET: "4", METRIC: "rps"}}}}).predictor
    assert (spec.scale_metric, spec.scale_target) == ("rps", 4)


def test_standard_mode_makes_no_knative_revision_so_knatives_annotations_do_nothing_there() -> None:
    spec = scaled({MODE_ANNOTATION: "Standard", TARGET: "0", METRIC: "rps", INITIAL: "3", DELAY: "2h"}).predictor
    assert (spec.scale_metric, spec.scale_target, spec.initial_scale, spec.scale_down_delay) == ("cpu", 80, 1, 0.0)


@pytest.mark.parametrize(("annotations", "message"), [
    ({TARGET: "0"}, f"Annotation {TARGET} '0' must be a number of at least 0.01"),
    ({TARGET: "ten"}, f"Annotation {TARGET} 'ten' must be a number of at least 0.01"),
    ({TARGET: "inf"}, f"Annotation {TARGET} 'inf' must be a number"),
    ({METRIC: "cpu"}, f"Annotation {METRIC} 'cpu' must be concurrency or rps: the metrics of Knative's KPA"),
    ({METRIC: "rps", "autoscaling.knative.dev/class": "hpa.autoscaling.knative.dev"},
     f"Annotation {METRIC} 'rps' must be cpu or memory"),
    ({INITIAL: "0"}, f"Annotation {INITIAL} '0' must be an integer of at least 1 \\(0 only where Knative's "
                     "config-autoscaler allow-zero-initial-scale is true; it is false\\)"),
    ({INITIAL: "-2"}, f"Annotation {INITIAL} '-2' must be an integer of at least 1: the replicas"),
    ({INITIAL: "2.0"}, f"Annotation {INITIAL} '2.0' must be an integer"),
    ({"autoscaling.knative.dev/initialScale": "0"}, "Annotation autoscaling.knative.dev/initialScale '0'"),
    ({PANIC: "0.5"}, f"Annotation {PANIC} '0.5' must be a number from 1 to 100"),
    ({PANIC: "101"}, f"Annotation {PANIC} '101' must be a number from 1 to 100"),
    ({THRESHOLD: "100"}, f"Annotation {THRESHOLD} .100. must be a number from 110 to 1000 \\(e.g. \"200\"\\): the "
                         "replicas the panic window wants"),
    ({THRESHOLD: "1001"}, f"Annotation {THRESHOLD} .1001. must be a number from 110 to 1000"),
    ({THRESHOLD: "nan"}, f"Annotation {THRESHOLD} .nan. must be a number from 110 to 1000"),
    ({"autoscaling.knative.dev/panicThresholdPercentage": "50"},
     "Annotation autoscaling.knative.dev/panicThresholdPercentage .50. must be a number from 110"),
    ({DELAY: "61m"}, f"Annotation {DELAY} '61m' must be a duration from 0s to 1h in whole seconds"),
    ({DELAY: "1.5s"}, f"Annotation {DELAY} '1.5s' must be a duration from 0s to 1h in whole seconds"),
    ({DELAY: "soon"}, f"Annotation {DELAY} 'soon' is not understood as a duration"),
])
def test_knatives_annotations_outside_its_webhooks_bounds_are_refused_naming_them(annotations: dict[str, str],
                                                                                message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        scaled(annotations)


def test_initial_scale_panic_window_and_scale_down_delay_are_read_and_summarised() -> None:
    spec = scaled({INITIAL: "3", PANIC: "25", DELAY: "1m30s"}, maxReplicas=4).predictor
    assert (spec.initial_scale, spec.panic_window_percentage, spec.scale_down_delay) == (3, 25.0, 90.0)
    summary = autoscaling(spec)
    assert (summary["initialScale"], summary["panicWindowPercentage"], summary["scaleDownDelaySeconds"]) == (
        3, 25.0, 90.0)
    legacy = scaled({"autoscaling.knative.dev/initialScale": "2", "autoscaling.knative.dev/scaleDownDelay": "5s",
                     "autoscaling.knative.dev/panicWindowPercentage": "50"}).predictor  # Knative reads these too
    assert (legacy.initial_scale, legacy.scale_down_delay, legacy.panic_window_percentage) == (2, 5.0, 50.0)
    plain = autoscaling(scaled({}).predictor)
    assert not {"initialScale", "panicWindowPercentage", "scaleDownDelaySeconds"} & set(plain)


def test_panic_threshold_is_read_as_a_float_by_either_spelling_and_summarised() -> None:
    """Knative's ``panic-threshold-percentage`` (a float, default 200) and its camelCase spelling; Standard mode
    makes no Knative revision, so it counts only in Knative mode."""
    spec = scaled({THRESHOLD: "150.5"}).predictor
    assert spec.panic_threshold_percentage == 150.5
    assert autoscaling(spec)["panicThresholdPercentage"] == 150.5
    legacy = scaled({"autoscaling.knative.dev/panicThresholdPercentage": "300"}).predictor
    assert legacy.panic_threshold_percentage == 300.0
    assert scaled({}).predictor.panic_threshold_percentage == 200.0
    assert "panicThresholdPercentage" not in autoscaling(scaled({}).predictor)
    assert scaled({MODE_ANNOTATION: "Standard", THRESHOLD: "5"}).predictor.panic_threshold_percentage == 200.0
