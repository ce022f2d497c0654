"""The controller's tasks take their work from the backfill's record only
(:mod:`backfill_controller.worker.work`): the WORK document read as a value, asked of the
api-server once per task process, and the ``plan``, ``segments`` and ``report`` tasks built on it.

The api-server is ``AirflowApi`` mocked, answering ``plan_run`` and ``work`` with WORK documents
(:mod:`tests.unit.work_documents`); a task instance is a mock whose ``xcom_pull`` calls are
recorded, so a test can say that no task reads its work from an XCom.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
from airflow.sdk.exceptions import AirflowFailException

import backfill_controller
from backfill_controller.client.rest import ApiError
from backfill_controller.contract import CONTROLLER_DAG_ID, Task, XCom, continuation_run_id
from backfill_controller.domain.plan import Action, Feeding
from backfill_controller.worker import work as work_module
from backfill_controller.worker.tasks import OverlapWait, list_segments, plan_backfill, report_backfill
from backfill_controller.worker.work import InconsistentWork, Work, mapped_kwargs, work_if_planned, work_of
from tests.unit.work_documents import HEAD, Served, date_plan, plans, work_document

RTI = "airflow.sdk.execution_time.task_runner.RuntimeTaskInstance"
SERVED = Served()
CONTINUATION = continuation_run_id(HEAD, 1)
THREE_A_CHUNK = Feeding(window=3, deferred=False, resume_at=2, chunk_size=3)


@pytest.fixture(autouse=True)
def api() -> Iterator[mock.Mock]:
    """The api-server, as the tasks' REST client reaches it; each test is a new task process."""
    SERVED.works.clear()
    work_module.forget()
    with mock.patch("backfill_controller.client.airflow_api.AirflowApi.from_connection") as build:
        build.return_value.work.side_effect = SERVED.work
        build.return_value.plan_run.side_effect = lambda run_id: {
            "status": "planned",
            "work": SERVED.work(run_id),
        }
        yield build.return_value
    work_module.forget()


def context(
    work: dict[str, Any] | None = None,
    *,
    run_id: str = HEAD,
    conf: dict[str, Any] | None = None,
    xcoms: dict[tuple[str, str], Any] | None = None,
) -> dict[str, Any]:
    """A task's context in controller run ``run_id``, whose ``work`` the api-server serves (none for
    ``work={}``); its ``ti`` answers ``xcom_pull`` from ``{(task_id, key): value}``."""
    if work != {}:
        SERVED.works[run_id] = work or work_document()
    ti = mock.Mock(dag_id=CONTROLLER_DAG_ID, run_id=run_id, map_index=-1)
    stored = xcoms or {}
    ti.xcom_pull.side_effect = lambda task_ids, key, **_: stored.get((task_ids, key))
    dag_run = mock.Mock(
        dag_id=CONTROLLER_DAG_ID,
        run_id=run_id,
        conf={"dag_id": "sales"} if conf is None else conf,
        triggering_user_name="ada",
    )
    return {"ti": ti, "dag_run": dag_run}


def pushed(ctx: dict[str, Any]) -> dict[str, Any]:
    """``{key: value}`` of the XComs the task pushed."""
    return {c.kwargs["key"]: c.kwargs["value"] for c in ctx["ti"].xcom_push.call_args_list}


# ------------------------------------------------------------------------------------ the value


def test_a_work_document_reads_as_a_value():
    work = Work.from_dict(work_document(plans("r1", "r2"), conf={"region": "eu"}, segments=3))
    assert (work.backfill_id, work.head_run_id, work.segment, work.segments) == (7, HEAD, 0, 3)
    assert work.request.target_dag_id == "sales" and dict(work.request.conf) == {"region": "eu"}
    assert [p.run_id for p in work.plans] == ["r1", "r2"] and work.run_ids == ("r1", "r2")
    assert work.execution is not None and work.execution.total == 2
    assert work.requester == "ada"


@pytest.mark.parametrize(
    "change, complaint",
    [
        ({"run_ids": ["r1", "elsewhere"]}, "not its acting dates"),
        (
            {"execution": {**work_document(plans("r1", "r2"))["execution"], "target_dag_id": "payroll"}},
            "targets",
        ),
        ({"execution": {**work_document(plans("r1", "r2"))["execution"], "total": 5}}, "counts 5 dates"),
    ],
    ids=["run ids of other dates", "an execution of another target", "an execution of other dates"],
)
def test_a_work_document_whose_parts_disagree_is_refused(change, complaint):
    with pytest.raises(InconsistentWork, match=complaint):
        Work.from_dict({**work_document(plans("r1", "r2")), **change})


