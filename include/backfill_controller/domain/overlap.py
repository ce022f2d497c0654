"""Two backfills must never run the same date of the same target.

Each planning controller run publishes the *span* it will act on (target and first/last logical
date), then looks at the spans of the other controller runs still in progress. Whoever checks
second sees the first, so at most one of two overlapping backfills goes ahead; the other is
refused or waits (``on_overlap``). Backfills of the same target over different dates run side by
side (native backfill allows only one per DAG).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from backfill_controller.domain.plan import DatePlan


@dataclass(frozen=True)
class Span:
    target_dag_id: str
    first: str
    last: str

    def overlaps(self, other: Span) -> bool:
        """Same target and intersecting [first, last] (ISO-8601 UTC strings compare in time order).

        >>> Span("d", "2024-01-01", "2024-01-10").overlaps(Span("d", "2024-01-10", "2024-02-01"))
        True
        >>> Span("d", "2024-01-01", "2024-01-10").overlaps(Span("d", "2024-01-11", "2024-02-01"))
        False
        """
        return (
            self.target_dag_id == other.target_dag_id
            and self.first <= other.last
            and other.first <= self.last
        )

    def to_dict(self) -> dict[str, str]:
        return {"target_dag_id": self.target_dag_id, "first": self.first, "last": self.last}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Span:
        return cls(data["target_dag_id"], data["first"], data["last"])


def span_of(target_dag_id: str, plans: Sequence[DatePlan]) -> Span | None:
    """The span of the dates a backfill was asked for (None when it covers none).

    All requested dates count, not only those it acts on: a date another backfill is running
    right now would otherwise just be skipped as "in flight" instead of meeting ``on_overlap``.
    """
    dates = sorted(p.logical_date.in_timezone("UTC").isoformat() for p in plans)
    return Span(target_dag_id, dates[0], dates[-1]) if dates else None


def first_overlap(mine: Span, others: Mapping[str, Span | None]) -> tuple[str, Span] | None:
    """The first other run (by run_id) whose span overlaps ``mine``."""
    for run_id, span in sorted(others.items()):
        if span is not None and mine.overlaps(span):
            return run_id, span
    return None
