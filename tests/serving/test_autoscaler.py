"""Knative's KPA and the HPA in miniature (kfbox.serving.autoscaler), with an injected clock: each test feeds the
samples a pool would take at given moments and asks for the replicas it wants then. No process is started."""

from __future__ import annotations

from typing import Any

import pytest

from kfbox.serving.autoscaler import Autoscaler
from kfbox.serving.scaling_spec import UTILIZATION_ANNOTATION
from kfbox.serving.spec import InferenceServiceSpec

WINDOW = 10.0
TICK = 0.5


def run(scaler: Autoscaler, seconds: float, *, start: float = 0.0, concurrency: float = 0.0, rps: float = 0.0,
        admitted: int = 0, current: int = 1) -> tuple[float, int, int]:
    """Ticks for ``seconds`` from ``start`` at a steady load, following the replicas the scaler wants, as a pool
    does (sampling what its metric reads: in flight, or the running count of requests for rps); returns (the
    time reached, requests admitted so far, the replicas wanted at the end)."""
    now, want = start, current
    for _ in range(round(seconds / TICK)):
        now += TICK
        admitted += round(rps * TICK)
        scaler.observe(now, admitted if scaler.metric == "rps" else concurrency)
        want = scaler.desired(now, want, last_request_at=now if (rps or concurrency) else start)
    return now, admitted, want


def utilization(scaler: Autoscaler, percents: list[float], *, start: float = 0.0, current: int = 1
                ) -> tuple[float, list[int]]:
    """Ticks once per reading of the replicas' use (percent of one replica's request), as a pool samples cpu or
    memory; returns the time reached and the replicas wanted after each tick."""
    now, want, wants = start, current, []
    for percent in percents:
        now += TICK
        scaler.observe(now, percent)
        want = scaler.desired(now, want, last_request_at=start)
        wants.append(want)
    return now, wants


def test_rps_scales_on_requests_per_second_whatever_the_concurrency() -> None:
    """A sequential client (never more than one request in flight) at 50 requests/s against a target of 10 a
    replica wants 5 replicas; the same load measured as concurrency wants one."""
    by_rate = Autoscaler(min_replicas=1, max_replicas=8, target=10, window=WINDOW, metric="rps")
    assert run(by_rate, 5, concurrency=1, rps=50)[2] == 5
    by_concurrency = Autoscaler(min_replicas=1, max_replicas=8, target=10, window=WINDOW)
    assert run(by_concurrency, 5, concurrency=1, rps=50)[2] == 1


def test_rps_is_capped_by_max_replicas_and_falls_back_after_an_idle_window() -> None:
    scaler = Autoscaler(min_replicas=0, max_replicas=3, target=10, window=WINDOW, metric="rps")
    now, admitted, want = run(scaler, 3, rps=100)
    assert want == 3
    # the load stops: the replicas stay for a window after the last scale-up, then go to zero
    now, admitted, want = run(scaler, WINDOW / 2, start=now, admitted=admitted, current=want)
    assert want == 3
    _, _, want = run(scaler, WINDOW + 1, start=now, admitted=admitted, current=want)
    assert want == 0


def test_rps_halves_when_the_load_halves_once_a_window_has_passed() -> None:
    scaler = Autoscaler(min_replicas=1, max_replicas=8, target=10, window=WINDOW, metric="rps")
    now, admitted, want = run(scaler, 3, rps=60)
    assert want == 6
    _, _, want = run(scaler, 2 * WINDOW, start=now, admitted=admitted, current=want, rps=30)
    assert want == 3


def test_a_burst_in_the_panic_window_scales_up_before_the_window_would() -> None:
    """Ten seconds idle, then one second at 80 requests/s: the window's average is under 8/s (one replica at a
    target of 10), the last second's is 80/s (eight)."""
    scaler = Autoscaler(min_replicas=1, max_replicas=8, target=10, window=WINDOW, metric="rps")
    now, admitted, want = run(scaler, WINDOW)
    assert want == 1
    _, _, want = run(scaler, 1, start=now, admitted=admitted, current=want, rps=80)
    assert want == 8


def test_concurrency_follows_the_average_in_flight_requests() -> None:
    scaler = Autoscaler(min_replicas=1, max_replicas=8, target=2, window=WINDOW)
    assert run(scaler, 3, concurrency=7)[2] == 4


