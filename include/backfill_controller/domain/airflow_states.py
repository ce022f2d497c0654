"""Airflow's run and task instance states, as the pure modules and the CLI compare them.

The values are ``airflow.utils.state.DagRunState`` and ``TaskInstanceState``'s, spelled here so
that the CLI and the domain modules do not import Airflow (over a second);
``tests/unit/test_state.py`` checks that they match. :data:`OPEN_RUN`, the run states the
controller counts as open (queued or running), is declared here once for every side: the tasks,
the api-server's queries (``DagRun.state.in_(sorted(OPEN_RUN))``), the REST client and the CLI.
Other modules that run inside Airflow use Airflow's enums themselves.
"""

from __future__ import annotations

from enum import StrEnum


class RunState(StrEnum):
    """``DagRunState``."""

    QUEUED = "queued"
    RUNNING = "running"
    SUCCESS = "success"
    FAILED = "failed"


OPEN_RUN = frozenset({RunState.QUEUED, RunState.RUNNING})
FINISHED_RUN = frozenset({RunState.SUCCESS, RunState.FAILED})


class TaskState(StrEnum):
    """The ``TaskInstanceState`` values this model reads."""

    SUCCESS = "success"
    SKIPPED = "skipped"
    FAILED = "failed"
    UPSTREAM_FAILED = "upstream_failed"
    REMOVED = "removed"


#: A task instance that will not run again (unless someone clears it).
TASK_FINISHED = frozenset(TaskState)
TASK_FAILED = frozenset({TaskState.FAILED, TaskState.UPSTREAM_FAILED, TaskState.REMOVED})
#: ``TaskInstanceState.RUNNING``: on a worker now (not finished).
TASK_RUNNING = "running"