def test_the_chunks_are_cut_from_the_acting_dates_in_run_order():
    dates = [*plans("r1", "r2"), date_plan(3, "old", Action.SKIPPED), *plans("r4", "r5", "r6", first_day=4)]
    work = Work.from_dict(work_document(dates, feeding=THREE_A_CHUNK))
    assert work.chunk_count == 2
    last = work.chunk(1)
    assert (last.first_position, [d["trigger_run_id"] for d in last.dates]) == (3, ["r5", "r6"])
    assert last.label == "2024-01-05T00:00:00+00:00 .. 2024-01-06T00:00:00+00:00"
    assert work.chunk(2).dates == ()


def test_the_mapped_kwargs_name_the_chunk_and_nothing_it_does():
    work = Work.from_dict(work_document(plans("r1", "r2", "r3", "r4"), feeding=THREE_A_CHUNK))
    assert mapped_kwargs(work) == [
        {"chunk_index": 0, "dates_label": "2024-01-01T00:00:00+00:00 .. 2024-01-03T00:00:00+00:00"},
        {"chunk_index": 1, "dates_label": "2024-01-04T00:00:00+00:00"},
    ]


def test_a_dry_run_maps_no_chunk():
    work = Work.from_dict(work_document(plans("r1"), dry_run=True))
    assert work.execution is None and work.run_ids == () and mapped_kwargs(work) == []


# ---------------------------------------------------------------------- asking the api-server


def test_the_work_is_asked_once_per_task_process_and_run(api):
    ctx = context()
    assert work_of(ctx) is work_of(ctx)
    api.work.assert_called_once_with(HEAD)
    work_of(context(run_id=CONTINUATION, work=work_document(segment=1, segments=2)))
    work_module.forget()  # a task resumed from a deferral: a new process
    work_of(ctx)
    assert [c.args for c in api.work.call_args_list] == [(HEAD,), (CONTINUATION,), (HEAD,)]


@pytest.mark.parametrize("status", [404, 409], ids=["no planned backfill", "cleared since"])
def test_a_run_without_work_has_none_and_acts_on_nothing(api, status):
    api.work.side_effect = ApiError(status, "no")
    assert work_if_planned(context(work={})) is None
    with pytest.raises(AirflowFailException, match="belongs to no planned backfill"):
        work_of(context(work={}))


def test_a_refused_question_fails_the_task_and_a_transient_error_is_raised_for_a_retry(api):
    api.work.side_effect = ApiError(403, "only the controller's own account")
    with pytest.raises(AirflowFailException, match="own account"):
        work_of(context(work={}))
    api.work.side_effect = ApiError(503, "busy")
    with pytest.raises(ApiError):
        work_of(context(work={}))


def test_an_answer_that_is_not_a_runs_work_fails_the_task():
    with pytest.raises(AirflowFailException, match="not this run's work"):
        work_of(context({**work_document(plans("r1")), "run_ids": ["elsewhere"]}))


# ------------------------------------------------------------------------------------ plan


def test_the_plan_task_returns_chunks_of_the_records_work_and_pushes_it_for_readers(api):
    work = work_document(plans("r1", "r2", "r3", "r4"), feeding=THREE_A_CHUNK, segments=2)
    ctx = context(work)
    assert plan_backfill(**ctx) == mapped_kwargs(Work.from_dict(work))
    facts = pushed(ctx)
    assert set(facts) == {XCom.REQUEST, XCom.PLANS, XCom.RUN_IDS, XCom.EXECUTION, XCom.SEGMENTS, XCom.STATS}
    assert facts[XCom.REQUEST] == work["request"] and facts[XCom.PLANS] == work["plans"]
    assert facts[XCom.RUN_IDS] == ["r1", "r2", "r3", "r4"] and facts[XCom.SEGMENTS] == 2
    assert facts[XCom.EXECUTION] == work["execution"]
    ctx["ti"].xcom_pull.assert_not_called()
    work_of(ctx)  # the plan task's process holds the work it was given
    api.work.assert_not_called()


def test_a_continuations_plan_task_reads_no_xcom_of_its_head(api):
    work = work_document(plans("r3", first_day=3), segment=1, segments=2)
    ctx = context(work, run_id=CONTINUATION, conf={"dag_id": "sales", "continues": {"head_run_id": HEAD}})
    assert plan_backfill(**ctx) == [{"chunk_index": 0, "dates_label": "2024-01-03T00:00:00+00:00"}]
    api.plan_run.assert_called_once_with(CONTINUATION)
    assert all(c.kwargs.get("run_id") != HEAD for c in ctx["ti"].xcom_pull.call_args_list)
    ctx["ti"].xcom_pull.assert_not_called()
    assert pushed(ctx)[XCom.PLANS] == work["plans"]


