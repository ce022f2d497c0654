"""Specification of task-subset backfills: which tasks a regex selects, which instances are cleared."""

from __future__ import annotations

import pytest

from include.backfill.plan import Action, decide
from include.backfill.request import BackfillRequest, InvalidRequest, MissingRuns, Reprocess
from include.backfill.selection import describe, select_tasks, to_clear
from tests.unit.test_plan import JAN_1, existing_run, scheduled

# extract >> api_ingestion_task >> transform >> load, and extract >> audit
GRAPH = {
    "extract": ["api_ingestion_task", "audit"],
    "api_ingestion_task": ["transform"],
    "transform": ["load"],
    "load": [],
    "audit": [],
}


@pytest.mark.parametrize(
    ("regex", "upstream", "downstream", "expected"),
    [
        ("api_ingestion_task", False, False, ("api_ingestion_task",)),
        ("^api", False, True, ("api_ingestion_task", "load", "transform")),
        ("^transform$", True, False, ("api_ingestion_task", "extract", "transform")),
        ("^transform$", True, True, ("api_ingestion_task", "extract", "load", "transform")),
        ("a", False, False, ("api_ingestion_task", "audit", "extract", "load", "transform")),
    ],
    ids=["one task, like -t", "with downstream", "with upstream, like -i", "both ways", "search, not match"],
)
def test_a_regex_selects_tasks_and_their_relatives(regex, upstream, downstream, expected) -> None:
    assert select_tasks(GRAPH, regex, include_upstream=upstream, include_downstream=downstream) == expected


def test_a_regex_matching_nothing_is_refused_with_the_task_ids() -> None:
    with pytest.raises(InvalidRequest) as refused:
        select_tasks(GRAPH, "^nothing$")
    (error,) = refused.value.errors
    assert error.field == "task_regex"
    assert "api_ingestion_task, audit, extract, load, transform" in str(error)


STATES = {
    ("extract", -1): "success",
    ("shard", 0): "failed",
    ("shard", 1): "success",
    ("shard", 2): "upstream_failed",
    ("load", -1): None,
}


@pytest.mark.parametrize(
    ("reprocess", "selected", "expected"),
    [
        (Reprocess.FAILED, ["extract", "shard", "load"], [["shard", 0], ["shard", 2]]),
        (Reprocess.ALL, ["shard"], ["shard"]),
        (Reprocess.ALL, ["extract", "load"], ["extract", "load"]),
        (Reprocess.MISSING, ["extract", "shard", "load"], ["load"]),
        (Reprocess.FAILED, ["extract"], []),
    ],
    ids=[
        "failed: failed and upstream-failed map indexes",
        "all: a mapped task by its id (every index)",
        "all: unmapped tasks",
        "missing: only never-ran instances",
        "failed: nothing failed",
    ],
)
def test_reprocess_applies_to_the_selected_task_instances(reprocess, selected, expected) -> None:
    assert to_clear(STATES, selected, reprocess) == expected


def test_describe_names_map_indexes() -> None:
    assert describe(["load", ["shard", 2]]) == ["load", "shard[2]"]


def subset(**kwargs) -> BackfillRequest:
    return BackfillRequest("sales", dates=(JAN_1,), task_regex="^b$", **kwargs)


def test_an_existing_run_clears_only_the_chosen_instances() -> None:
    run = existing_run(1, "failed")
    (plan,) = decide(
        [scheduled(1)],
        {run.logical_date: run},
        subset(reprocess=Reprocess.FAILED),
        selected_tasks=["b"],
        ti_states={run.run_id: {("a", -1): "success", ("b", -1): "failed"}},
    )
    assert (plan.action, plan.run_id, plan.task_ids) == (Action.CLEARED, run.run_id, ("b",))


@pytest.mark.parametrize(
    ("missing_runs", "action"),
    [(MissingRuns.SKIP, Action.SKIPPED), (MissingRuns.TRIGGER, Action.TRIGGERED)],
    ids=["skipped with a hint", "whole run when asked"],
)
def test_a_date_without_a_run_cannot_be_partially_run(missing_runs, action) -> None:
    (plan,) = decide([scheduled(1)], {}, subset(missing_runs=missing_runs), selected_tasks=["b"])
    assert plan.action == action and plan.task_ids is None
    if action is Action.SKIPPED:
        assert "missing_runs=trigger" in plan.why


def test_a_run_in_flight_is_not_touched() -> None:
    run = existing_run(1, "running")
    (plan,) = decide([scheduled(1)], {run.logical_date: run}, subset(), selected_tasks=["b"], ti_states={})
    assert plan.action == Action.SKIPPED and "in flight" in plan.why


def test_a_run_with_nothing_to_rerun_is_skipped() -> None:
    run = existing_run(1, "success")
    (plan,) = decide(
        [scheduled(1)],
        {run.logical_date: run},
        subset(reprocess=Reprocess.FAILED),
        selected_tasks=["b"],
        ti_states={run.run_id: {("b", -1): "success"}},
    )
    assert plan.action == Action.SKIPPED and "no selected task instance" in plan.why