def test_cpu_follows_the_hpas_formula_over_the_window() -> None:
    """Replicas using 300% of one replica's request in all (two at 150%) with a target of 50% want six: the
    HPA's ``ceil(2 * 150 / 50)``; a single tick's spike is averaged over the window, not acted on at once."""
    scaler = Autoscaler(min_replicas=1, max_replicas=10, target=50, window=WINDOW, metric="cpu")
    now, wants = utilization(scaler, [0.0] * 19 + [400.0])  # one coarse reading amid idle ones
    assert wants[-1] == 1  # 400% / 20 ticks = 20% on average: no scale-up for a blip (400/50 would be 8)
    _, wants = utilization(scaler, [300.0] * round(2 * WINDOW / TICK), start=now)
    assert wants[-1] == 6


def test_cpu_scales_down_to_min_replicas_once_idle_for_the_stabilization_window() -> None:
    """With the HPA's stabilization window as short as the averaging window, two windows idle reach minReplicas."""
    scaler = Autoscaler(min_replicas=2, max_replicas=10, target=50, window=WINDOW, metric="cpu",
                        downscale_stabilization=WINDOW)
    now, wants = utilization(scaler, [300.0] * round(2 * WINDOW / TICK))  # up by at most 4 pods per 15 s
    assert wants[-1] == 6
    _, wants = utilization(scaler, [0.0] * round(2 * WINDOW / TICK), start=now, current=6)
    assert wants[-1] == 2


def test_cpu_within_the_hpas_tolerance_leaves_the_replicas_alone() -> None:
    """Two replicas at 105% of the target each: within the HPA's 10% tolerance, so two stay (``ceil`` alone would
    want three); at 115%, three."""
    within = Autoscaler(min_replicas=1, max_replicas=10, target=50, window=WINDOW, metric="cpu")
    assert utilization(within, [105.0] * round(WINDOW / TICK), current=2)[1][-1] == 2
    beyond = Autoscaler(min_replicas=1, max_replicas=10, target=50, window=WINDOW, metric="cpu")
    assert utilization(beyond, [115.0] * round(WINDOW / TICK), current=2)[1][-1] == 3


def scaler_of(utilization: str | None = None, knative: dict[str, str] | None = None, **predictor: Any) -> Autoscaler:
    """The autoscaler a pool makes for an InferenceService's predictor, annotated with ``utilization`` and the
    other ``knative`` autoscaling annotations."""
    annotations = {UTILIZATION_ANNOTATION: utilization} if utilization is not None else {}
    annotations.update(knative or {})
    if predictor.get("scaleMetric") in ("cpu", "memory"):  # Knative mode takes them with Knative's HPA class only
        annotations["autoscaling.knative.dev/class"] = "hpa.autoscaling.knative.dev"
    spec = InferenceServiceSpec.parse({"apiVersion": "serving.kserve.io/v1beta1", "kind": "InferenceService",
                                       "metadata": {"name": "iris", "annotations": annotations},
                                       "spec": {"predictor": {"sklearn": {"storageUri": "pvc://models/iris"},
                                                              "maxReplicas": 10, **predictor}}})
    return Autoscaler.of(spec.predictor, WINDOW)


@pytest.mark.parametrize(("utilization", "replicas"), [(None, 2), ("70", 2), ("100", 1), ("50", 2), ("35", 3)])
def test_concurrency_aims_at_knatives_target_utilization(utilization: str | None, replicas: int) -> None:
    """Knative scales a replica at 70% of its target unless the annotation says otherwise: 8 in flight against a
    target of 10 is one replica at 100%, two at the default 70% (a replica holds 7), three at 35% (3.5)."""
    assert run(scaler_of(utilization, scaleTarget=10), 3, concurrency=8)[2] == replicas


@pytest.mark.parametrize(("utilization", "replicas"), [(None, 6), ("100", 4), ("80", 5)])
def test_rps_aims_at_knatives_target_utilization(utilization: str | None, replicas: int) -> None:
    """40 requests/s against a target of 10 a replica: four replicas at 100%, six at 70% (7/s each: 40/7 = 5.7)."""
    assert run(scaler_of(utilization, scaleMetric="rps", scaleTarget=10), 3, rps=40)[2] == replicas


def test_a_target_of_one_is_not_lowered_below_one() -> None:
    """Knative's ResolveMetricTarget aims at ``max(1, target * utilization)``: with ``scaleTarget: 1`` a replica
    still takes one request in flight, so two in flight want two replicas, not three (2 / 0.7)."""
    assert run(scaler_of(scaleTarget=1), 3, concurrency=2)[2] == 2


