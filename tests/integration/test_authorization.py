"""A backfill does only what its requester may do on the target, as Airflow itself would allow it.

FAB (the PostgreSQL suite) with per-DAG roles: the rights a data engineer is given on one DAG, and
nothing of a DAG they may not read leaks through the controller. SimpleAuthManager (the SQLite
suite): what each of its fixed roles may do.
"""

from __future__ import annotations

import time
from urllib.parse import quote

import pytest
from conftest import SECRET
from test_controller import TIMEOUT
from test_front_door import post

from backfill_controller.contract import (
    CATCHUP_PREFIX,
    CONTINUES_KEY,
    CONTROLLER_DAG_ID,
    TARGET_RUN_PREFIX,
    URL_PREFIX,
    Task,
    XCom,
    continuation_run_id,
)

FRONT_DOOR = f"{URL_PREFIX}/api/backfills"
X = "bf_secured"  # task ids secret_ingest_step, secret_publish_step
READABLE = "bf_daily"
SECRET_MARKS = ("secret_ingest_step", "secret_publish_step", f"{TARGET_RUN_PREFIX}2024-12-01")

#: Rights on backfill_controller itself: trigger it, read its runs, task instances and XComs.
CONTROLLER_RIGHTS = [
    ("can_read", f"DAG:{CONTROLLER_DAG_ID}"),
    ("can_edit", f"DAG:{CONTROLLER_DAG_ID}"),
    ("can_create", "DAG Runs"),
    ("can_read", "DAG Runs"),
    ("can_read", "Task Instances"),
    ("can_read", "XComs"),
]
FAB_ROLES = {
    # may backfill X: read it, edit it (creating and clearing its runs and task instances)
    "x_backfiller": [
        *CONTROLLER_RIGHTS,
        ("can_read", f"DAG:{X}"),
        ("can_edit", f"DAG:{X}"),
        ("can_edit", "DAG Runs"),
    ],
    # may read X: dry runs only
    "x_reader": [*CONTROLLER_RIGHTS, ("can_read", f"DAG:{X}")],
    # may trigger and cancel controller runs, and read X, but not edit X's runs
    "x_canceller": [*CONTROLLER_RIGHTS, ("can_edit", "DAG Runs"), ("can_read", f"DAG:{X}")],
    # rights on the controller, none on X
    "stranger": CONTROLLER_RIGHTS,
    # operates controller runs (clear, delete) and edits XComs, reads another DAG; nothing on X
    "operator": [
        *CONTROLLER_RIGHTS,
        ("can_edit", "DAG Runs"),
        ("can_delete", "DAG Runs"),
        ("can_edit", "XComs"),
        ("can_read", f"DAG:{READABLE}"),
    ],
}
FAB_USERS = {
    "bea": "x_backfiller",
    "rita": "x_reader",
    "carl": "x_canceller",
    "sam": "stranger",
    "mallory": "operator",
}


def trigger_as(airflow, token: str, conf: dict, run_id: str | None = None):
    return airflow.post_run(CONTROLLER_DAG_ID, conf, run_id, token=token)


def runs_of(airflow, dag_id: str, days: list[str] | None = None) -> list[tuple]:
    """Every run of ``dag_id`` (or those of the logical ``days`` only): id, state, end, note."""
    data = airflow._json("GET", f"/api/v2/dags/{dag_id}/dagRuns", params={"limit": 100, "order_by": "run_id"})
    runs = [r for r in data["dag_runs"] if days is None or (r["logical_date"] or "")[:10] in days]
    return [(r["dag_run_id"], r["state"], r["end_date"], r.get("note")) for r in runs]