def test_an_overlapping_backfill_is_waited_for_when_the_request_says_so(api):
    api.plan_run.side_effect = lambda run_id: {"status": "overlap", "message": "dates overlap X"}
    with pytest.raises(OverlapWait, match="dates overlap X"):
        plan_backfill(**context(work={}, conf={"dag_id": "sales", "on_overlap": "wait"}))
    ctx = context(work={})
    with pytest.raises(AirflowFailException, match="dates overlap X; wait for it"):
        plan_backfill(**ctx)
    assert pushed(ctx)[XCom.ERROR].startswith("dates overlap X")


@pytest.mark.parametrize(
    "answer, error",
    [
        (ApiError(422, "dates: not a date"), "dates: not a date"),
        (
            {"status": "continuation", "head_run_id": HEAD, "segment": 1},
            "answered the plan with 'continuation'",
        ),
        (
            {"status": "planned", "work": {**work_document(plans("r1")), "run_ids": ["elsewhere"]}},
            "not this run's work",
        ),
    ],
    ids=["refused", "an answer of no work", "work that contradicts itself"],
)
def test_a_plan_without_work_fails_saying_why(api, answer, error):
    if isinstance(answer, Exception):
        api.plan_run.side_effect = answer
    else:
        api.plan_run.side_effect = lambda run_id: answer
    ctx = context(work={})
    with pytest.raises(AirflowFailException, match=error):
        plan_backfill(**ctx)
    assert error in pushed(ctx)[XCom.ERROR]
    ctx["ti"].xcom_pull.assert_not_called()


def test_a_transient_planning_error_is_raised_for_a_retry(api):
    api.plan_run.side_effect = ApiError(503, "busy")
    with pytest.raises(ApiError):
        plan_backfill(**context(work={}))


# -------------------------------------------------------------------------------- segments


@pytest.mark.parametrize(
    "work, run_id, expected",
    [
        (work_document(segments=3), HEAD, [{"segment_index": 1}, {"segment_index": 2}]),
        (work_document(segments=3, segment=1), CONTINUATION, []),
        (work_document(segments=3, dry_run=True), HEAD, []),
        ({}, HEAD, []),
    ],
    ids=["head", "continuation", "dry run", "no work"],
)
def test_the_segments_task_maps_one_segment_index_per_continuation_of_the_head(work, run_id, expected):
    ctx = context(work, run_id=run_id)
    assert list_segments(**ctx) == expected
    ctx["ti"].xcom_pull.assert_not_called()


# ---------------------------------------------------------------------------------- report


def reported(ctx: dict[str, Any], runs: dict[str, str]) -> dict[str, Any]:
    """The report task's result (raised or returned), the target runs being in ``runs``' states
    (others do not exist) and chunk 0 of ``trigger`` having succeeded."""

    def count(dag_id: str, run_ids: Any = (), states: Any = None, **_: Any) -> int:
        return sum(1 for r in run_ids if r in runs and (states is None or runs[r] in states))

    run_id = ctx["ti"].run_id
    with (
        mock.patch(f"{RTI}.get_task_states", return_value={run_id: {"trigger_0": "success"}}),
        mock.patch(f"{RTI}.get_dr_count", side_effect=count),
        mock.patch(f"{RTI}.get_dagrun_state", side_effect=lambda dag_id, run_id: runs[run_id]),
        mock.patch("backfill_controller.worker.tasks.notify_end", return_value=[]),
    ):
        try:
            return report_backfill(**ctx)
        except AirflowFailException:
            return pushed(ctx)[XCom.RETURN_VALUE]


def test_the_report_reads_what_the_run_did_from_its_work_not_an_error_xcom(api):
    ctx = context(work_document(plans("r1", "r2")), xcoms={(Task.PLAN, XCom.ERROR): "forged"})
    report = reported(ctx, {"r1": "success", "r2": "success"})
    assert report["success"] is True and report["counts"]["dates"] == 2 and "error" not in report
    (run_id, kept), _ = api.keep_report.call_args
    assert run_id == HEAD and kept["counts"]["dates"] == 2


def test_a_run_without_work_reports_the_plan_tasks_error(api):
    ctx = context(work={}, xcoms={(Task.PLAN, XCom.ERROR): "dates: not a date"})
    report = reported(ctx, {})
    assert report["success"] is False and report["error"] == "dates: not a date"


def test_a_later_segment_that_never_ran_and_whose_dates_are_unknown_is_no_success():
    ctx = context(work_document(plans("r1"), segments=2))
    report = reported(ctx, {"r1": "success"})
    assert report["success"] is False and report["unreported_segments"] == [1]
    assert report["segments"] == 2