def test_cpu_aims_at_its_target_whatever_the_annotation() -> None:
    """The HPA's metrics have no target utilization: 300% of a replica's request at a target of 50% is six."""
    scaler = scaler_of("50", scaleMetric="cpu", scaleTarget=50)
    assert utilization(scaler, [300.0] * round(2 * WINDOW / TICK))[1][-1] == 6  # 4 pods at most per 15 s


def test_cpu_scales_down_only_after_the_hpas_stabilization_window() -> None:
    """The HPA's default behavior: after a spike, idle replicas stay until the spike's recommendations have left
    the last 300 s (not one averaging window), then follow the window's recommendations down to minReplicas."""
    scaler = Autoscaler(min_replicas=1, max_replicas=10, target=50, window=WINDOW, metric="cpu")
    now, wants = utilization(scaler, [300.0] * round(2 * WINDOW / TICK))
    assert wants[-1] == 6
    now, wants = utilization(scaler, [0.0] * round(290 / TICK), start=now, current=6)
    assert set(wants) == {6}  # the recommendations dropped to 1 after a window; the replicas did not
    _, wants = utilization(scaler, [0.0] * round(30 / TICK), start=now, current=6)
    assert wants[-1] == 1
    assert wants == sorted(wants, reverse=True) and len(set(wants)) > 2  # down as the spike's figures age out


def test_a_dip_inside_the_stabilization_window_does_not_scale_down() -> None:
    """Twenty idle seconds (two averaging windows: the recommendation falls to one) amid a steady load keep all
    six replicas; with the stabilization as short as the window they would be cut and started again."""
    scaler = Autoscaler(min_replicas=1, max_replicas=10, target=50, window=WINDOW, metric="cpu")
    now, wants = utilization(scaler, [300.0] * round(2 * WINDOW / TICK))
    assert wants[-1] == 6
    now, dip = utilization(scaler, [0.0] * round(2 * WINDOW / TICK), start=now, current=6)
    _, back = utilization(scaler, [300.0] * round(2 * WINDOW / TICK), start=now, current=6)
    assert set(dip) == set(back) == {6}
    short = Autoscaler(min_replicas=1, max_replicas=10, target=50, window=WINDOW, metric="cpu",
                       downscale_stabilization=WINDOW)
    now, _ = utilization(short, [300.0] * round(2 * WINDOW / TICK))
    assert utilization(short, [0.0] * round(2 * WINDOW / TICK), start=now, current=6)[1][-1] == 1


def test_cpu_scales_up_by_at_most_four_pods_or_double_per_15_seconds() -> None:
    """The HPA's default scale-up policies (the larger of 4 pods and 100% per 15 s): from one replica wanting 30,
    five (4 pods beat doubling), held until the scale-up leaves the 15 s period, then ten (doubling beats 4 pods),
    then twenty, then thirty."""
    scaler = Autoscaler(min_replicas=1, max_replicas=40, target=10, window=TICK, metric="cpu")
    _, wants = utilization(scaler, [300.0] * round(50 / TICK))  # 300% of one request / 10% = 30 replicas
    per_tick = round(15 / TICK)
    assert wants[:per_tick] == [5] * per_tick
    assert wants[per_tick:2 * per_tick] == [10] * per_tick
    assert wants[2 * per_tick] == 20 and wants[-1] == 30


@pytest.mark.parametrize(("predictor", "concurrency", "replicas"), [
    ({"containerConcurrency": 2}, 5, 4),  # min(default 100, 2) at 70%: 1.4 a replica
    ({"containerConcurrency": 10, "scaleTarget": 100}, 15, 3),  # min(100, 10) at 70%: 7 a replica
    ({"containerConcurrency": 10, "scaleTarget": 100, "annotations": {UTILIZATION_ANNOTATION: "100"}}, 15, 2),
])
def test_container_concurrency_caps_the_target_before_utilization(predictor: dict[str, Any], concurrency: float,
                                                                  replicas: int) -> None:
    """Knative never aims above the hard limit: ``max(1, min(target, containerConcurrency) * utilization)`` (without
    it, each of these would want one replica)."""
    assert run(scaler_of(**predictor), 3, concurrency=concurrency)[2] == replicas