def controller_traces(airflow, run_id: str) -> str:
    """Everything the controller kept of one run: its XComs and its task logs."""
    entries = airflow._json(
        "GET",
        f"/api/v2/dags/{CONTROLLER_DAG_ID}/dagRuns/{run_id}/taskInstances/~/xcomEntries",
        params={"limit": 100},
    )["xcom_entries"]
    values = [
        str(airflow.xcom(CONTROLLER_DAG_ID, run_id, e["task_id"], key=e["key"], map_index=e["map_index"]))
        for e in entries
    ]
    logs = [
        path.read_text(errors="replace")
        for path in airflow.home.joinpath("logs", f"dag_id={CONTROLLER_DAG_ID}", f"run_id={run_id}").rglob(
            "*.log"
        )
    ]
    return "\n".join(values + logs)


# ---------------------------------------------------------------------------------------- FAB


@pytest.fixture(scope="module")
def fab(auth_manager_name, airflow) -> dict[str, str]:
    """The FAB roles and users; ``{user: token}``."""
    if auth_manager_name != "fab":
        pytest.skip("per-DAG roles need FAB (the PostgreSQL suite runs it)")
    for role, permissions in FAB_ROLES.items():
        airflow.create_role(role, permissions)
    for user, role in FAB_USERS.items():
        airflow.create_user(user, SECRET, [role])
    tokens = {user: airflow.token_for(user, SECRET) for user in FAB_USERS}
    # A run of X the stranger must never learn of: bea backfills 2024-12-01.
    started = post(airflow, FRONT_DOOR, {"dag_id": X, "dates": ["2024-12-01"]}, token=tokens["bea"])
    assert started.status_code == 201, started.text
    assert airflow.wait_for_run(CONTROLLER_DAG_ID, started.json()["dag_run_id"], timeout=TIMEOUT) == "success"
    return tokens


@pytest.mark.backend("postgres")
def test_a_user_without_rights_on_the_target_is_refused_and_learns_nothing_of_it(airflow, fab, figures):
    before = runs_of(airflow, X)
    request = {"dag_id": X, "start_date": "2024-12-01", "end_date": "2024-12-03", "reprocess": "all"}
    refused = post(airflow, FRONT_DOOR, request, token=fab["sam"])
    dry = post(airflow, FRONT_DOOR + "/dry_run", request, token=fab["sam"])
    triggered = trigger_as(airflow, fab["sam"], request)
    assert triggered.status_code == 200, triggered.text  # sam may trigger the controller itself
    run_id = triggered.json()["dag_run_id"]
    state = airflow.wait_for_run(CONTROLLER_DAG_ID, run_id, timeout=TIMEOUT)
    report = airflow.xcom(CONTROLLER_DAG_ID, run_id, Task.REPORT)
    traces = controller_traces(airflow, run_id)
    leaked = [mark for mark in SECRET_MARKS if mark in refused.text + dry.text + traces]
    figures.bad_input(
        "forbidden: a user without rights on the target (front door, dry run, REST trigger)",
        refused.status_code == dry.status_code == 403 and state == "failed" and not leaked,
    )
    assert refused.status_code == 403, refused.text
    assert "sam may not backfill DAG 'bf_secured': missing right" in refused.json()["detail"]["message"]
    assert "POST on its DAG runs" in refused.text and "PUT on its DAG runs" in refused.text
    assert dry.status_code == 403 and "GET on the DAG" in dry.text, dry.text
    assert state == "failed"
    assert "sam may not backfill DAG 'bf_secured': missing right" in report["error"] and report["dates"] == []
    assert leaked == []
    assert runs_of(airflow, X) == before  # no new, cleared or changed run


