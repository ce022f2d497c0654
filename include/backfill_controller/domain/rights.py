"""Which rights on the target DAG a backfill request needs: those of the equivalent native action.

A backfill may do only what its requester may do on the target, as Airflow itself would allow it:

* creating runs (a date with no run) needs **POST on the target's DAG runs**, as
  ``POST /api/v2/backfills`` does (``requires_access_backfill``);
* clearing whole runs (``reprocess`` ``failed`` or ``all``) needs **PUT on its DAG runs**;
* clearing task instances (``task_regex``) needs **PUT on its task instances**, as
  ``POST /api/v2/dags/{dag_id}/clearTaskInstances`` does;
* a dry run, and every request, needs **GET on the DAG and on its runs** (plus its task instances
  with a ``task_regex``): planning reads them.

The rights follow from the request alone, so they are checked before anything of the target is
read: a refusal reveals nothing about it.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import Enum
from typing import Any

from backfill_controller.domain.request import BackfillRequest, MissingRuns, Reprocess


class Right(Enum):
    """One right on the target DAG: ``(method, entity)`` as Airflow's auth managers are asked."""

    READ_DAG = ("GET", None)
    READ_RUNS = ("GET", "RUN")
    READ_TASK_INSTANCES = ("GET", "TASK_INSTANCE")
    CREATE_RUNS = ("POST", "RUN")
    CLEAR_RUNS = ("PUT", "RUN")
    CLEAR_TASK_INSTANCES = ("PUT", "TASK_INSTANCE")

    @property
    def method(self) -> str:
        return self.value[0]

    @property
    def entity(self) -> str | None:
        """The ``DagAccessEntity`` name, None for the DAG itself."""
        return self.value[1]

    def describe(self) -> str:
        """
        >>> Right.CREATE_RUNS.describe(), Right.READ_DAG.describe()
        ('POST on its DAG runs', 'GET on the DAG')
        """
        what = {None: "the DAG", "RUN": "its DAG runs", "TASK_INSTANCE": "its task instances"}
        return f"{self.method} on {what[self.entity]}"


#: The rights on the target that pausing, resuming or cancelling a backfill of it needs (cancelling
#: marks its queued runs failed, as editing them by hand would).
OPERATE_TARGET = (Right.READ_DAG, Right.READ_RUNS, Right.CLEAR_RUNS)


def rights_needed(request: BackfillRequest) -> tuple[Right, ...]:
    """The rights on ``request.target_dag_id`` that carrying out ``request`` needs.

    >>> from backfill_controller.domain.request import parse_request
    >>> from backfill_controller.domain.settings import Limits
    >>> import pendulum
    >>> def needs(**conf):
    ...     request = parse_request({"dag_id": "d", "dates": ["2024-01-01"], **conf},
    ...                             limits=Limits(), now=pendulum.now("UTC"))
    ...     return [r.name for r in rights_needed(request)]
    >>> needs()
    ['READ_DAG', 'READ_RUNS', 'CREATE_RUNS']
    >>> needs(reprocess="failed")
    ['READ_DAG', 'READ_RUNS', 'CREATE_RUNS', 'CLEAR_RUNS']
    >>> needs(task_regex="^load")
    ['READ_DAG', 'READ_RUNS', 'READ_TASK_INSTANCES', 'CLEAR_TASK_INSTANCES']
    >>> needs(dry_run=True, reprocess="all")
    ['READ_DAG', 'READ_RUNS']
    """
    rights = [Right.READ_DAG, Right.READ_RUNS]
    if request.is_task_subset:
        rights.append(Right.READ_TASK_INSTANCES)
    if request.dry_run:
        return tuple(rights)
    if request.is_task_subset:
        if request.missing_runs is MissingRuns.TRIGGER:
            rights.append(Right.CREATE_RUNS)
        rights.append(Right.CLEAR_TASK_INSTANCES)
        return tuple(rights)
    rights.append(Right.CREATE_RUNS)
    if request.reprocess in (Reprocess.FAILED, Reprocess.ALL):
        rights.append(Right.CLEAR_RUNS)
    return tuple(rights)


def may_clear(conf: Mapping[str, Any]) -> bool:
    """Whether a request's conf may lead to clearing existing runs or task instances at all.

    The ``trigger`` task holds each date's action against its own run's conf, which nobody can
    change once the run exists (a plan it reads from XCom must not clear what was never asked).

    >>> may_clear({"dag_id": "d"}), may_clear({"reprocess": "failed"}), may_clear({"task_regex": "^a"})
    (False, True, True)
    >>> may_clear({"reprocess": "all", "dry_run": True})
    False
    """
    if conf.get("dry_run") is True:
        return False
    if conf.get("task_regex"):
        return True
    try:
        return Reprocess.parse(conf.get("reprocess") or Reprocess.MISSING.value) is not Reprocess.MISSING
    except (ValueError, TypeError):
        return False