def test_initial_scale_starts_that_many_and_holds_them_until_ready_then_a_window() -> None:
    """``autoscaling.knative.dev/initial-scale: 3``: three replicas are wanted from the first tick, idle or not,
    until three are ready at once (Knative's "scale target initialized"); then, as after any scale-up, for one
    window; then the metric decides (idle: minReplicas)."""
    scaler = scaler_of(knative={"autoscaling.knative.dev/initial-scale": "3"})
    assert scaler.desired(TICK, 0, last_request_at=0.0, ready=0) == 3
    for tick in range(2, 40):  # three replicas, but slow to load: one ready
        scaler.observe(tick * TICK, 0.0)
        assert scaler.desired(tick * TICK, 3, last_request_at=0.0, ready=1) == 3
    now, _, want = run(scaler, WINDOW - 1, start=20.0, current=3)  # all three ready from here
    assert want == 3
    assert run(scaler, 2, start=now, current=3)[2] == 1
    assert run(scaler_of(), 1)[2] == 1  # without it: Knative's initial scale of one


def test_a_wider_panic_window_averages_a_short_burst_away() -> None:
    """``panic-window-percentage``: two seconds of 30 in flight after idle (target 10 at 100%) scale to three
    within the default panic window (10% of 10 s); over a panic window as wide as the window they average under
    6 in flight: the replica there is enough."""
    scalers = [scaler_of("100", knative=knative, scaleTarget=10)
               for knative in ({}, {"autoscaling.knative.dev/panic-window-percentage": "100"})]
    wants = []
    for scaler in scalers:
        now, _, _ = run(scaler, WINDOW)
        wants.append(run(scaler, 2, start=now, concurrency=30)[2])
    assert wants == [3, 1]


def test_scale_down_delay_keeps_the_highest_count_wanted_for_that_long() -> None:
    """``scale-down-delay: 30s``: three replicas wanted under load stay until 30 s after they were last wanted
    (without it they go a window after the scale-up), then go to minReplicas at once."""
    delayed = scaler_of("100", knative={"autoscaling.knative.dev/scale-down-delay": "30s"}, scaleTarget=10)
    plain = scaler_of("100", scaleTarget=10)
    for scaler, after_20s in ((delayed, 3), (plain, 1)):
        now, _, want = run(scaler, 3, concurrency=30)
        assert want == 3
        now, _, want = run(scaler, 20, start=now, current=3)
        assert want == after_20s
        assert run(scaler, 25, start=now, current=want)[2] == 1


def test_a_burst_under_the_panic_threshold_waits_for_the_windows_average() -> None:
    """Knative panics only when the panic window wants at least twice the ready replicas: two ready replicas and
    25 in flight (target 10: three wanted, 150%) for two seconds do not scale up at once; the third replica comes
    when the window's average asks for it (seven seconds on). With ``panic-threshold-percentage: 150`` the same
    burst scales up at once."""
    plain = scaler_of("100", scaleTarget=10, minReplicas=2)
    now, _, want = run(plain, WINDOW, current=2)
    assert want == 2
    now, _, want = run(plain, 2, start=now, concurrency=25, current=2)
    assert want == 2  # 3 / 2 ready is under the 200% threshold: no panic
    wants = [run(plain, 1, start=now + second, concurrency=25, current=2)[2] for second in range(round(WINDOW))]
    assert wants[:6] == [2] * 6 and wants[-1] == 3  # once the window's average passed 20 in flight
    eager = scaler_of("100", knative={"autoscaling.knative.dev/panic-threshold-percentage": "150"}, scaleTarget=10,
                      minReplicas=2)
    now, _, _ = run(eager, WINDOW, current=2)
    assert run(eager, 2, start=now, concurrency=25, current=2)[2] == 3


def test_a_panic_never_scales_down_while_the_ready_replicas_lag_and_ends_a_window_after() -> None:
    """80 in flight on one ready replica panics to eight. The load falls to 30 but the new replicas are slow to
    load (one ready): three wanted is still 300% of the ready ones, so the panic goes on and keeps all eight
    (a window after the scale-up, they would otherwise fall to the window's three). Once they are ready, three
    is under the threshold; a window later the panic ends and the window's figure (three) decides."""
    scaler = scaler_of("100", scaleTarget=10)
    now, _, want = run(scaler, WINDOW)
    assert want == 1

    def tick(seconds: float, concurrency: float, ready: int) -> list[int]:
        nonlocal now, want
        wants = []
        for _ in range(round(seconds / TICK)):
            now += TICK
            scaler.observe(now, concurrency)
            want = scaler.desired(now, want, last_request_at=now, ready=ready)
            wants.append(want)
        return wants

    assert tick(2, 80, ready=1)[-1] == 8
    assert set(tick(2 * WINDOW, 30, ready=1)) == {8}
    settling = tick(WINDOW + 1, 30, ready=8)
    assert settling[:round(WINDOW / TICK)] == [8] * round(WINDOW / TICK)
    assert settling[-1] == 3