@pytest.mark.backend("postgres")
def test_the_same_request_from_a_user_with_rights_on_the_target_succeeds(airflow, fab):
    request = {"dag_id": X, "start_date": "2024-12-01", "end_date": "2024-12-03", "reprocess": "all"}
    started = post(airflow, FRONT_DOOR, request, token=fab["bea"])
    assert started.status_code == 201, started.text
    assert airflow.wait_for_run(CONTROLLER_DAG_ID, started.json()["dag_run_id"], timeout=TIMEOUT) == "success"
    triggered = trigger_as(
        airflow, fab["bea"], {**request, "dates": ["2024-12-04"], "start_date": None, "end_date": None}
    )
    assert triggered.status_code == 200, triggered.text
    assert (
        airflow.wait_for_run(CONTROLLER_DAG_ID, triggered.json()["dag_run_id"], timeout=TIMEOUT) == "success"
    )
    days = {r[0][len(TARGET_RUN_PREFIX) :][:10] for r in runs_of(airflow, X)}
    assert {"2024-12-01", "2024-12-02", "2024-12-03", "2024-12-04"} <= days


@pytest.mark.backend("postgres")
def test_a_read_only_user_on_the_target_gets_a_dry_run_and_nothing_else(airflow, fab):
    before = runs_of(airflow, X)
    request = {"dag_id": X, "start_date": "2024-12-01", "end_date": "2024-12-06"}
    dry = post(airflow, FRONT_DOOR + "/dry_run", request, token=fab["rita"])
    assert dry.status_code == 200, dry.text
    assert [d["action"] for d in dry.json()["dates"]][-2:] == ["triggered", "triggered"]
    refused = post(airflow, FRONT_DOOR, request, token=fab["rita"])
    assert refused.status_code == 403 and "POST on its DAG runs" in refused.text, refused.text
    triggered = trigger_as(airflow, fab["rita"], request)
    run_id = triggered.json()["dag_run_id"]
    assert airflow.wait_for_run(CONTROLLER_DAG_ID, run_id, timeout=TIMEOUT) == "failed"
    assert "rita may not backfill" in airflow.xcom(CONTROLLER_DAG_ID, run_id, Task.REPORT)["error"]
    assert runs_of(airflow, X) == before


@pytest.mark.backend("postgres")
def test_the_backfills_page_shows_a_backfill_only_to_readers_of_its_target(airflow, fab):
    for user, visible in (("sam", False), ("rita", True)):
        page = airflow.api("GET", FRONT_DOOR, params={"limit": 200}, token=fab[user])
        assert page.status_code == 200, page.text
        ours = [b for b in page.json()["backfills"] if b["target_dag_id"] == X]
        assert ours, user
        for backfill in ours:
            assert backfill["visible"] is visible
            if not visible:
                path = f"{FRONT_DOOR}/{quote(backfill['run_id'], safe='')}"
                detail = airflow.api("GET", path, token=fab[user])
                assert detail.status_code == 200, detail.text
                assert detail.json()["cells"] == [] and detail.json()["eta"] is None
                assert backfill["reason"] == "" and backfill["error"] is None and backfill["eta"] is None
                assert set(backfill["window"].values()) == {None}
                assert not any(mark in str(backfill) + detail.text for mark in SECRET_MARKS)


@pytest.mark.backend("postgres")
def test_the_new_backfill_form_offers_only_the_dags_each_user_may_backfill(airflow, fab):
    offered = {}
    for user in ("bea", "rita", "sam"):
        answer = airflow.api("GET", f"{URL_PREFIX}/api/backfillable_dags", token=fab[user])
        assert answer.status_code == 200, answer.text
        offered[user] = answer.json()["dag_ids"]
    assert X in offered["bea"] and CONTROLLER_DAG_ID not in offered["bea"]
    assert X not in offered["rita"] and X not in offered["sam"]  # read only; no rights


