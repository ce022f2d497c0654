"""The controller's contract: the names that its DAG, its plugin, its CLI and its tests share.

Everything that one part of the product looks up in another by name is declared here once: the
DAG ids, the controller's task ids and XCom keys, the shapes of the run ids it makes, and where
the plugin is served. Renaming a task in the DAG renames it for the page, cancel and the CLI
alike. Every other module imports these names from here (none re-exports them), and
``tests/unit/test_layout.py`` fails on a task id or XCom key spelt as a literal anywhere else in
the package. The run states the controller counts as open are Airflow's, in
:mod:`backfill_controller.domain.airflow_states` (``OPEN_RUN``). Pure: no import of Airflow or of
the rest of the package.
"""

from __future__ import annotations

from enum import StrEnum

#: The controller DAG (built by :func:`backfill_controller.dags.controller_dag`).
CONTROLLER_DAG_ID = "backfill_controller"
#: The scheduled catch-up DAG (built by :func:`backfill_controller.dags.catchup_dag`).
CATCHUP_DAG_ID = "backfill_catchup"
#: Where the api-server serves the plugin's app (routes, page, icon).
URL_PREFIX = "/backfill-controller"


class Task(StrEnum):
    """The controller DAG's task ids."""

    PLAN = "plan"
    TRIGGER = "trigger"
    WAIT = "wait"
    SEGMENTS = "segments"
    SEGMENT = "segment"
    REPORT = "report"


class XCom(StrEnum):
    """The XCom keys the controller's tasks push (task id in the comment), for people to read: no
    task and no view acts on them (the backfill's record is the source of what runs and of what
    every view shows)."""

    RETURN_VALUE = "return_value"  # report: the result; plan: the chunks trigger maps over
    ERROR = "error"  # plan, trigger: why the backfill stopped
    REQUEST = "request"  # plan: the parsed request
    PLANS = "plans"  # plan: the per-date plans of segment 0
    RUN_IDS = "run_ids"  # plan: the target run ids acted on, in order
    EXECUTION = "execution"  # plan: how the chunks feed the target
    SEGMENTS = "segments"  # plan: how many segments
    STATS = "stats"  # plan: planning figures


#: Target run ids the controller creates start with this.
TARGET_RUN_PREFIX = "backfill_controller__"
#: Controller runs that the scheduled catch-up creates have run ids starting with this.
CATCHUP_PREFIX = "catchup__"
#: A continuation run's id is its head's, this mark, and the segment's index.
SEGMENT_MARK = "__segment_"
#: Longest message a task may keep in a backfill's record: a refusal, a chunk's event or why it
#: stopped (the api-server refuses longer ones; the tasks cut refusals to it).
MESSAGE_CHARS = 4000
#: The conf key of a continuation run: ``{"head_run_id": ..., "segment": k}``.
CONTINUES_KEY = "continues"


def continuation_run_id(head_run_id: str, segment: int, token: str = "") -> str:
    """The run id of continuation ``segment`` of the head run ``head_run_id``; ``token`` is the
    backfill's own (kept in its record), so that nobody can take the run id before its head does.

    >>> continuation_run_id("manual__2024-05-01T10:00:00+00:00", 2)
    'manual__2024-05-01T10:00:00+00:00__segment_2'
    >>> continuation_run_id("manual__1", 2, "9f3a01bc")
    'manual__1__segment_2_9f3a01bc'
    """
    return f"{head_run_id}{SEGMENT_MARK}{segment}" + (f"_{token}" if token else "")


def is_controller_shaped(run_id: str) -> bool:
    """Whether ``run_id`` has a shape the controller keeps for the runs it makes itself.

    >>> [is_controller_shaped(r) for r in ("manual__1", "catchup__x", "h__segment_1")]
    [False, True, True]
    """
    return SEGMENT_MARK in run_id or run_id.startswith(CATCHUP_PREFIX)
