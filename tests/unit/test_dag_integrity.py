"""Every DAG file imports cleanly, and the controller has the shape the product promises."""

from __future__ import annotations

from pathlib import Path

import pytest

from backfill_controller.contract import CATCHUP_DAG_ID, CONTROLLER_DAG_ID, Task

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def dagbag():
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=str(REPO / "dags"))


@pytest.fixture(scope="module")
def controller(dagbag):
    return dagbag.dags[CONTROLLER_DAG_ID]


def test_every_dag_file_imports_without_errors(dagbag) -> None:
    assert dagbag.import_errors == {}
    assert {CONTROLLER_DAG_ID, "sales_pipeline", "api_ingestion_dag", "data_transformation_dag"} <= set(
        dagbag.dags
    )


def test_every_dag_is_tagged_documented_and_retries(dagbag) -> None:
    for dag in dagbag.dags.values():
        assert dag.tags, dag.dag_id
        assert dag.doc_md, dag.dag_id
        assert dag.default_args.get("retries", 0) >= 1, dag.dag_id


def test_the_controller_is_triggered_only_on_request(controller) -> None:
    assert type(controller.timetable).__name__ == "NullTimetable"


def test_the_controller_plans_triggers_waits_and_reports(controller) -> None:
    tasks = {t.task_id: t for t in controller.tasks}
    assert set(tasks) == set(Task)
    assert tasks[Task.TRIGGER].upstream_task_ids == {Task.PLAN}
    assert tasks[Task.WAIT].upstream_task_ids == {Task.TRIGGER}
    assert tasks[Task.SEGMENT].upstream_task_ids == {Task.SEGMENTS, Task.WAIT}
    assert tasks[Task.REPORT].upstream_task_ids == {Task.SEGMENT}
    assert [t.task_id for t in controller.leaves] == [Task.REPORT]


def test_trigger_is_a_trigger_dag_run_operator_mapped_per_chunk_one_chunk_at_a_time(controller) -> None:
    from airflow.providers.standard.operators.trigger_dagrun import TriggerDagRunOperator

    trigger = controller.get_task(Task.TRIGGER)
    assert issubclass(trigger.operator_class, TriggerDagRunOperator)
    assert trigger.partial_kwargs["max_active_tis_per_dagrun"] == 1  # one executor slot for feeding
    assert trigger.partial_kwargs["map_index_template"] == "{{ task.dates_label }}"  # its first .. last date


def test_large_backfills_continue_one_segment_at_a_time(controller) -> None:
    segment = controller.get_task(Task.SEGMENT)
    assert segment.partial_kwargs["max_active_tis_per_dagrun"] == 1
    assert segment.partial_kwargs["trigger_rule"] == "all_done"


def test_wait_and_report_run_whatever_happened_upstream(controller) -> None:
    assert controller.get_task(Task.WAIT).trigger_rule == "all_done"
    assert controller.get_task(Task.REPORT).trigger_rule == "all_done"
    assert controller.get_task(Task.REPORT).retries == 1  # a worker lost while it watches the last runs


def test_the_trigger_form_declares_every_request_key(controller) -> None:
    from backfill_controller.domain.request import CONF_KEYS

    assert set(controller.params.keys()) == set(CONF_KEYS)
    for key in CONF_KEYS:
        param = controller.params.get_param(key)
        assert param.schema.get("title") and param.description, key


def test_the_trigger_form_is_the_one_the_request_contract_derives(controller) -> None:
    from backfill_controller.domain.keys import form_params
    from backfill_controller.domain.settings import Limits

    form = form_params(Limits.from_config())
    assert list(controller.params.keys()) == list(form)
    for name, spec in form.items():
        param = controller.params.get_param(name)
        schema = {word: value for word, value in spec.items() if word not in ("default", "description")}
        assert (param.schema, param.description) == (schema, spec["description"]), name


def test_user_text_is_never_rendered_as_a_template() -> None:
    from backfill_controller.worker.operators import BackfillTriggerOperator, BackfillWaitSensor

    assert BackfillTriggerOperator.template_fields == ()
    assert BackfillWaitSensor.template_fields == ()


def test_scheduled_catch_up_is_opt_in_and_maps_one_task_per_configured_dag(dagbag) -> None:
    catchup = dagbag.dags[CATCHUP_DAG_ID]
    assert catchup.is_paused_upon_creation is True
    assert catchup.max_active_runs == 1
    assert catchup.get_task("catch_up").upstream_task_ids == {"entries"}