@pytest.mark.backend("postgres")
def test_a_canceller_without_edit_rights_on_the_target_fails_nothing_of_it(airflow, fab):
    dates = [f"2024-12-{day:02d}" for day in range(10, 18)]
    started = post(airflow, FRONT_DOOR, {"dag_id": X, "dates": dates, "max_active_runs": 1}, token=fab["bea"])
    assert started.status_code == 201, started.text
    head = started.json()["dag_run_id"]
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:  # the target holds its runs back: the backfill keeps some queued
        queued = [r for r in runs_of(airflow, X) if r[1] == "queued"]
        if queued:
            break
        time.sleep(1)
    assert queued, runs_of(airflow, X)
    cancel = airflow.api(
        "PATCH",
        f"/api/v2/dags/{CONTROLLER_DAG_ID}/dagRuns/{head}",
        json={"state": "failed"},
        token=fab["carl"],
    )
    assert cancel.status_code == 200, cancel.text
    queued_ids = {r[0] for r in queued}
    time.sleep(3)
    after = {r[0]: r[1] for r in runs_of(airflow, X)}
    assert all(after[run_id] != "failed" for run_id in queued_ids), after  # carl may not edit X's runs
    # ... while bea, who may, fails what is still queued when she cancels hers.
    started = post(
        airflow,
        FRONT_DOOR,
        {
            "dag_id": X,
            "dates": ["2024-12-20", "2024-12-21", "2024-12-22", "2024-12-23"],
            "max_active_runs": 1,
        },
        token=fab["bea"],
    )
    assert started.status_code == 201, started.text
    second = started.json()["dag_run_id"]
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        queued = [
            r for r in runs_of(airflow, X) if r[1] == "queued" and r[0] >= f"{TARGET_RUN_PREFIX}2024-12-2"
        ]
        if queued:
            break
        time.sleep(1)
    cancel = airflow.api(
        "PATCH",
        f"/api/v2/dags/{CONTROLLER_DAG_ID}/dagRuns/{second}",
        json={"state": "failed"},
        token=fab["bea"],
    )
    assert cancel.status_code == 200, cancel.text
    after = {r[0]: r[1] for r in runs_of(airflow, X)}
    assert queued and all(after[r[0]] == "failed" for r in queued), after


@pytest.mark.backend("postgres")
def test_only_a_user_who_may_change_the_targets_runs_operates_its_backfill(airflow, fab, figures):
    """sam (nothing on X) learns nothing of X; rita (reads X) may not change the controller's runs;
    carl (may, and reads X) lacks PUT on X's runs; bea (may backfill X) pauses and resumes it."""
    run_id = airflow.trigger(CONTROLLER_DAG_ID, {"dag_id": X, "dates": ["2024-12-20", "2024-12-21"]})
    answers = {
        user: post(airflow, f"{FRONT_DOOR}/{run_id}/pause", {}, token=fab[user])
        for user in ("sam", "rita", "carl")
    }
    leaked = [mark for mark in (X, *SECRET_MARKS) if mark in answers["sam"].text]
    figures.bad_input(
        "forbidden: pause a backfill of a DAG the user may not change",
        all(a.status_code == 403 for a in answers.values()) and not leaked,
    )
    assert answers["sam"].status_code == 403 and "sam may not operate this backfill" in answers["sam"].text
    assert leaked == []
    assert answers["rita"].status_code == answers["carl"].status_code == 403
    assert "rita may not change the runs of 'backfill_controller': missing right PUT" in answers["rita"].text
    assert "carl may not operate a backfill of 'bf_secured': missing right PUT on its DAG runs" in (
        answers["carl"].text
    )
    paused = post(airflow, f"{FRONT_DOOR}/{run_id}/pause", {}, token=fab["bea"])
    if paused.status_code == 409:  # it had finished already: nothing to pause
        assert "the backfill is succeeded" in paused.text
    else:
        assert paused.status_code == 200, paused.text
        resumed = post(airflow, f"{FRONT_DOOR}/{run_id}/resume", {}, token=fab["bea"])
        assert resumed.status_code == 200, resumed.text
        history = [(h["action"], h["by"]) for h in resumed.json()["history"]]
        assert history == [("pause", "bea"), ("resume", "bea")]
    assert airflow.wait_for_run(CONTROLLER_DAG_ID, run_id, timeout=TIMEOUT) == "success"


