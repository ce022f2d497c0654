"""What the parts of ``make bench`` share: REST calls that survive a busy SQLite, Airflow's timestamps
as seconds, the target runs of a window, task processes counted from the logs, the api-server's
memory, and the statistics the tables print.

Every duration the bench reports is measured from the wall-clock moment a request was sent
(``time.time()`` just before the call) to a timestamp Airflow wrote (``queued_at``, ``start_date``,
``end_date``, ``completed_at``): the bench and Airflow run on the same machine, so on the same clock.

Used by ``python -m scripts.bench`` (scripts/bench.py) and its parts ``bench_rounds``,
``bench_front_door`` and ``bench_scale``.
"""

from __future__ import annotations

import math
import statistics
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import Any

from backfill_controller.client.rest import TRANSIENT_OR_DATABASE_ERROR, quote_id, raise_for
from backfill_controller.contract import CONTROLLER_DAG_ID, URL_PREFIX
from scripts.local_airflow import LocalAirflow
from scripts.local_airflow.util import pids_in_sessions

#: The plugin's front door: a backfill requested as a person or another system would.
FRONT_DOOR = f"{URL_PREFIX}/api/backfills"
NATIVE = "/api/v2/backfills"
FINISHED = ("success", "failed")


def call(airflow: LocalAirflow, method: str, path: str, **kwargs: Any) -> Any:
    """The JSON answer of a call that is safe to repeat, retried while SQLite is locked (HTTP 500
    "Database error" or 503: Airflow rolled back). Raises ApiError for any other 4xx/5xx."""
    resp = airflow.api(method, path, retry_on=TRANSIENT_OR_DATABASE_ERROR, attempts=8, **kwargs)
    raise_for(resp, f"{method} {path}")
    return resp.json()


def airflow_version(airflow: LocalAirflow) -> str:
    """The version the api-server reports (``GET /api/v2/version``)."""
    return str(call(airflow, "GET", "/api/v2/version")["version"])


def seconds_since(moment: float, iso: str | None) -> float | None:
    """Seconds from ``moment`` (``time.time()``) to Airflow's ISO timestamp ``iso`` (None stays None)."""
    if not iso:
        return None
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp() - moment


def runs_path(dag_id: str) -> str:
    return f"/api/v2/dags/{quote_id(dag_id)}/dagRuns"


def dag_run(airflow: LocalAirflow, dag_id: str, run_id: str) -> dict[str, Any]:
    return dict(call(airflow, "GET", f"{runs_path(dag_id)}/{quote_id(run_id)}"))


def window_params(first: str, last: str) -> dict[str, str]:
    """REST filters for runs whose logical date is ``first`` .. ``last`` (ISO timestamps, inclusive)."""
    return {"logical_date_gte": first, "logical_date_lte": last}


def target_runs(airflow: LocalAirflow, dag_id: str, first: str, last: str) -> list[dict[str, Any]]:
    """Every run of ``dag_id`` with a logical date in ``first`` .. ``last``, all pages of 100."""
    runs: list[dict[str, Any]] = []
    while True:
        params = {**window_params(first, last), "limit": 100, "offset": len(runs), "order_by": "id"}
        page = call(airflow, "GET", runs_path(dag_id), params=params)
        runs += page["dag_runs"]
        if not page["dag_runs"] or len(runs) >= page["total_entries"]:
            return runs


def finished_count(airflow: LocalAirflow, dag_id: str, first: str, last: str) -> int:
    """How many runs of ``dag_id`` in the window have finished (one call, whatever their number)."""
    params: dict[str, Any] = {**window_params(first, last), "state": list(FINISHED), "limit": 1}
    return int(call(airflow, "GET", runs_path(dag_id), params=params)["total_entries"])


def nth_finished(airflow: LocalAirflow, dag_id: str, first: str, last: str, n: int) -> dict[str, Any] | None:
    """The ``n``-th run of the window to finish (by ``end_date``), or None if fewer have."""
    params: dict[str, Any] = {
        **window_params(first, last),
        "state": list(FINISHED),
        "order_by": "end_date",
        "offset": n - 1,
        "limit": 1,
    }
    page = call(airflow, "GET", runs_path(dag_id), params=params)["dag_runs"]
    return dict(page[0]) if page else None


@dataclass(frozen=True)
class Timeline:
    """Where a window's target runs are, in seconds after the request was sent."""

    runs: int
    succeeded: int
    finished: int
    first_queued: float | None
    last_end: float | None  # the last run's end, once every run of the window has finished

    @classmethod
    def of(cls, runs: Sequence[dict[str, Any]], moment: float, expected: int) -> Timeline:
        finished = [r for r in runs if r["state"] in FINISHED]
        queued = [s for s in (seconds_since(moment, r.get("queued_at")) for r in runs) if s is not None]
        ends = [s for s in (seconds_since(moment, r.get("end_date")) for r in finished) if s is not None]
        done = len(finished) >= expected and len(ends) == len(finished)
        return cls(
            runs=len(runs),
            succeeded=sum(r["state"] == "success" for r in runs),
            finished=len(finished),
            first_queued=min(queued) if queued else None,
            last_end=max(ends) if done and ends else None,
        )