def test_a_later_segment_that_never_ran_reports_its_recorded_dates_cancelled():
    ctx = context(work_document(plans("r1"), segments=2))
    SERVED.works[f"{HEAD}#1"] = work_document(plans("r2", first_day=2), segment=1, segments=2)
    try:
        report = reported(ctx, {"r1": "success"})
    finally:
        del SERVED.works[f"{HEAD}#1"]
    assert report["success"] is False and "unreported_segments" not in report
    assert report["counts"]["dates"] == 2 and report["counts"].get("cancelled") == 1


def test_a_continuations_report_is_its_part_kept_in_the_record_and_reads_no_xcom(api):
    ctx = context(work_document(plans("r3", first_day=3), segment=1, segments=2), run_id=CONTINUATION)
    report = reported(ctx, {"r3": "failed"})
    assert report["success"] is False and report["failed_dates"] == ["2024-01-03T00:00:00+00:00"]
    api.keep_report.assert_called_once_with(CONTINUATION, report)
    ctx["ti"].xcom_pull.assert_not_called()


def test_the_heads_report_merges_each_segments_part_as_the_record_keeps_it():
    ctx = context(work_document(plans("r1"), segments=2))
    part = {**work_document(plans("r2", first_day=2), segment=1, segments=2)}
    SERVED.works[f"{HEAD}#1"] = part | {
        "report": {
            "success": False,
            "counts": {"dates": 1, "failed": 1},
            "failed_dates": ["2024-01-02T00:00:00+00:00"],
            "dates": [],
        }
    }
    try:
        report = reported(ctx, {"r1": "success"})
    finally:
        del SERVED.works[f"{HEAD}#1"]
    assert report["success"] is False and report["failed_dates"] == ["2024-01-02T00:00:00+00:00"]
    assert report["counts"]["dates"] == 2


# -------------------------------------------------- no task reads its work from an XCom


WORKER = Path(backfill_controller.__file__).resolve().parent / "worker"
#: The plan task's XComs that only people and the Backfills page read.
FOR_READERS = {XCom.REQUEST.name, XCom.PLANS.name, XCom.RUN_IDS.name, XCom.EXECUTION.name, XCom.SEGMENTS.name}


def xcom_reads(tree: ast.AST) -> Iterator[tuple[str, str]]:
    """``(function, key)`` of each ``xcom_pull`` call whose key is one of the contract's names
    (``XCom.PLANS``) or ``XCom.segment(k)`` (``segment``), by the function it is in."""
    for function in ast.walk(tree):
        if not isinstance(function, ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        for node in ast.walk(function):
            if not (isinstance(node, ast.Call) and getattr(node.func, "attr", None) == "xcom_pull"):
                continue
            for keyword in node.keywords:
                key = keyword.value
                if keyword.arg != "key":
                    continue
                if isinstance(key, ast.Attribute) and getattr(key.value, "id", None) == "XCom":
                    yield function.name, key.attr
                elif isinstance(key, ast.Call) and getattr(key.func, "attr", None) == "segment":
                    yield function.name, "segment"


def worker_xcom_reads() -> list[tuple[str, str, str]]:
    trees = {path.name: ast.parse(path.read_text(encoding="utf-8")) for path in sorted(WORKER.glob("*.py"))}
    return [(name, function, key) for name, tree in trees.items() for function, key in xcom_reads(tree)]


def test_the_scan_finds_a_task_reading_its_plan_from_an_xcom():
    code = "\n".join(
        [
            "def f(ti):",
            "    ti.xcom_pull(task_ids=Task.PLAN, key=XCom.PLANS)",
            "    ti.xcom_pull(key=XCom.segment(1))",
        ]
    )
    assert list(xcom_reads(ast.parse(code))) == [("f", "PLANS"), ("f", "segment")]


def test_no_task_reads_the_plan_it_acts_on_from_an_xcom():
    reads = worker_xcom_reads()
    assert reads, "the scan found no xcom_pull at all"
    assert [r for r in reads if r[2] in FOR_READERS] == []


def test_no_task_reads_a_segments_plans_from_an_xcom():
    assert [r for r in worker_xcom_reads() if r[2] == "segment"] == []


def test_a_task_process_logs_in_once_for_all_its_calls():
    work_module.forget()
    with mock.patch("backfill_controller.client.airflow_api.AirflowApi.from_connection") as build:
        assert work_module.api() is work_module.api() is build.return_value
        work_module.kept_chunks(HEAD)
        assert build.call_count == 1
        work_module.forget()  # a task resumed from a deferral: a new process, a new login
        work_module.api()
        assert build.call_count == 2