@pytest.mark.backend("postgres")
def test_a_finished_backfill_marked_failed_later_fails_nothing(airflow, fab):
    started = post(airflow, FRONT_DOOR, {"dag_id": X, "dates": ["2024-12-28"]}, token=fab["bea"])
    assert started.status_code == 201, started.text
    head = started.json()["dag_run_id"]
    assert airflow.wait_for_run(CONTROLLER_DAG_ID, head, timeout=TIMEOUT) == "success"
    run_id = f"{TARGET_RUN_PREFIX}2024-12-28T00:00:00+00:00"
    airflow.set_paused(X, True)
    try:  # someone re-runs that date later: its run waits queued (the target is paused)
        cleared = airflow.api("POST", f"/api/v2/dags/{X}/dagRuns/{run_id}/clear", json={"dry_run": False})
        assert cleared.status_code == 200, cleared.text
        assert airflow.run_state(X, run_id) == "queued"
        marked = airflow.api(
            "PATCH",
            f"/api/v2/dags/{CONTROLLER_DAG_ID}/dagRuns/{head}",
            json={"state": "failed"},
            token=fab["bea"],
        )
        assert marked.status_code == 200, marked.text
        assert airflow.run_state(X, run_id) == "queued"  # not the old backfill's to cancel any more
    finally:
        airflow.set_paused(X, False)


# ------------------------------------------------------------- attacks on a backfill's authority


def _finished_backfill_of_x(airflow, fab, dates: list[str]) -> str:
    """bea backfills ``dates`` of X (re-running what exists): the head run, ended successfully."""
    started = post(airflow, FRONT_DOOR, {"dag_id": X, "dates": dates, "reprocess": "all"}, token=fab["bea"])
    assert started.status_code == 201, started.text
    head = started.json()["dag_run_id"]
    assert airflow.wait_for_run(CONTROLLER_DAG_ID, head, timeout=TIMEOUT) == "success"
    return head


@pytest.mark.backend("postgres")
def test_clearing_someone_elses_ended_backfill_replays_nothing(airflow, fab, figures):
    """mallory may clear controller runs (PUT on them) but has no right on X: clearing bea's ended
    backfill of X must not clear or re-run X's runs again as bea."""
    dates = ["2024-11-01", "2024-11-02"]
    head = _finished_backfill_of_x(airflow, fab, dates)
    before = runs_of(airflow, X, dates)  # its dates only: another test's run of X may still be running
    cleared = airflow.api(
        "POST",
        f"/api/v2/dags/{CONTROLLER_DAG_ID}/dagRuns/{quote(head, safe='')}/clear",
        json={"dry_run": False},
        token=fab["mallory"],
    )
    assert cleared.status_code == 200, cleared.text  # Airflow allows it: the controller must refuse
    state = airflow.wait_for_run(CONTROLLER_DAG_ID, head, timeout=TIMEOUT)
    error = airflow.xcom(CONTROLLER_DAG_ID, head, Task.REPORT)["error"]
    figures.bad_input("forged: a cleared controller run of an ended backfill", state == "failed")
    assert state == "failed"
    assert "cleared" in error and "rerun_failed" in error, error
    assert runs_of(airflow, X, dates) == before


