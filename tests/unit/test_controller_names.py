"""The controller's names as Airflow stores them and people's scripts read them.

Everything else imports these names from :mod:`backfill_controller.contract`; here they are spelt
out once, because each is also an interface: the task ids and XCom keys of runs already in a
deployment's database, the REST paths of the report (``.../taskInstances/report/xcomEntries/
return_value``), the run ids users look for. Changing one here is changing the product.
"""

from __future__ import annotations

from backfill_controller.contract import (
    CATCHUP_DAG_ID,
    CATCHUP_PREFIX,
    CONTINUES_KEY,
    CONTROLLER_DAG_ID,
    SEGMENT_MARK,
    TARGET_RUN_PREFIX,
    URL_PREFIX,
    Task,
    XCom,
    continuation_run_id,
)


def test_the_dag_ids_and_where_the_plugin_is_served() -> None:
    assert (CONTROLLER_DAG_ID, CATCHUP_DAG_ID, URL_PREFIX) == (
        "backfill_controller",
        "backfill_catchup",
        "/backfill-controller",
    )


def test_the_controllers_task_ids() -> None:
    assert [t.value for t in Task] == ["plan", "trigger", "wait", "segments", "segment", "report"]


def test_the_xcom_keys() -> None:
    assert [k.value for k in XCom] == [
        "return_value",
        "error",
        "request",
        "plans",
        "run_ids",
        "execution",
        "segments",
        "stats",
    ]


def test_the_run_id_shapes_and_the_continuation_key() -> None:
    assert (TARGET_RUN_PREFIX, CATCHUP_PREFIX, SEGMENT_MARK, CONTINUES_KEY) == (
        "backfill_controller__",
        "catchup__",
        "__segment_",
        "continues",
    )
    assert continuation_run_id("manual__1", 2) == "manual__1__segment_2"
