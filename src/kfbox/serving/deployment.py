"""One InferenceService at run time: its revisions' replica pools and how traffic splits between them."""

from __future__ import annotations

import dataclasses

from kfbox.serving.pool import ReplicaPool
from kfbox.serving.store import ServiceRecord


def traffic_split(record: ServiceRecord) -> dict[int, int]:
    """Percent of requests per revision number, as KServe's ``status.components.predictor.traffic``.

    The stable revision takes everything until a canary percent is set; a new revision without
    a canary percent takes over once ready (the manager promotes it then).
    """
    if record.stable is None or record.stable == record.latest:
        return {record.latest: 100}
    if record.canary_percent is None:
        return {record.stable: 100}
    return {record.stable: 100 - record.canary_percent, record.latest: record.canary_percent}


@dataclasses.dataclass
class Deployment:
    record: ServiceRecord
    pools: dict[int, ReplicaPool] = dataclasses.field(default_factory=dict)
    transitions: dict[str, tuple[str, str]] = dataclasses.field(default_factory=dict)
    """Condition type -> (status, when it last changed), for ``lastTransitionTime``."""
    _credit: dict[int, int] = dataclasses.field(default_factory=dict)

    @property
    def key(self) -> tuple[str, str]:
        return self.record.key

    def serves(self, model: str) -> bool:
        """Whether a revision that takes traffic serves ``model`` (its name, or ``--model_name``)."""
        return any(self.record.revisions[n].served_name(self.record.name) == model
                   for n, pct in traffic_split(self.record).items() if pct > 0 and n in self.record.revisions)

    def wanted_revisions(self) -> set[int]:
        return {n for n, pct in traffic_split(self.record).items() if pct > 0} | {self.record.latest}

    def choose(self) -> tuple[int, ReplicaPool] | None:
        """Smooth weighted round robin over the split, skipping revisions with no ready replica (or fewer than
        their initial scale so far) while another has one (a canary that is not up yet sends its share to the
        stable one)."""
        split = traffic_split(self.record)
        if len(split) == 1:  # one revision takes it all (the usual case): nothing to weigh
            (number,) = split
            pool = self.pools.get(number)
            return None if pool is None else (number, pool)
        split = {n: pct for n, pct in split.items() if pct > 0 and n in self.pools}
        if not split:
            return None
        live = {n: pct for n, pct in split.items() if self.pools[n].ready_count and self.pools[n].initialized}
        weights = live or split
        total = sum(weights.values())
        for number, pct in weights.items():
            self._credit[number] = self._credit.get(number, 0) + pct
        chosen = max(weights, key=lambda n: self._credit[n])
        self._credit[chosen] -= total
        return chosen, self.pools[chosen]