@pytest.mark.backend("postgres")
def test_a_run_id_reused_after_its_run_was_deleted_is_not_trusted(airflow, fab, figures):
    """mallory's dry run under ``reuse1`` is deleted; a new controller run under the same run_id,
    for X, must be authorized afresh (and refused), not trusted for the old record."""
    dry = post(
        airflow,
        FRONT_DOOR + "?run_id=reuse1",
        {"dag_id": READABLE, "dates": ["2024-11-05"], "dry_run": True},
        token=fab["mallory"],
    )
    assert dry.status_code == 201, dry.text
    assert airflow.wait_for_run(CONTROLLER_DAG_ID, "reuse1", timeout=TIMEOUT) == "success"
    deleted = airflow.api("DELETE", f"/api/v2/dags/{CONTROLLER_DAG_ID}/dagRuns/reuse1", token=fab["mallory"])
    assert deleted.status_code == 204, deleted.text
    again = post(
        airflow,
        FRONT_DOOR + "?run_id=reuse1",
        {"dag_id": READABLE, "dates": ["2024-11-06"], "dry_run": True},
        token=fab["mallory"],
    )
    assert again.status_code == 409 and "run_id 'reuse1' is taken" in again.text, again.text
    before = runs_of(airflow, X)
    forged = trigger_as(
        airflow, fab["mallory"], {"dag_id": X, "dates": ["2024-11-05"], "reprocess": "all"}, run_id="reuse1"
    )
    assert forged.status_code == 200, forged.text
    state = airflow.wait_for_run(CONTROLLER_DAG_ID, "reuse1", timeout=TIMEOUT)
    figures.bad_input("forged: a controller run re-created under an old run_id", state == "failed")
    assert state == "failed"
    error = airflow.xcom(CONTROLLER_DAG_ID, "reuse1", Task.REPORT)["error"]
    assert "created after the backfill recorded under that run_id" in error, error
    assert runs_of(airflow, X) == before


@pytest.mark.backend("postgres")
def test_the_plan_endpoint_answers_only_the_controllers_own_account(airflow, fab, figures):
    head = _finished_backfill_of_x(airflow, fab, ["2024-11-08"])
    path = f"{URL_PREFIX}/api/controller_runs/{quote(head, safe='')}/plan"
    answers = {user: post(airflow, path, {}, token=fab[user]) for user in ("rita", "bea")}
    figures.bad_input(
        "forbidden: the plan endpoint called by a user", all(a.status_code == 403 for a in answers.values())
    )
    for user, answer in answers.items():
        assert answer.status_code == 403, (user, answer.text)
        assert "plans" not in answer.text and "2024-11-08" not in answer.text
    listed = airflow.api("GET", FRONT_DOOR, params={"limit": 200}, token=fab["bea"]).json()["backfills"]
    assert [b["phase"] for b in listed if b["run_id"] == head] == ["succeeded"]


def _xcom_path(run_id: str, key: str) -> str:
    run = quote(run_id, safe="")
    return f"/api/v2/dags/{CONTROLLER_DAG_ID}/dagRuns/{run}/taskInstances/{Task.PLAN}/xcomEntries/{key}"


