"""Task-subset backfills: which tasks a ``task_regex`` selects and which task instances to clear.

Airflow 2's ``airflow dags backfill -t REGEX [-i]`` re-ran a subset of tasks; Airflow 3's native
backfill cannot. Here the selection is made once from the target's task graph, then applied to
each date's existing task instances according to ``reprocess``:

* ``failed``: the selected task instances that failed or were upstream-failed (Airflow 2's
  ``--rerun-failed-tasks``);
* ``all``: every selected task instance;
* ``missing``: the selected task instances that never ran (no state, e.g. a task added later).
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from backfill_controller.domain.airflow_states import TaskState
from backfill_controller.domain.request import FieldError, InvalidRequest, Reprocess

#: A task instance key: (task_id, map_index); map_index is -1 for unmapped tasks.
TIKey = tuple[str, int]

FAILED_TI_STATES = frozenset({TaskState.FAILED, TaskState.UPSTREAM_FAILED})

#: Wall-clock seconds that matching one request's ``task_regex`` may take, for all task ids together.
MATCH_BUDGET_SECONDS = 1.0
#: Extra seconds allowed for the matcher's interpreter to start before it is given up on.
MATCHER_START_SECONDS = 30.0
TASK_REGEX_ACCEPTED = (
    "a regular expression that matches task ids in bounded time: avoid nested quantifiers such as (a+)+"
)

# Python's ``re`` has no timeout and cannot be interrupted from another thread (it holds the GIL),
# so the pattern runs in a fresh interpreter that an interval timer kills (SIGALRM's default
# action) once the budget is spent; its start-up is not counted in the budget.
_MATCHER = """\
import json, re, signal, sys
job = json.load(sys.stdin)
search = re.compile(job["pattern"]).search
signal.signal(signal.SIGALRM, signal.SIG_DFL)
signal.setitimer(signal.ITIMER_REAL, job["budget"])
found = [i for i, task_id in enumerate(job["task_ids"]) if search(task_id)]
signal.setitimer(signal.ITIMER_REAL, 0)
json.dump(found, sys.stdout)
"""


def select_tasks(
    downstream: Mapping[str, Sequence[str]],
    task_regex: str,
    *,
    include_upstream: bool = False,
    include_downstream: bool = False,
) -> tuple[str, ...]:
    """Task ids matching ``task_regex`` (``re.search``), plus their relatives if asked, sorted.

    ``downstream`` maps every task id of the target to its direct downstream task ids.

    >>> graph = {"a": ["b"], "b": ["c"], "c": []}
    >>> select_tasks(graph, "^b$"), select_tasks(graph, "^b$", include_upstream=True)
    (('b',), ('a', 'b'))
    """
    matched = matching(task_regex, downstream)
    if not matched:
        raise InvalidRequest(
            [
                FieldError(
                    "task_regex",
                    task_regex,
                    "matches no task of the target",
                    "a pattern matching some of: " + ", ".join(sorted(downstream)),
                )
            ]
        )
    selected = set(matched)
    if include_downstream:
        selected |= _reachable(matched, downstream)
    if include_upstream:
        upstream: dict[str, list[str]] = {t: [] for t in downstream}
        for task, children in downstream.items():
            for child in children:
                upstream.setdefault(child, []).append(task)
        selected |= _reachable(matched, upstream)
    return tuple(sorted(selected))


def matching(pattern: str, task_ids: Iterable[str], budget: float = MATCH_BUDGET_SECONDS) -> set[str]:
    """The task ids in which ``pattern`` is found (``re.search``), in at most ``budget`` seconds in all.

    A pattern that backtracks catastrophically (nested quantifiers such as ``(a+)+$`` over a long
    task id) is stopped and refused as an invalid ``task_regex`` instead of pinning the worker.

    >>> sorted(matching("load|transform", ["extract", "transform", "load"]))
    ['load', 'transform']
    """
    ids = list(task_ids)
    re.compile(pattern)  # a pattern that does not compile fails here, with re's own error
    if not ids:
        return set()
    try:
        done = subprocess.run(
            [sys.executable, "-I", "-S", "-c", _MATCHER],
            input=json.dumps({"pattern": pattern, "task_ids": ids, "budget": budget}),
            capture_output=True,
            text=True,
            encoding="utf-8",
            errors="replace",
            timeout=budget + MATCHER_START_SECONDS,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise RuntimeError(
            f"the task_regex matcher did not finish in {budget + MATCHER_START_SECONDS:g} s"
        ) from None
    if done.returncode == -signal.SIGALRM:
        raise InvalidRequest(
            [
                FieldError(
                    "task_regex",
                    pattern,
                    f"took longer than {budget:g} s to match the target's {len(ids)} task id(s) "
                    "(catastrophic backtracking)",
                    TASK_REGEX_ACCEPTED,
                )
            ]
        )
    if done.returncode != 0:
        raise RuntimeError(f"the task_regex matcher failed ({done.returncode}): {done.stderr.strip()[-500:]}")
    return {ids[i] for i in json.loads(done.stdout)}


def _reachable(start: Iterable[str], edges: Mapping[str, Sequence[str]]) -> set[str]:
    seen: set[str] = set()
    todo = list(start)
    while todo:
        for nxt in edges.get(todo.pop(), ()):
            if nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)
    return seen


def to_clear(
    states: Mapping[TIKey, str | None], selected: Sequence[str], reprocess: Reprocess
) -> list[str | list[Any]]:
    """The ``task_ids`` to pass to ``clearTaskInstances`` for one run, sorted.

    A task whose every instance qualifies is named by its id (all map indexes); otherwise the
    qualifying instances of a mapped task are named ``[task_id, map_index]``.

    >>> states = {("a", -1): "success", ("b", 0): "failed", ("b", 1): "success", ("c", -1): "upstream_failed"}
    >>> to_clear(states, ["b", "c"], Reprocess.FAILED)
    [['b', 0], 'c']
    >>> to_clear(states, ["a", "b"], Reprocess.ALL)
    ['a', 'b']
    """
    wanted = set(selected)
    by_task: dict[str, list[tuple[int, bool]]] = {}
    for (task_id, map_index), state in sorted(states.items()):
        if task_id in wanted:
            by_task.setdefault(task_id, []).append((map_index, _qualifies(state, reprocess)))
    result: list[str | list[Any]] = []
    for task_id, instances in sorted(by_task.items()):
        if all(ok for _, ok in instances):
            result.append(task_id)
        else:
            result.extend([task_id, index] for index, ok in instances if ok)
    return result


def _qualifies(state: str | None, reprocess: Reprocess) -> bool:
    if reprocess is Reprocess.ALL:
        return True
    if reprocess is Reprocess.FAILED:
        return state in FAILED_TI_STATES
    return state is None


def describe(task_ids: Sequence[str | Sequence[Any]]) -> list[str]:
    """Readable names: ``b``, ``b[3]``.

    >>> describe(["a", ["b", 3]])
    ['a', 'b[3]']
    """
    return [t if isinstance(t, str) else f"{t[0]}[{t[1]}]" for t in task_ids]
