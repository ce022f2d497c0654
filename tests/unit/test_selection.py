"""Specification of task-subset backfills: which tasks a regex selects, which instances are cleared."""

from __future__ import annotations

import re
import time

import pytest

from backfill_controller.domain.plan import Action, decide
from backfill_controller.domain.request import BackfillRequest, InvalidRequest, MissingRuns, Reprocess
from backfill_controller.domain.selection import describe, matching, select_tasks, to_clear
from tests.unit.test_plan import JAN_1, existing_run, scheduled
from tests.unit.test_request import WINDOW, parse, refused

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


# --- a hostile task_regex cannot pin a worker -------------------------------------------------

LONG_TASK_ID = "a" * 200 + "!"
ORDINARY_TASK_IDS = [
    "extract",
    "extract_orders",
    "api_ingestion_task",
    "transform",
    "load",
    "audit",
    "a_to_b",
    "ba",
]


@pytest.mark.parametrize(
    ("regex", "expected"),
    [
        ("^extract", ("extract", "extract_orders")),
        ("load|transform", ("load", "transform")),
        ("a.*b", ("a_to_b",)),
    ],
    ids=["anchored prefix", "alternation", "dot-star"],
)
def test_ordinary_regexes_select_exactly_what_re_search_finds(regex, expected) -> None:
    graph = {task_id: [] for task_id in ORDINARY_TASK_IDS}
    assert select_tasks(graph, regex) == expected
    assert expected == tuple(sorted(t for t in ORDINARY_TASK_IDS if re.search(regex, t)))


def test_matching_finds_task_ids_like_re_search() -> None:
    assert matching("^a", ["a", "ba", "ab"]) == {"a", "ab"}
    assert matching(r"(\w)\1", ["aa", "ab"]) == {"aa"}  # backreferences keep working
    assert matching("x", []) == set()


@pytest.mark.parametrize(
    "regex",
    [
        "(a+)+$",
        "^(a|aa)+$",
        "(a*)*$",
        "(a|a)*$",
        r"(\w+\s?)*$",
        "(.*a){12}$",
    ],
    ids=[
        "nested plus (a+)+$",
        "overlapping alternation ^(a|aa)+$",
        "nested star (a*)*$",
        "duplicate alternation (a|a)*$",
        "optional separator (\\w+\\s?)*$",
        "repeated dot-star (.*a){12}$",
    ],
)
def test_a_catastrophic_regex_is_stopped_and_refused(regex) -> None:
    graph = {**GRAPH, LONG_TASK_ID: []}
    started = time.monotonic()
    with pytest.raises(InvalidRequest) as stopped:
        select_tasks(graph, regex)
    assert time.monotonic() - started < 5
    (error,) = stopped.value.errors
    assert (error.field, error.value) == ("task_regex", regex)
    assert "longer than 1 s" in error.problem
    assert str(error).startswith("task_regex: ")
    assert "a regular expression that matches task ids in bounded time" in str(error)
    assert "avoid nested quantifiers such as (a+)+" in str(error)


def test_a_long_catastrophic_regex_is_shortened_in_the_error() -> None:
    regex = "(?#" + "x" * 200 + ")(a+)+$"
    with pytest.raises(InvalidRequest) as stopped:
        select_tasks({LONG_TASK_ID: []}, regex)
    message = str(stopped.value)
    assert "task_regex" in message and regex[:40] in message and regex not in message


@pytest.mark.parametrize(
    ("regex", "problem"),
    [
        ("([", "does not compile"),
        ("a{99999999999}", "does not compile"),
        ("(" * 500 + ")" * 500, "does not compile"),
        ("a" * 1001, "is not a regular expression"),
    ],
    ids=["unbalanced", "repeat count too large", "groups nested too deep", "longer than 1000 characters"],
)
def test_a_bad_task_regex_is_refused_when_the_request_is_parsed(regex, problem) -> None:
    (error,) = refused({**WINDOW, "task_regex": regex})
    assert error.field == "task_regex" and problem in error.problem


def test_a_catastrophic_regex_still_parses_and_is_bounded_when_matched() -> None:
    assert parse({**WINDOW, "task_regex": "(a+)+$"}).task_regex == "(a+)+$"


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