@pytest.mark.backend("postgres")
def test_rewritten_plan_xcoms_change_nothing_that_runs(airflow, fab, figures):
    """mallory (edits XComs, nothing on X or on its other DAG's runs) rewrites the plan of bea's
    paused two-segment backfill of X: its request (another DAG, another conf), its later
    segment's dates, and the trigger task's mapped kwargs (another DAG's run ids). Resumed, the
    backfill runs exactly bea's dates of X, and nothing of the other DAG."""
    dates = ["2024-11-12", "2024-11-13", "2024-11-14", "2024-11-15"]
    request = {"dag_id": X, "dates": dates, "segment_size": 2, "max_active_runs": 1}
    started = post(airflow, FRONT_DOOR, request, token=fab["bea"])
    assert started.status_code == 201, started.text
    head = started.json()["dag_run_id"]
    paused = post(airflow, f"{FRONT_DOOR}/{quote(head, safe='')}/pause", {}, token=fab["bea"])
    assert paused.status_code == 200, paused.text
    deadline = time.monotonic() + 120
    while airflow.api("GET", _xcom_path(head, XCom.REQUEST)).status_code != 200:
        assert time.monotonic() < deadline, "the head run never planned"
        time.sleep(1)
    forged_day = "2024-11-20T00:00:00+00:00"
    forged_request = {**airflow.xcom(CONTROLLER_DAG_ID, head, Task.PLAN, key=XCom.REQUEST)}
    forged_request.update(dag_id=READABLE, dates=[forged_day], conf={"forged": True})
    forged_kwargs = [
        {
            "chunk_index": k,
            "trigger_dag_id": READABLE,
            "dates": [
                {"trigger_run_id": f"forged__{k}", "logical_date": forged_day, "run_after": forged_day}
            ],
        }
        for k in range(2)
    ]
    forged_plans = [{"logical_date": forged_day, "run_id": "forged__segment", "action": "triggered"}]
    answers = {
        key: airflow.api("PATCH", _xcom_path(head, key), json={"value": value}, token=fab["mallory"])
        for key, value in (
            (XCom.REQUEST, forged_request),
            (XCom.RETURN_VALUE, forged_kwargs),
            ("segment_1", forged_plans),  # a head planned from its record pushes none: 404
        )
    }
    assert answers[XCom.REQUEST].status_code == answers[XCom.RETURN_VALUE].status_code == 200, {
        k: a.text for k, a in answers.items()
    }
    before = runs_of(airflow, READABLE)
    resumed = post(airflow, f"{FRONT_DOOR}/{quote(head, safe='')}/resume", {}, token=fab["bea"])
    assert resumed.status_code == 200, resumed.text
    state = airflow.wait_for_run(CONTROLLER_DAG_ID, head, timeout=TIMEOUT)
    untouched = runs_of(airflow, READABLE) == before
    figures.bad_input(
        "forged: the plan's XComs of a paused backfill rewritten", state == "success" and untouched
    )
    assert state == "success"
    assert untouched
    days = sorted(
        r[0][len(TARGET_RUN_PREFIX) :][:10]
        for r in runs_of(airflow, X)
        if r[0][len(TARGET_RUN_PREFIX) :][:10] in dates
    )
    assert days == dates


@pytest.mark.backend("postgres")
def test_a_forged_continuation_gets_no_work_and_the_page_says_why(airflow, fab, figures):
    """mallory (may trigger the controller, nothing on X) triggers runs posing as continuations of
    bea's two-segment backfill of X: under a continuation's run id without the record's token, and
    under a plain run id. Both get no work, X has no new run, and the page shows why from the
    record (no XCom is read)."""
    head = _finished_backfill_of_x(airflow, fab, ["2024-11-25", "2024-11-26"])
    before = runs_of(airflow, X)
    conf = {"dag_id": X, "dates": ["2024-11-27"], CONTINUES_KEY: {"head_run_id": head, "segment": 1}}
    forged = {
        run_id: trigger_as(airflow, fab["mallory"], conf, run_id=run_id)
        for run_id in (continuation_run_id(head, 1), "forged_continuation")
    }
    assert all(a.status_code == 200 for a in forged.values()), {r: a.text for r, a in forged.items()}
    states = {run_id: airflow.wait_for_run(CONTROLLER_DAG_ID, run_id, timeout=TIMEOUT) for run_id in forged}
    untouched = runs_of(airflow, X) == before
    figures.bad_input(
        "forged: runs posing as a backfill's continuation", set(states.values()) == {"failed"} and untouched
    )
    assert set(states.values()) == {"failed"} and untouched
    shown = airflow.api("GET", f"{FRONT_DOOR}/forged_continuation").json()
    assert shown["phase"] == "failed" and CONTINUES_KEY in (shown["error"] or ""), shown


