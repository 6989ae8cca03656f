"""Knative's KPA in miniature: replicas follow observed concurrency over a sliding window.

``desired = ceil(average in-flight requests / scaleTarget)``, clamped to
``[minReplicas, maxReplicas]``. A burst (the average of the last tenth of the window, Knative's
"panic window") scales up at once; scaling down waits until a whole window has passed since
the last scale-up and then follows the window's average; zero is reached only when
``minReplicas`` is 0 and no request arrived for a whole window.
"""

from __future__ import annotations

import math
from collections import deque

PANIC_FRACTION = 0.1
MIN_PANIC_SECONDS = 0.5


class Autoscaler:
    def __init__(self, min_replicas: int, max_replicas: int, target: int, window: float) -> None:
        self.min_replicas = min_replicas
        self.max_replicas = max_replicas
        self.target = target
        self.window = window
        self.samples: deque[tuple[float, float]] = deque()
        self.last_scale_up = 0.0

    def observe(self, now: float, concurrency: float) -> None:
        self.samples.append((now, concurrency))
        while self.samples and self.samples[0][0] < now - self.window:
            self.samples.popleft()

    def _average(self, since: float) -> float:
        values = [value for at, value in self.samples if at >= since]
        return sum(values) / len(values) if values else 0.0

    def desired(self, now: float, current: int, last_request_at: float) -> int:
        panic_window = max(self.window * PANIC_FRACTION, MIN_PANIC_SECONDS)
        burst = math.ceil(self._average(now - panic_window) / self.target)
        steady = math.ceil(self._average(now - self.window) / self.target)
        if burst > current:
            self.last_scale_up = now
            want = burst
        elif now - self.last_scale_up < self.window:
            want = current
        else:
            want = min(current, steady)
        if now - last_request_at < self.window:
            want = max(want, 1)  # recently used: keep one warm until the window passes
        return max(self.min_replicas, min(self.max_replicas, want))