def wait_finished(
    airflow: LocalAirflow,
    dag_id: str,
    first: str,
    last: str,
    expected: int,
    deadline: float,
    every: float = 1.0,
) -> int:
    """Until ``expected`` runs of the window have finished or ``deadline`` (``time.monotonic()``)
    passes; the number finished."""
    while True:
        done = finished_count(airflow, dag_id, first, last)
        if done >= expected or time.monotonic() > deadline:
            return done
        time.sleep(every)


def wait_run(airflow: LocalAirflow, dag_id: str, run_id: str, deadline: float) -> dict[str, Any]:
    """The run once it has finished, or as it is when ``deadline`` (``time.monotonic()``) passes."""
    while True:
        run = dag_run(airflow, dag_id, run_id)
        if run["state"] in FINISHED or time.monotonic() > deadline:
            return run
        time.sleep(1)


def controller_runs(airflow: LocalAirflow, head: str) -> list[dict[str, Any]]:
    """A backfill's controller runs: its head and the continuation runs ``<head>__segment_*``."""
    runs: list[dict[str, Any]] = []
    while True:
        params = {"run_id_prefix_pattern": head, "limit": 100, "offset": len(runs), "order_by": "id"}
        page = call(airflow, "GET", runs_path(CONTROLLER_DAG_ID), params=params)
        runs += page["dag_runs"]
        if not page["dag_runs"] or len(runs) >= page["total_entries"]:
            break
    return [r for r in runs if r["dag_run_id"] == head or r["dag_run_id"].startswith(f"{head}__segment_")]


def task_processes(
    airflow: LocalAirflow, dag_id: str, run_ids: Iterable[str] = (), window: tuple[str, str] | None = None
) -> int:
    """Task processes of ``dag_id`` counted from its task logs: every task process (a start, or a
    resume after a deferral) writes one "Pre Execute" group. Runs named in ``run_ids``, or with
    ``window`` (first and last day, YYYY-MM-DD), the runs ``<prefix>__<logical date>`` on those days."""
    root = airflow.home / "logs" / f"dag_id={dag_id}"
    folders: list[Path] = [root / f"run_id={r}" for r in run_ids]
    if window is not None:
        for folder in root.glob("run_id=*"):
            day = folder.name.rsplit("__", 1)[-1][:10]
            if window[0] <= day <= window[1]:
                folders.append(folder)
    count = 0
    for folder in folders:
        for log in folder.glob("task_id=*/**/attempt=*.log"):
            count += log.read_text(errors="replace").count("::group::Pre Execute")
    return count


def median(values: Sequence[float]) -> float | None:
    return statistics.median(values) if values else None


def percentile(values: Sequence[float], q: float) -> float | None:
    """The ``q``-th percentile (0..100) by the nearest rank."""
    if not values:
        return None
    ranked = sorted(values)
    return ranked[min(len(ranked) - 1, max(0, math.ceil(q / 100 * len(ranked)) - 1))]


def fmt(seconds: float | None, unit: str = " s", digits: int = 1) -> str:
    return "-" if seconds is None else f"{seconds:,.{digits}f}{unit}"


# --------------------------------------------------------------------------- api-server memory


def api_server_pids(airflow: LocalAirflow) -> list[int]:
    """The api-server and every process it started (it runs in its own session)."""
    proc = airflow.processes.get("api-server")
    if proc is None or proc.poll() is not None:
        return []
    return sorted({proc.pid, *pids_in_sessions({proc.pid})})


def memory_kib(pids: Iterable[int], field: str) -> int:
    """The sum of ``field`` (``VmRSS``, ``VmHWM``) over ``pids``, in KiB, from /proc."""
    total = 0
    for pid in pids:
        try:
            status = Path(f"/proc/{pid}/status").read_text()
        except OSError:
            continue
        for line in status.splitlines():
            if line.startswith(f"{field}:"):
                total += int(line.split()[1])
    return total


class MemoryPeak:
    """The api-server tree's summed resident memory, sampled every ``every`` seconds while the
    ``with`` block runs: ``before_mib``, ``peak_mib``, and ``hwm_mib`` (summed VmHWM afterwards,
    each process's own peak since it started)."""

    def __init__(self, airflow: LocalAirflow, every: float = 0.1) -> None:
        self.airflow = airflow
        self.every = every
        self.before_mib = 0.0
        self.peak_mib = 0.0
        self.hwm_mib = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        pids = api_server_pids(self.airflow)
        looked = time.monotonic()
        while not self._stop.is_set():
            if time.monotonic() - looked > 1:  # a worker the api-server replaced
                pids, looked = api_server_pids(self.airflow), time.monotonic()
            self.peak_mib = max(self.peak_mib, memory_kib(pids, "VmRSS") / 1024)
            self._stop.wait(self.every)

    def __enter__(self) -> MemoryPeak:
        self.before_mib = memory_kib(api_server_pids(self.airflow), "VmRSS") / 1024
        self.peak_mib = self.before_mib
        self._thread.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._stop.set()
        self._thread.join()
        pids = api_server_pids(self.airflow)
        self.peak_mib = max(self.peak_mib, memory_kib(pids, "VmRSS") / 1024)
        self.hwm_mib = memory_kib(pids, "VmHWM") / 1024