@pytest.mark.backend("postgres")
def test_a_forged_segment_count_does_not_burden_the_list(airflow, fab, figures):
    """An XCom writer sets the ``segments`` XCom of an ended backfill to 10^8: every view still
    answers at once, from what the api-server recorded."""
    head = _finished_backfill_of_x(airflow, fab, ["2024-11-09"])
    run = f"/api/v2/dags/{CONTROLLER_DAG_ID}/dagRuns/{quote(head, safe='')}"
    path = f"{run}/taskInstances/{Task.PLAN}/xcomEntries/{XCom.SEGMENTS}"
    patched = airflow.api("PATCH", path, json={"value": 100_000_000}, token=fab["mallory"])
    assert patched.status_code == 200, patched.text
    started = time.monotonic()
    listed = airflow.api("GET", FRONT_DOOR, params={"limit": 50}, token=fab["bea"], timeout=30)
    detail = airflow.api("GET", f"{FRONT_DOOR}/{quote(head, safe='')}", token=fab["bea"], timeout=30)
    took = time.monotonic() - started
    figures.bad_input("forged: a segments XCom of 10^8", listed.status_code == detail.status_code == 200)
    assert listed.status_code == 200 and detail.status_code == 200, (listed.text, detail.text)
    assert took < 10, took
    assert detail.json()["segments"] == 1


# ---------------------------------------------------------------------------- SimpleAuthManager


@pytest.fixture(scope="module")
def simple(auth_manager_name, airflow) -> dict[str, str]:
    if auth_manager_name != "simple":
        pytest.skip("SimpleAuthManager's fixed roles (the SQLite suite runs it)")
    return {user: airflow.token_for(user, SECRET) for user in ("vera", "uma", "otto")}


@pytest.mark.backend("sqlite")
@pytest.mark.parametrize(
    "user, role, may_backfill, day",
    [
        ("vera", "viewer", False, "2024-12-24"),
        ("uma", "user", True, "2024-12-25"),
        ("otto", "op", True, "2024-12-26"),
    ],
    ids=["viewer: dry runs only", "user: backfills", "op: backfills"],
)
def test_what_each_simple_role_may_do(airflow, simple, user, role, may_backfill, day):
    request = {"dag_id": "bf_daily", "dates": [day]}
    dry = post(airflow, FRONT_DOOR + "/dry_run", request, token=simple[user])
    assert dry.status_code == 200, dry.text
    started = post(airflow, FRONT_DOOR, request, token=simple[user])
    triggered = trigger_as(
        airflow, simple[user], {"dag_id": "bf_daily", "dates": [day], "on_overlap": "wait"}
    )
    if not may_backfill:
        assert started.status_code == 403 and f"{user} may not trigger backfill_controller" in started.text
        assert triggered.status_code == 403  # Airflow itself: a viewer may not trigger any DAG
        assert airflow.dag_runs("bf_daily", day, day) == []
        return
    assert started.status_code == 201, started.text
    assert triggered.status_code == 200, triggered.text
    for run_id in (started.json()["dag_run_id"], triggered.json()["dag_run_id"]):
        assert airflow.wait_for_run(CONTROLLER_DAG_ID, run_id, timeout=TIMEOUT) == "success"
        assert airflow.xcom(CONTROLLER_DAG_ID, run_id, Task.REPORT)["triggered_by"] == user
    assert [r["state"] for r in airflow.dag_runs("bf_daily", day, day)] == ["success"]


@pytest.mark.backend("sqlite")
def test_a_user_may_not_take_the_catch_ups_run_ids(airflow, simple):
    resp = trigger_as(
        airflow,
        simple["uma"],
        {"dag_id": "bf_daily", "dates": ["2024-12-27"]},
        run_id=f"{CATCHUP_PREFIX}bf_daily__x",
    )
    assert resp.status_code == 200, resp.text
    assert (
        airflow.wait_for_run(CONTROLLER_DAG_ID, f"{CATCHUP_PREFIX}bf_daily__x", timeout=TIMEOUT) == "failed"
    )
    error = airflow.xcom(CONTROLLER_DAG_ID, f"{CATCHUP_PREFIX}bf_daily__x", Task.REPORT)["error"]
    assert "run_id" in error and "shaped like the controller's own run ids" in error
    assert airflow.dag_runs("bf_daily", "2024-12-27", "2024-12-27") == []
