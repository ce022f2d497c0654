"""Tasks of the ``backfill_catchup`` DAG: find the gaps of each configured DAG, hand them to the controller.

Each target is one mapped task instance, so one broken target does not hold up the others. A
catch-up run never runs target work itself: it triggers ``backfill_controller`` with an explicit list
of dates, under a run_id derived from its own, so a retried or re-run task triggers nothing twice.
"""

from __future__ import annotations

import logging
import secrets
from typing import Any

import pendulum
from airflow.sdk.exceptions import AirflowFailException

from backfill_controller.client.airflow_api import AirflowApi
from backfill_controller.contract import CONTROLLER_DAG_ID
from backfill_controller.domain.catchup import (
    CatchupEntry,
    config_path,
    controller_conf,
    controller_run_id,
    find_gaps,
    read_config,
)
from backfill_controller.domain.settings import Limits

log = logging.getLogger(__name__)

ENTRY_FIELDS = ("dag_id", "lookback_seconds", "reprocess", "max_dates_per_run", "max_active_runs")


def list_entries(**_: Any) -> list[dict[str, Any]]:
    """The checked-in config, validated (a wrong file fails here, naming every wrong field)."""
    path = config_path()
    entries = read_config(path, max_dates=Limits.from_config().max_dates_per_request)
    log.info("%s: %d DAG(s) to keep whole: %s", path.name, len(entries), ", ".join(e.dag_id for e in entries))
    return [e.to_dict() for e in entries]  # the op_kwargs of one mapped catch_up each


def catch_up(**context: Any) -> dict[str, Any]:
    """Hand the gaps of one entry's DAG in its lookback window to the controller; return what was done."""
    entry = CatchupEntry.from_dict({k: context[k] for k in ENTRY_FIELDS})
    dag_id = entry.dag_id
    api = AirflowApi.from_connection()
    result: dict[str, Any] = {"dag_id": dag_id, "gaps": 0, "dates": [], "controller_run_id": None}

    why = _why_not(api, dag_id)
    if why:
        log.warning("%s: nothing done, %s", dag_id, why)
        return {**result, "skipped": why}

    start, end = entry.window(pendulum.now("UTC"))
    expected = api.expand_dates(dag_id, {"start_date": start.isoformat(), "end_date": end.isoformat()})
    runs = {run.logical_date: run.state for run in api.iter_runs(dag_id, start, end)}
    gaps, total = find_gaps(
        [d.logical_date for d in expected], runs, entry.reprocess, entry.max_dates_per_run
    )
    log.info(
        "%s: %d logical dates from %s to %s, %d run(s), %d gap(s) (reprocess=%s)",
        dag_id, len(expected), start, end, len(runs), total, entry.reprocess.value,
    )  # fmt: skip
    if not gaps:
        return result
    run_id = controller_run_id(dag_id, context["dag_run"].run_id)
    conf = controller_conf(entry, gaps, context["dag_run"].run_id)
    created = api.trigger(CONTROLLER_DAG_ID, run_id, conf)
    if not created and api.triggered_by(CONTROLLER_DAG_ID, run_id) != api.username:
        # Taken by a user before this catch-up came: that run gets no work (only this account's
        # catchup__ runs do), and this catch-up goes on under an id nobody can guess.
        taken, run_id = run_id, f"{run_id[:240]}__{secrets.token_hex(4)}"
        log.warning("%s: %s was taken by another user; triggering %s instead", dag_id, taken, run_id)
        created = api.trigger(CONTROLLER_DAG_ID, run_id, conf)
    log.info(
        "%s: %s %s for %d date(s)%s",
        dag_id,
        "triggered" if created else "already triggered (a retry):",
        run_id,
        len(gaps),
        f"; {total - len(gaps)} more next time (max_dates_per_run)" if total > len(gaps) else "",
    )
    return {**result, "gaps": total, "dates": conf["dates"], "controller_run_id": run_id}


def _why_not(api: AirflowApi, dag_id: str) -> str | None:
    """Why this DAG is left alone this time, or None. An unknown dag_id fails the task."""
    refusal = Limits.from_config().refusal(dag_id)
    if refusal:
        return f"refused by the deployment: {refusal}"
    target = api.get_dag(dag_id)
    if target is None:  # most likely a typo in the config: fail so that someone looks
        raise AirflowFailException(f"{config_path().name} lists {dag_id!r}, but Airflow has no such DAG")
    if target.is_paused:
        return "the DAG is paused"
    open_runs = api.open_backfill_targets(CONTROLLER_DAG_ID)
    busy = [run_id for run_id, target_id in open_runs.items() if target_id == dag_id]
    if busy:
        return f"a backfill of it is still running ({', '.join(busy)}); its dates are not gaps yet"
    return None
