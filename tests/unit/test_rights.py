"""The rights a backfill request needs on its target: those of the equivalent native action."""

from __future__ import annotations

import pendulum
import pytest

from backfill_controller.domain.request import parse_request
from backfill_controller.domain.rights import Right, may_clear, rights_needed
from backfill_controller.domain.settings import Limits

READ = [Right.READ_DAG, Right.READ_RUNS]
CASES = {
    "missing dates only: create runs (as POST /api/v2/backfills)": ({}, [*READ, Right.CREATE_RUNS]),
    "reprocess failed: also clear whole runs": (
        {"reprocess": "failed"},
        [*READ, Right.CREATE_RUNS, Right.CLEAR_RUNS],
    ),
    "reprocess completed (native name of all)": (
        {"reprocess": "completed"},
        [*READ, Right.CREATE_RUNS, Right.CLEAR_RUNS],
    ),
    "task subset: clear task instances, create nothing": (
        {"task_regex": "^load"},
        [*READ, Right.READ_TASK_INSTANCES, Right.CLEAR_TASK_INSTANCES],
    ),
    "task subset triggering missing dates: also create runs": (
        {"task_regex": "^load", "missing_runs": "trigger"},
        [*READ, Right.READ_TASK_INSTANCES, Right.CREATE_RUNS, Right.CLEAR_TASK_INSTANCES],
    ),
    "dry run: read only": ({"dry_run": True, "reprocess": "all"}, READ),
    "dry run of a task subset: read its task instances too": (
        {"dry_run": True, "task_regex": "x"},
        [*READ, Right.READ_TASK_INSTANCES],
    ),
}


@pytest.mark.parametrize("conf, expected", CASES.values(), ids=list(CASES))
def test_rights_needed(conf, expected):
    request = parse_request(
        {"dag_id": "sales", "dates": ["2024-01-01"], **conf}, limits=Limits(), now=pendulum.now("UTC")
    )
    assert list(rights_needed(request)) == expected


CLEARS = {
    "default request": ({"dag_id": "d"}, False),
    "reprocess missing": ({"reprocess": "missing"}, False),
    "reprocess none (native)": ({"reprocess": "none"}, False),
    "reprocess failed": ({"reprocess": "failed"}, True),
    "reprocess all": ({"reprocess": "all"}, True),
    "task regex": ({"task_regex": "^a"}, True),
    "dry run": ({"reprocess": "all", "dry_run": True}, False),
    "hostile reprocess value": ({"reprocess": ["all"]}, False),
}


@pytest.mark.parametrize("conf, expected", CLEARS.values(), ids=list(CLEARS))
def test_may_clear_follows_the_run_conf(conf, expected):
    assert may_clear(conf) is expected


def test_every_right_is_described_as_method_and_entity():
    assert [r.describe() for r in Right] == [
        "GET on the DAG",
        "GET on its DAG runs",
        "GET on its task instances",
        "POST on its DAG runs",
        "PUT on its DAG runs",
        "PUT on its task instances",
    ]
