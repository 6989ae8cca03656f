"""Sorting the runs list on a metric column across every page, not within one.

A run's metrics live in the JSON metadata of its system.Metrics artifacts, so ordering 10,000 runs
by one of them in SQL parses 10,000 JSON documents per page view (~55 ms on SQLite, more under
load), and so does reading all 10,000 run ids to sort them here. Instead :class:`MetricValues`
reads ``run id -> value`` for a metric in one scan and keeps it, ranked, until an artifact is
added (artifacts are written once, so the highest id moves whenever what the scan returns does;
they are removed only with their run, and a run that no longer exists never passes the filter). :func:`metric_page` then walks that ranking in batches, asking the
database which of them pass the page's filters (a primary-key lookup), until the page is full;
runs without the metric come last, newest first. A filter that keeps few runs reads their ids and
sorts them here instead.

Example::

    ranked = MetricValues().get(session, "sqlite", "accuracy")
    ids, total = metric_page(session, listing, ranked, descending=True, without=has_no_value)
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any

from sqlalchemy import ColumnElement, func, select
from sqlalchemy.orm import Session

from kfbox.errors import InvalidInput
from kfbox.pipelines.listing import Fields, Listing
from kfbox.pipelines.tables import Artifact, Run
from kfbox.ui.run_live import Bounded

METRIC_TYPES = ("system.Metrics",)
METRIC_NAME = re.compile(r"[\w .:/+-]{1,128}")
SMALL_SET = 2000   # runs passing the filters, below which their ids are read and sorted here
BATCH = 900        # ranked ids checked per query (under SQLite's oldest bound-parameter limit)


def metric_number(dialect: str, name: str) -> tuple[ColumnElement[Any], ColumnElement[bool]]:
    """(the value under key ``name`` as a float, whether it is a JSON number) for this backend's SQL."""
    if not METRIC_NAME.fullmatch(name):
        raise InvalidInput(f"Cannot sort on metric {name!r}: a metric name is letters, digits, spaces and . : / + -.")
    column, path = Artifact.artifact_metadata, f'$."{name}"'
    if dialect == "postgresql":
        numeric = func.json_typeof(column[name]) == "number"
    elif dialect in ("mysql", "mariadb"):
        numeric = func.json_type(func.json_extract(column, path)).in_(["INTEGER", "DOUBLE", "DECIMAL",
                                                                         "UNSIGNED INTEGER"])
    else:
        numeric = func.json_type(column, path).in_(["integer", "real"])
    return column[name].as_float(), numeric


@dataclasses.dataclass(frozen=True)
class Ranked:
    values: dict[str, float]   # run id -> the last number logged under the metric
    ascending: list[str]       # those run ids by value (ties by id)


class MetricValues:
    """Per metric name: the runs that logged it, with their values, ranked."""

    def __init__(self, size: int = 32) -> None:
        self._cache: Bounded[str, tuple[Any, Ranked]] = Bounded(size)

    def get(self, session: Session, dialect: str, name: str) -> Ranked:
        value, numeric = metric_number(dialect, name)
        mark = session.scalar(select(func.max(Artifact.id)))
        hit = self._cache.get(name)
        if hit is not None and hit[0] == mark:
            return hit[1]
        rows = session.execute(select(Artifact.run_id, value)
                               .where(Artifact.schema_title.in_(METRIC_TYPES), numeric).order_by(Artifact.id))
        values = {run_id: float(v) for run_id, v in rows}  # a later artifact's value wins
        ranked = Ranked(values, sorted(values, key=lambda i: (values[i], i)))
        self._cache.put(name, (mark, ranked))
        return ranked


def metric_page(session: Session, listing: Listing, fields: Fields, ranked: Ranked, descending: bool,
                without: ColumnElement[bool]) -> tuple[list[str], int]:
    """(the page's run ids in order, how many runs pass the filters); ``without``: SQL for "this run
    has no value", so the runs after the ranked ones come from the database, newest first."""
    where = listing.conditions(fields)
    wanted = listing.offset + listing.page_size
    total = session.scalar(select(func.count()).select_from(Run).where(*where)) or 0
    if total <= SMALL_SET:  # few runs pass: read their ids and sort them here
        ids = list(session.scalars(select(Run.id).where(*where).order_by(Run.created_ms.desc(), Run.id.desc())))
        return ordered_ids(ids, ranked, descending)[listing.offset:wanted], total
    order = ranked.ascending[::-1] if descending else ranked.ascending
    share = max(total / max(len(ranked.values), 1), 0.01)  # the part of the ranked runs likely to pass
    found: list[str] = []
    start = 0
    while len(found) < wanted and start < len(order):
        size = min(BATCH, max(100, int((wanted - len(found)) / share * 1.2)))
        batch = order[start:start + size]
        start += size
        passing = set(session.scalars(select(Run.id).where(Run.id.in_(batch), *where)))
        found.extend(i for i in batch if i in passing)
    page = found[listing.offset:wanted]
    if len(page) < listing.page_size:  # past the ranked runs: those without the metric, newest first
        skip = max(0, listing.offset - len(found))
        page += session.scalars(select(Run.id).where(without, *where)
                                .order_by(Run.created_ms.desc(), Run.id.desc())
                                .offset(skip).limit(listing.page_size - len(page)))
    return page, total


def without_metric(dialect: str, name: str) -> ColumnElement[bool]:
    """SQL: the run has no system.Metrics artifact with a number under ``name``."""
    _, numeric = metric_number(dialect, name)
    return ~select(Artifact.id).where(Artifact.run_id == Run.id, Artifact.schema_title.in_(METRIC_TYPES),
                                      numeric).exists()


def ordered_ids(ids: list[str], ranked: Ranked, descending: bool) -> list[str]:
    """``ids`` (newest first) in the ranking's order (ties by id); runs without a value last, as given."""
    keep = set(ids)
    order = ranked.ascending[::-1] if descending else ranked.ascending
    return [i for i in order if i in keep] + [i for i in ids if i not in ranked.values]
