"""KServe's autoscaling in miniature: replicas follow an observed metric over a sliding window.

``desired = ceil(metric / target)``, clamped to ``[minReplicas, maxReplicas]``, where the metric is
the predictor's ``scaleMetric`` as the pool samples it (:meth:`ReplicaPool.tick`) and ``target`` what a
replica is scaled at (:func:`kfbox.serving.scaling_spec.effective_target`):

* Knative's KPA metrics: ``concurrency``, the average of the requests in flight, and ``rps``, the requests
  admitted per second (every door counted: the gateway, gRPC, HAProxy). As Knative's KPA, they aim at
  ``max(1, scaleTarget * utilization / 100)``, the utilization from the annotation
  ``autoscaling.knative.dev/target-utilization-percentage`` (default 70): a ``scaleTarget`` of 10 in flight
  adds a replica at 7. As its KPA (``scaling/autoscaler.go``), two figures: the window's average ("stable") and
  the last tenth's ("panic window"). Stable mode follows the window's figure, up or down. A panic starts when the
  panic window wants at least ``panic-threshold-percentage`` (default 200%) of the ready replicas (at least
  one counted): then the larger of the two figures, and never fewer replicas than the panic has wanted so far;
  each tick still over the threshold extends it; it ends a whole window after the last such tick.
* The HPA's: ``cpu`` and ``memory``, aimed at ``scaleTarget`` itself: the ready replicas' use as a percent of
  one replica's request, so ``ceil(use / target)`` is the HPA's ``ceil(replicas * utilization / target)``, left
  alone within the HPA's 10% tolerance. Averaged over the whole window, with no panic window: a tick's CPU
  reading is coarse (the kernel counts in 10 ms steps), and the HPA too acts on averaged metrics. Then the HPA's
  default ``behavior`` (KServe writes it empty): down only to the highest recommendation of the last
  ``downscale_stabilization`` seconds (300, kube-controller-manager's
  ``--horizontal-pod-autoscaler-downscale-stabilization``), up by at most max(4 pods, 100%) per 15 s.

Zero is reached only when ``minReplicas`` is 0 and no request arrived for a whole window.

Knative's per-revision annotations (parsed in :mod:`kfbox.serving.spec`): ``panic-window-percentage`` sizes the
panic window (default 10% of the window); ``panic-threshold-percentage`` the panic's threshold;
``scale-down-delay`` keeps the highest count wanted in that many seconds before going lower, as Knative's delay
window (for every metric, on top of the rules above); ``initial-scale`` is the replicas a new revision starts
with: kept until that many are ready at once (Knative's "scale target initialized"), and then for a window.
"""

from __future__ import annotations

import math
from collections import deque

from kfbox.serving.scaling_spec import DEFAULT_PANIC_THRESHOLD_PERCENTAGE, UTILIZATION_METRICS, effective_target
from kfbox.serving.spec import PredictorSpec

PANIC_FRACTION = 0.1
MIN_PANIC_SECONDS = 0.5
RATE_METRICS = frozenset({"rps"})
"""Sampled as a running count: the figure is its growth per second."""
HPA_TOLERANCE = 0.1
"""The HPA's tolerance: within 10% of the target's use, the replicas are left as they are (no flapping)."""
HPA_DOWNSCALE_STABILIZATION = 300.0
"""The HPA's default ``behavior.scaleDown.stabilizationWindowSeconds``, in seconds."""
HPA_SCALE_UP_PERIOD = 15.0
HPA_SCALE_UP_PODS = 4
"""The HPA's default ``behavior.scaleUp.policies``: 4 pods or 100% (the larger) per 15 s."""


