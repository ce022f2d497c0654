"""The calls the controller's tasks make (a task has no database access): the target DAG, its
runs, runs to create, task instances to clear, run notes, and the controller plugin's planning,
work, dates and pause endpoints.

Base URL and credentials come only from an Airflow connection (:meth:`RestClient.from_connection`,
default ``airflow_api``). Every call, POSTs included, is retried for about a minute while the
api-server restarts or SQLite is locked (HTTP 500 "Database error" and 503 roll the request back).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from backfill_controller.client.rest import TRANSIENT_OR_DATABASE_ERROR, RestClient, quote_id, raise_for
from backfill_controller.contract import SEGMENT_MARK, URL_PREFIX
from backfill_controller.domain.airflow_states import OPEN_RUN
from backfill_controller.domain.plan import ExistingRun
from backfill_controller.domain.request import parse_datetime
from backfill_controller.domain.schedule import ScheduledDate

#: Tries of one call, and the delay step between them: about a minute in all.
ATTEMPTS = 9
RETRY_DELAY = 1.5


@dataclass(frozen=True)
class TargetDag:
    dag_id: str
    is_paused: bool
    timetable_summary: str | None
    params: dict[str, Any]
    task_ids: tuple[str, ...] = ()
    max_active_runs: int | None = None


class AirflowApi(RestClient):
    def __init__(self, base_url: str, username: str, password: str, **options: Any) -> None:
        options.setdefault("attempts", ATTEMPTS)
        options.setdefault("retry_delay", RETRY_DELAY)
        options.setdefault("retry_on", TRANSIENT_OR_DATABASE_ERROR)
        super().__init__(base_url, username, password, **options)

    def get_dag(self, dag_id: str) -> TargetDag | None:
        """The target DAG, or None if Airflow does not know it."""
        body = self.call("GET", f"/api/v2/dags/{quote_id(dag_id)}/details", missing_ok=True)
        if body is None:
            return None
        return TargetDag(
            dag_id=body["dag_id"],
            is_paused=bool(body.get("is_paused")),
            timetable_summary=body.get("timetable_summary"),
            params=body.get("params") or {},
            max_active_runs=body.get("max_active_runs"),
        )

    def plan_run(self, controller_run_id: str) -> dict[str, Any]:
        """Have the api-server plan a controller run for its requester
        (:mod:`backfill_controller.server.controller_runs`): ``{"status": "planned", "work": ...}``
        (the run's work, as :meth:`work` answers it; a continuation run's too) or ``{"status":
        "overlap", "message": ...}``."""
        path = f"{self._run_path(controller_run_id)}/plan"
        return dict(self.call("POST", path, json={}, timeout=300))  # JSON: the endpoint takes no form

    def work(self, controller_run_id: str, segment: int | None = None) -> dict[str, Any]:
        """What a planned controller run does, from its backfill's record in the api-server: the
        request, its segment's dates, the target runs it acts on and how it feeds them
        (:class:`backfill_controller.worker.work.Work`); with ``segment``, the head run reads
        another segment's dates. HTTP 404: the run belongs to no planned backfill; 409: it is not
        the run its backfill was made with (cleared since)."""
        params = {} if segment is None else {"segment": segment}
        path = f"{self._run_path(controller_run_id)}/work"
        return dict(self.call("GET", path, params=params))

    def paused(self, controller_run_id: str) -> dict[str, Any]:
        """``{"paused": bool, "paused_seconds": float}`` of a controller run's backfill
        (:mod:`backfill_controller.server.actions`)."""
        return dict(self.call("GET", f"{self._run_path(controller_run_id)}/paused"))

    def keep_chunk(self, controller_run_id: str, record: dict[str, Any]) -> None:
        """Keep in the backfill's record what one chunk has acted on (a ``trigger`` task's
        :class:`backfill_controller.domain.state.ChunkRecord`, as a dict)."""
        path = f"{self._run_path(controller_run_id)}/chunks/{int(record['chunk'])}"
        self.call("POST", path, json=record)

    def chunks(self, controller_run_id: str) -> list[dict[str, Any]]:
        """What each chunk of a controller run has acted on, as its record keeps it."""
        return list(self.call("GET", f"{self._run_path(controller_run_id)}/chunks")["chunks"])

    def keep_report(self, controller_run_id: str, report: dict[str, Any] | None) -> dict[str, Any]:
        """Keep a controller run's part of the result in the backfill's record; a head run's also
        records how the backfill ended: ``{"settled": summary or None}``."""
        path = f"{self._run_path(controller_run_id)}/report"
        return dict(self.call("POST", path, json={"report": report}, timeout=300))

    def keep_refusal(self, controller_run_id: str, message: str) -> None:
        """Keep why a controller run got no work, for the Backfills page."""
        self.call("POST", f"{self._run_path(controller_run_id)}/refusal", json={"message": message})

    @staticmethod
    def _run_path(controller_run_id: str) -> str:
        return f"{URL_PREFIX}/api/controller_runs/{quote_id(controller_run_id)}"

    def expand_dates(self, dag_id: str, request_conf: dict[str, Any]) -> list[ScheduledDate]:
        """The target's logical dates for a request, from the plugin (which reads its timetable)."""
        body = self.call(
            "POST", f"{URL_PREFIX}/api/dags/{quote_id(dag_id)}/dates", json=request_conf, timeout=120
        )
        return [ScheduledDate.from_dict(d) for d in body["dates"]]

    def iter_runs(self, dag_id: str, first: datetime, last: datetime) -> Iterator[ExistingRun]:
        """Every run of ``dag_id`` with a logical date in ``[first, last]``, page by page."""
        window = {
            "logical_date_gte": first.isoformat(),
            "logical_date_lte": last.isoformat(),
            "order_by": "logical_date",
        }
        for run in self._dag_runs(dag_id, window):
            if run.get("logical_date"):
                yield ExistingRun(
                    run["dag_run_id"],
                    run["state"],
                    parse_datetime(run["logical_date"]),
                    _utc_iso(run.get("end_date")),
                )

    def _dag_runs(self, dag_id: str, params: Mapping[str, str | list[str]]) -> Iterator[dict[str, Any]]:
        """``GET /api/v2/dags/{dag_id}/dagRuns`` with ``params``, every page."""
        return self.pages(f"/api/v2/dags/{quote_id(dag_id)}/dagRuns", "dag_runs", params)

    def clear_task_instances(self, dag_id: str, run_id: str, task_ids: Sequence[Any]) -> list[str]:
        """Clear exactly these task instances of one run, so the scheduler runs them again."""
        body = {
            "dry_run": False,
            "dag_run_id": run_id,
            "task_ids": list(task_ids),
            "only_failed": False,
            "reset_dag_runs": True,
            "include_upstream": False,
            "include_downstream": False,
        }
        answer = self.call("POST", f"/api/v2/dags/{quote_id(dag_id)}/clearTaskInstances", json=body)
        return [f"{t['task_id']}[{t['map_index']}]" for t in answer["task_instances"]]

    def _open_head_runs(self, controller_dag_id: str) -> list[dict[str, Any]]:
        """The controller's head runs (not continuations) still queued or running."""
        runs = self._dag_runs(controller_dag_id, {"state": sorted(OPEN_RUN)})
        return [run for run in runs if SEGMENT_MARK not in run["dag_run_id"]]

    def open_backfill_targets(self, controller_dag_id: str) -> dict[str, str]:
        """``{run_id: target dag_id}`` of the controller runs still queued or running (head runs)."""
        return {
            run["dag_run_id"]: str((run.get("conf") or {}).get("dag_id"))
            for run in self._open_head_runs(controller_dag_id)
        }

    def trigger(self, dag_id: str, run_id: str, conf: dict[str, Any]) -> bool:
        """Create run ``run_id`` of ``dag_id`` with ``conf``; False if a run with that id exists."""
        path = f"/api/v2/dags/{quote_id(dag_id)}/dagRuns"
        response = self.request("POST", path, json={"dag_run_id": run_id, "logical_date": None, "conf": conf})
        if response.status_code == 409:
            return False
        raise_for(response, f"POST {path}")
        return True

    def triggered_by(self, dag_id: str, run_id: str) -> str | None:
        """Who triggered run ``run_id`` of ``dag_id`` (its ``triggering_user_name``)."""
        run = self.call("GET", f"/api/v2/dags/{quote_id(dag_id)}/dagRuns/{quote_id(run_id)}")
        return run.get("triggering_user_name")

    def append_note(self, dag_id: str, run_id: str, note: str) -> None:
        """Add ``note`` below the run's note (a person's note is kept); once, however often asked.

        Airflow keeps at most :data:`NOTE_LIMIT` characters: the old note is shortened, never ours.
        """
        path = f"/api/v2/dags/{quote_id(dag_id)}/dagRuns/{quote_id(run_id)}"
        ours = note[:NOTE_LIMIT]
        old = str(self.call("GET", path).get("note") or "")
        if old.endswith(ours):
            return
        room = NOTE_LIMIT - len(ours) - 2
        combined = (
            (old if len(old) <= room else old[: max(room - 1, 0)] + "…") + "\n\n" + ours if old else ours
        )
        self.call("PATCH", path, params={"update_mask": "note"}, json={"note": combined[:NOTE_LIMIT]})


#: The longest note Airflow keeps on a run (``DagRunNote.content``).
NOTE_LIMIT = 1000


def _utc_iso(value: str | None) -> str | None:
    return parse_datetime(value).isoformat() if value else None
