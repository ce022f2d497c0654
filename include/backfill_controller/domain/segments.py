"""Large backfills in segments: no mapped task past ``[core] max_map_length``, no XCom past 1 MB.

A controller run maps one ``trigger`` task instance per chunk of dates, a chunk may be one date
(``chunk_size`` 1), and Airflow refuses to map more than ``max_map_length`` (1024) task
instances; a plan of every date in one XCom would also pass 1 MB. So the dates of a request are
cut into *segments* of at most ``segment_size`` dates (1000 by default). The run that received
the request (the *head*) plans every date, runs segment 0 itself, then triggers one
*continuation* run per further segment, one after another, each running exactly its segment's
plan. The head waits for them and its
``report`` merges their results: one place for progress, one final result.

Worked example: 2,500 dates, ``segment_size=1000``: the head runs dates 0-999, then continuation
runs ``<head run_id>__segment_1`` (1000-1999) and ``__segment_2`` (2000-2499). Failed dates are
counted across segments against ``max_failed_dates``. The shape of those run ids and the conf key
``continues`` are the controller's names, in :mod:`backfill_controller.contract`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, TypeVar

from backfill_controller.contract import CONTINUES_KEY

T = TypeVar("T")

#: Airflow's default ``[core] max_map_length``; a segment must fit in one mapped task.
MAX_MAP_LENGTH = 1024
#: The final report lists every date only up to this many; beyond, the dates that did not simply
#: succeed, with pointers to each segment's full list (XComs stay well under 1 MB).
REPORT_DATES_LIMIT = 2000


def split(items: Sequence[T], segment_size: int) -> list[list[T]]:
    """Consecutive slices of at most ``segment_size`` items (at least one slice, maybe empty).

    >>> split([1, 2, 3, 4, 5], 2)
    [[1, 2], [3, 4], [5]]
    >>> split([], 2)
    [[]]
    """
    size = max(1, min(segment_size, MAX_MAP_LENGTH))
    return [list(items[i : i + size]) for i in range(0, len(items), size)] or [[]]


def continuation_conf(head_conf: Mapping[str, Any], head_run_id: str, segment: int) -> dict[str, Any]:
    """The conf of a continuation run: the head's, without its explicit ``dates``.

    A continuation reads its dates from the head's plan, so the list (10,000 dates are about
    300 KB) is not copied into every segment's conf and the ``segments`` task's XCom.

    >>> continuation_conf({"dag_id": "d", "dates": ["2024-01-01"]}, "manual__1", 2)
    {'dag_id': 'd', 'continues': {'head_run_id': 'manual__1', 'segment': 2}}
    """
    conf = {key: value for key, value in head_conf.items() if key != "dates"}
    return {**conf, CONTINUES_KEY: {"head_run_id": head_run_id, "segment": segment}}


def merge_reports(parts: Sequence[Mapping[str, Any]], *, limit: int = REPORT_DATES_LIMIT) -> dict[str, Any]:
    """One report from the reports of every segment, in segment order.

    Counts add up, ``failed_dates`` are concatenated, ``success`` holds only if every segment
    succeeded, ``window_complete`` only if every segment says so of its dates (a segment always
    holds dates: a later one that reports none could not read them, and is not complete). When
    there are more than ``limit`` dates, ``dates`` keeps only the ones that did not end
    ``success`` (those a reader needs) and ``dates_truncated`` is true; every segment's full list
    stays in its own run's ``report`` XCom ``segment_report``.
    """
    first = parts[0]
    keys = dict.fromkeys(k for part in parts for k in part["counts"])  # first part's order first
    counts = {k: sum(part["counts"].get(k, 0) for part in parts) for k in keys}
    dates = [d for part in parts for d in part["dates"]]
    merged = {
        **{k: v for k, v in first.items() if k not in ("counts", "dates", "failed_dates", "success")},
        "success": all(p["success"] for p in parts),
        "window_complete": all(p.get("window_complete") is True for p in parts)
        and all(p["dates"] for p in parts[1:]),
        "segments": len(parts),
        "counts": counts,
        "failed_dates": [d for p in parts for d in p["failed_dates"]],
        "unfinished_dates": [d for p in parts for d in p.get("unfinished_dates", [])],
        "dates": dates,
        "dates_truncated": False,
    }
    if len(dates) > limit:
        merged["dates"] = [d for d in dates if d["state"] != "success"][:limit]
        merged["dates_truncated"] = True
    return merged