class Autoscaler:
    def __init__(self, min_replicas: int, max_replicas: int, target: float, window: float,
                 metric: str = "concurrency", *,
                 downscale_stabilization: float = HPA_DOWNSCALE_STABILIZATION, initial_scale: int = 1,
                 panic_fraction: float = PANIC_FRACTION, scale_down_delay: float = 0.0,
                 panic_threshold: float = DEFAULT_PANIC_THRESHOLD_PERCENTAGE / 100) -> None:
        self.min_replicas = min_replicas
        self.max_replicas = max_replicas
        self.target = target
        self.window = window
        self.metric = metric
        self.initial_scale = min(initial_scale, max_replicas)
        """Replicas held until that many were ready at once; then 0 (done). 1 is the pool's own rule."""
        self.panic_fraction = panic_fraction
        self.panic_threshold = panic_threshold
        """The panic window's replicas over the ready ones that start a panic (2.0: twice as many)."""
        self.panic_at: float | None = None
        """When the panic window last wanted :attr:`panic_threshold` times the ready replicas; None: no panic."""
        self.panic_replicas = 0
        """The most replicas wanted since the panic started: a panic never scales down."""
        self.scale_down_delay = scale_down_delay
        self.wanted: deque[tuple[float, int]] = deque()
        """What :meth:`desired` wanted (when, replicas) over the last ``scale_down_delay`` seconds, oldest first."""
        self.samples: deque[tuple[float, float]] = deque()
        """(when, value), oldest first, a window's worth and the sample before it."""
        self.held_since = -math.inf
        """When ``initial-scale`` was reached: its replicas are held for a window from then."""
        self.downscale_stabilization = downscale_stabilization
        self.recommendations: deque[tuple[float, int]] = deque()
        """The HPA's recommendations (when, replicas) of the last stabilization window, oldest first."""
        self.scale_ups: deque[tuple[float, int]] = deque()
        """The HPA's scale-ups (when, replicas added) of the last scale-up period."""

    @classmethod
    def of(cls, spec: PredictorSpec, window: float, *,
           downscale_stabilization: float = HPA_DOWNSCALE_STABILIZATION) -> Autoscaler:
        """The autoscaler of a revision: its bounds, metric and the target a replica is scaled at."""
        return cls(spec.min_replicas, spec.max_replicas, effective_target(spec), window, spec.scale_metric,
                   downscale_stabilization=downscale_stabilization, initial_scale=spec.initial_scale,
                   panic_fraction=spec.panic_window_percentage / 100, scale_down_delay=spec.scale_down_delay,
                   panic_threshold=spec.panic_threshold_percentage / 100)

    def retarget(self, spec: PredictorSpec) -> None:
        """Take ``spec``'s bounds, metric and target in place, as an HPA whose spec was updated: the next
        :meth:`desired` clamps to the new bounds. A new metric starts over (its samples and the HPA's
        recommendations were in another unit)."""
        self.min_replicas, self.max_replicas = spec.min_replicas, spec.max_replicas
        self.target = effective_target(spec)
        if spec.scale_metric != self.metric:
            self.metric = spec.scale_metric
            self.samples.clear()
            self.recommendations.clear()
            self.scale_ups.clear()
            self.panic_at, self.panic_replicas = None, 0

    def observe(self, now: float, value: float) -> None:
        """The metric's value now: in flight or percent of a request for an average, a running count for a rate."""
        self.samples.append((now, value))
        # one sample from before the window is kept: a rate over the window starts from it
        while len(self.samples) > 1 and self.samples[1][0] <= now - self.window:
            self.samples.popleft()

    def _figure(self, since: float) -> float:
        """The metric over the samples from ``since`` on."""
        recent = [sample for sample in self.samples if sample[0] >= since]
        if not recent:
            return 0.0
        if self.metric not in RATE_METRICS:
            return sum(value for _, value in recent) / len(recent)
        # the count's growth from the last sample at or before ``since`` (else the first after it) to the newest
        start = next((s for s in reversed(self.samples) if s[0] <= since), recent[0])
        end = recent[-1]
        seconds = end[0] - start[0]
        return (end[1] - start[1]) / seconds if seconds > 0 else 0.0

    def figure(self, now: float) -> float | None:
        """The metric over the last window, the figure scaling down follows; None before the first sample."""
        return self._figure(now - self.window) if self.samples else None

    def desired(self, now: float, current: int, last_request_at: float, ready: int | None = None) -> int:
        """The replicas wanted now, with ``current`` replicas of which ``ready`` (None: all) are ready."""
        want = (self._hpa_desired(now, current) if self.metric in UTILIZATION_METRICS
                else self._kpa_desired(now, current, last_request_at, current if ready is None else ready))
        if self.initial_scale > 1:
            if (current if ready is None else ready) < self.initial_scale:
                return max(want, self.initial_scale)
            self.initial_scale = 0  # reached: the metric decides from now on, after a window
            self.held_since = now
            want = max(want, current)
        if self.scale_down_delay:
            while self.wanted and self.wanted[0][0] <= now - self.scale_down_delay:
                self.wanted.popleft()
            self.wanted.append((now, want))
            want = max(replicas for _, replicas in self.wanted)
        return want

    def _kpa_desired(self, now: float, current: int, last_request_at: float, ready: int) -> int:
        """Knative's KPA: the window's figure, or in a panic the larger of it and the panic window's, never lower
        than the panic has wanted so far."""
        steady = math.ceil(self._figure(now - self.window) / self.target)
        panic_window = max(self.window * self.panic_fraction, MIN_PANIC_SECONDS)
        burst = math.ceil(self._figure(now - panic_window) / self.target)
        if burst / max(ready, 1) >= self.panic_threshold:  # a replica starting is not ready: no help yet
            self.panic_at = now  # starts a panic, or extends it
        elif self.panic_at is not None and now - self.panic_at > self.window:
            self.panic_at, self.panic_replicas = None, 0  # the burst has made its way into the window's figure
        want = steady
        if self.panic_at is not None:
            self.panic_replicas = max(self.panic_replicas, steady, burst)
            want = self.panic_replicas
        if now - self.held_since < self.window:
            want = max(want, current)  # initial-scale's replicas, held for a window once reached
        if now - last_request_at < self.window:
            want = max(want, 1)  # recently used: keep one warm until the window passes
        return max(self.min_replicas, min(self.max_replicas, want))

    def _hpa_desired(self, now: float, current: int) -> int:
        """The HPA's replicas for cpu or memory, as its controller computes them with the default behavior
        (``normalizeDesiredReplicasWithBehaviors``): the recommendation, down only to the highest of the
        stabilization window's, up by at most max(4 pods, 100%) of the replicas at the start of the period."""
        figure = self._figure(now - self.window)
        recommendation = math.ceil(figure / self.target)
        if current and abs(figure / (self.target * current) - 1) <= HPA_TOLERANCE:
            recommendation = current
        while self.recommendations and self.recommendations[0][0] <= now - self.downscale_stabilization:
            self.recommendations.popleft()
        highest = max([recommendation, *(replicas for _, replicas in self.recommendations)])
        self.recommendations.append((now, recommendation))
        want = recommendation if recommendation >= current else min(current, highest)
        while self.scale_ups and self.scale_ups[0][0] <= now - HPA_SCALE_UP_PERIOD:
            self.scale_ups.popleft()
        if want > current:
            start = current - sum(added for _, added in self.scale_ups)
            want = min(want, max(current, start + HPA_SCALE_UP_PODS, 2 * start))
        want = max(self.min_replicas, min(self.max_replicas, want))
        if want > current:
            self.scale_ups.append((now, want - current))
        return want
