"""Scheduled catch-up: the checked-in config, gap finding, and the request handed to the controller."""

from __future__ import annotations

from pathlib import Path

import pendulum
import pytest

from backfill_controller.domain.catchup import (
    DEFAULT_CONFIG,
    CatchupEntry,
    InvalidConfig,
    controller_conf,
    controller_run_id,
    find_gaps,
    load_config,
    read_config,
)
from backfill_controller.domain.request import Reprocess, parse_request
from backfill_controller.domain.settings import Limits

DAYS = [pendulum.datetime(2024, 5, day, tz="UTC") for day in range(1, 8)]


def errors_of(text: str) -> list[str]:
    with pytest.raises(InvalidConfig) as info:
        load_config(text)
    return [str(e) for e in info.value.errors]


def test_the_checked_in_config_is_valid() -> None:
    entries = read_config(Path(__file__).resolve().parents[2] / DEFAULT_CONFIG)  # beside dags/
    assert [e.dag_id for e in entries] == ["sales_pipeline", "api_ingestion_dag"]
    assert entries[0].lookback == pendulum.duration(days=14)


def test_an_entry_needs_only_a_dag_id() -> None:
    (entry,) = load_config("dags:\n  - dag_id: sales_pipeline\n")
    assert entry == CatchupEntry("sales_pipeline", pendulum.duration(days=7), Reprocess.MISSING, 100, None)


def test_an_empty_file_watches_nothing() -> None:
    assert load_config("") == ()
    assert load_config("dags: []") == ()


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("dags: [{dag_id: a, lookback: 7 days}]", "dags[0].lookback: is not a positive duration"),
        ("dags: [{dag_id: a, lookback: -P1D}]", "dags[0].lookback: is not a positive duration"),
        ("dags: [{dag_id: a, reprocess: all}]", "dags[0].reprocess: would re-run every date"),
        ("dags: [{dag_id: a, reprocess: sometimes}]", "dags[0].reprocess: unknown mode"),
        ("dags: [{dag_id: a, max_dates_per_run: 0}]", "dags[0].max_dates_per_run: is out of range"),
        ("dags: [{dag_id: a, max_dates_per_run: 20000}]", "dags[0].max_dates_per_run: is out of range"),
        ("dags: [{dag_id: a}, {dag_id: a}]", "dags[1].dag_id: is listed twice"),
        ("dags: [{lookback: P1D}]", "dags[0].dag_id: missing or not a dag_id"),
        ("dags: [{dag_id: 'a b'}]", "dags[0].dag_id: missing or not a dag_id"),
        ("dags: [{dag_id: a, lookbak: P1D}]", "dags[0].lookbak: unknown key"),
        ("dags: {dag_id: a}", "dags: is not a list"),
        ("dag: []", "(file): has the wrong shape"),
        ("dags: [", "(file): is not valid YAML"),
    ],
)
def test_a_wrong_config_names_the_entry_and_field(text: str, expected: str) -> None:
    assert any(e.startswith(expected) for e in errors_of(text)), errors_of(text)


def test_every_wrong_field_is_reported_at_once() -> None:
    assert len(errors_of("dags: [{dag_id: a, lookback: x}, {dag_id: b, reprocess: y}]")) == 2


def test_missing_mode_hands_over_only_dates_without_a_run() -> None:
    runs = {DAYS[0]: "success", DAYS[1]: "failed", DAYS[2]: "queued", DAYS[3]: "running"}
    gaps, total = find_gaps(DAYS, runs, Reprocess.MISSING, limit=100)
    assert gaps == DAYS[4:] and total == 3


def test_failed_mode_also_hands_over_failed_runs_but_never_open_ones() -> None:
    runs = {DAYS[0]: "success", DAYS[1]: "failed", DAYS[2]: "queued", DAYS[3]: "running"}
    gaps, _ = find_gaps(DAYS, runs, Reprocess.FAILED, limit=100)
    assert gaps == [DAYS[1], *DAYS[4:]]


def test_the_oldest_gaps_go_first_and_the_rest_wait_for_the_next_run() -> None:
    gaps, total = find_gaps(reversed(DAYS), {}, Reprocess.MISSING, limit=3)
    assert gaps == DAYS[:3] and total == 7


def test_no_gaps_means_nothing_to_hand_over() -> None:
    assert find_gaps(DAYS, dict.fromkeys(DAYS, "success"), Reprocess.FAILED, limit=10) == ([], 0)


def test_the_controller_request_is_a_valid_explicit_date_list_with_an_audit_reason() -> None:
    entry = CatchupEntry("sales_pipeline", pendulum.duration(days=7), Reprocess.FAILED, 10, 4)
    conf = controller_conf(entry, DAYS[:2], "scheduled__2024-05-08T00:00:00+00:00")
    request = parse_request(conf, limits=Limits(), now=pendulum.datetime(2024, 6, 1, tz="UTC"))
    assert request.dates == tuple(DAYS[:2])
    assert request.reprocess is Reprocess.FAILED and request.max_active_runs == 4
    assert request.reason == "scheduled catch-up (backfill_catchup run scheduled__2024-05-08T00:00:00+00:00)"


def test_one_catch_up_run_triggers_the_controller_once_per_target() -> None:
    run = "scheduled__2024-05-08T00:00:00+00:00"
    assert controller_run_id("sales", run) == controller_run_id("sales", run) != controller_run_id("hr", run)


def catch_up_with(api) -> dict:
    from unittest import mock

    from backfill_controller.worker import catchup

    entry = CatchupEntry("sales", pendulum.duration(days=2), Reprocess.MISSING, 10, None).to_dict()
    dag_run = mock.Mock(run_id="scheduled__2024-05-08T00:00:00+00:00")
    with mock.patch.object(catchup.AirflowApi, "from_connection", return_value=api):
        return catchup.catch_up(**entry, dag_run=dag_run)


def catchup_api(taken_by: str):
    """The REST client as the catch-up sees it: one gap, and the run id it tries taken by ``taken_by``."""
    from unittest import mock

    from backfill_controller.domain.schedule import ScheduledDate

    day = pendulum.now("UTC").start_of("day")
    api = mock.Mock(username="airflow-api")
    api.get_dag.return_value = mock.Mock(is_paused=False)
    api.open_backfill_targets.return_value = {}
    api.expand_dates.return_value = [ScheduledDate(day, day, day, day)]
    api.iter_runs.return_value = []
    api.triggered_by.return_value = taken_by
    return api


def test_a_catch_up_run_id_taken_by_a_user_does_not_stop_the_catch_up() -> None:
    api = catchup_api(taken_by="mallory")
    api.trigger.side_effect = [False, True]
    result = catch_up_with(api)
    first, second = (c.args[1] for c in api.trigger.call_args_list)
    assert first == controller_run_id("sales", "scheduled__2024-05-08T00:00:00+00:00")
    assert second.startswith(first + "__") and len(second) == len(first) + 10  # unguessable suffix
    assert result["controller_run_id"] == second and result["gaps"] == 1


def test_a_retried_catch_up_finds_its_own_run_and_triggers_nothing_more() -> None:
    api = catchup_api(taken_by="airflow-api")
    api.trigger.side_effect = [False]
    result = catch_up_with(api)
    assert api.trigger.call_count == 1
    assert result["controller_run_id"] == controller_run_id("sales", "scheduled__2024-05-08T00:00:00+00:00")
