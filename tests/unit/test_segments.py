"""Specification of segments: large requests split so no mapped task nears max_map_length."""

from __future__ import annotations

import pytest

from backfill_controller.contract import CONTINUES_KEY, continuation_run_id
from backfill_controller.domain.segments import MAX_MAP_LENGTH, continuation_conf, merge_reports, split


@pytest.mark.parametrize(
    ("count", "size", "lengths"),
    [(0, 1000, [0]), (1000, 1000, [1000]), (1001, 1000, [1000, 1]), (9961, 1000, [1000] * 9 + [961])],
    ids=["nothing", "exactly one segment", "one date over", "an hourly year"],
)
def test_split_cuts_consecutive_segments(count, size, lengths) -> None:
    parts = split(list(range(count)), size)
    assert [len(p) for p in parts] == lengths
    assert [x for p in parts for x in p] == list(range(count))


def test_a_segment_never_exceeds_max_map_length() -> None:
    assert max(len(p) for p in split(list(range(5000)), 10_000)) == MAX_MAP_LENGTH


def test_continuation_runs_are_named_after_the_head_run() -> None:
    assert continuation_run_id("manual__x", 3) == "manual__x__segment_3"


def part(success: bool, states: list[str], *, whole: bool = False, action: str = "triggered") -> dict:
    dates = [{"logical_date": f"d{i}", "action": action, "state": s} for i, s in enumerate(states)]
    failed = [d["logical_date"] for d in dates if d["state"] == "failed" and action != "skipped"]
    return {
        "dag_id": "t",
        "success": success,
        "window_complete": whole,
        "counts": {"dates": len(dates), "failed": len(failed)},
        "failed_dates": failed,
        "dates": dates,
    }


def test_merged_report_adds_counts_and_fails_if_any_segment_failed() -> None:
    merged = merge_reports([part(True, ["success"]), part(False, ["failed", "success"])])
    assert merged["counts"] == {"dates": 3, "failed": 1}
    assert merged["success"] is False and merged["segments"] == 2
    assert len(merged["dates"]) == 3 and merged["dates_truncated"] is False


def test_a_large_merged_report_keeps_the_dates_that_need_attention() -> None:
    merged = merge_reports([part(False, ["success"] * 5 + ["failed"])], limit=3)
    assert merged["dates_truncated"] is True
    assert [d["state"] for d in merged["dates"]] == ["failed"]


def test_a_large_merged_report_keeps_a_date_left_alone_whose_run_failed() -> None:
    merged = merge_reports(
        [part(True, ["success"] * 3), part(True, ["success", "failed"], action="skipped")], limit=3
    )

    assert [(d["action"], d["state"]) for d in merged["dates"]] == [("skipped", "failed")]
    assert merged["failed_dates"] == [] and merged["success"] is True


def without_window(report: dict) -> dict:
    """A segment's report as a controller that did not say whether the window is whole made it."""
    return {k: v for k, v in report.items() if k != "window_complete"}


@pytest.mark.parametrize(
    ("parts", "whole"),
    [
        ([part(True, ["success"], whole=True), part(True, ["success"], whole=True)], True),
        ([part(True, ["success"], whole=True), part(True, ["failed"], action="skipped")], False),
        ([part(True, ["success"], whole=True), part(False, [], whole=True)], False),
        ([part(True, ["success"], whole=True), without_window(part(True, ["success"], whole=True))], False),
    ],
    ids=[
        "every segment is whole",
        "a segment has a date left alone whose run failed",
        "a segment whose dates could not be read",
        "a segment that does not say",
    ],
)
def test_the_merged_result_says_the_window_is_whole_only_if_every_segment_is(parts, whole) -> None:
    assert merge_reports(parts)["window_complete"] is whole


def test_a_continuation_reads_its_dates_from_the_head_and_does_not_copy_the_list() -> None:
    head_conf = {"dag_id": "sales", "dates": [f"2024-01-{d:02d}" for d in range(1, 29)], "reason": "outage"}

    conf = continuation_conf(head_conf, "manual__1", 3)

    assert conf == {
        "dag_id": "sales",
        "reason": "outage",
        CONTINUES_KEY: {"head_run_id": "manual__1", "segment": 3},
    }
    assert "dates" in head_conf  # the head's own conf is left as it was
