"""Scale (``--scale``): a request of 100,000 five-minute dates of a trivial target, through the front door.

(a) Its dry run: seconds to the answer, and the api-server's memory: resident memory summed over
    the api-server and every process it started (read from /proc), before the call and its peak
    sampled every 0.1 s during it; and their summed VmHWM afterwards (each process's own peak since
    it started, an upper bound).
(b) A real backfill: time per date of its first 2,000 dates to finish (request sent to the
    2,000th target run's ``end_date``, over 2,000), against a 2,000-date request of the same target
    run alone before it; then the big request is cancelled
    (``POST /backfill-controller/api/backfills/{run_id}/cancel``). Before the cancel, while it runs,
    the Backfills page's list and the backfill's detail are timed.

The Airflow must be started with ``[backfill_controller] max_dates_per_request`` at least the
request's size. Every wait has a deadline: what was reached by then is reported, not raised.

Run through ``python -m scripts.bench --scale [--scale-dates 100000] [--scale-sample 2000]
[--scale-timeout 1800]`` (which starts the Airflow so).
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Any
from urllib.parse import quote

import pendulum

from backfill_controller.client.rest import ApiError, error_detail
from backfill_controller.contract import CONTROLLER_DAG_ID
from scripts.bench_common import (
    FRONT_DOOR,
    MemoryPeak,
    call,
    finished_count,
    fmt,
    nth_finished,
    runs_path,
    seconds_since,
    wait_run,
)
from scripts.bench_rounds import cancel
from scripts.local_airflow import LocalAirflow

TARGET = "bench_5min"
STEP_MINUTES = 5
BIG_FIRST = pendulum.datetime(2016, 1, 1, tz="UTC")  # 100,000 dates: to 2016-12-13
ALONE_FIRST = pendulum.datetime(2018, 1, 1, tz="UTC")
DRY_RUN_FIRST = pendulum.datetime(2020, 1, 1, tz="UTC")


def _span(first: pendulum.DateTime, n: int) -> tuple[str, str]:
    return first.isoformat(), first.add(minutes=STEP_MINUTES * (n - 1)).isoformat()


@dataclass
class DryRun:
    dates: int
    status: str
    seconds: float
    planned: int | None
    rss_before_mib: float
    rss_peak_mib: float
    hwm_mib: float


def dry_run(airflow: LocalAirflow, dates: int, timeout: float) -> DryRun:
    """The front door's dry run of ``dates`` five-minute dates, and the api-server's memory."""
    first, last = _span(DRY_RUN_FIRST, dates)
    body = {"dag_id": TARGET, "start_date": first, "end_date": last}
    planned = None
    with MemoryPeak(airflow) as memory:
        began = time.monotonic()
        try:
            resp = airflow.api("POST", f"{FRONT_DOOR}/dry_run", json=body, timeout=timeout)
            status = str(resp.status_code)
            if resp.status_code == 200:
                planned = int(resp.json()["counts"]["dates"])
            else:
                status += f": {error_detail(resp)[:300]}"
        except ApiError as exc:
            status = f"no answer ({exc})"
        seconds = time.monotonic() - began
    return DryRun(dates, status, seconds, planned, memory.before_mib, memory.peak_mib, memory.hwm_mib)


@dataclass
class Request:
    """One real backfill of the scale case, in seconds after its request was sent."""

    dates: int
    run_id: str
    status: str
    answered: float  # the front door's answer
    first_queued: float | None
    sample: int
    finished: int  # target runs finished when the bench stopped waiting (at least ``sample``: reached)
    sample_end: float | None  # the ``sample``-th run's end_date
    rss_peak_mib: float

    @property
    def per_date(self) -> float | None:
        return None if self.sample_end is None else self.sample_end / self.sample


def backfill(
    airflow: LocalAirflow, dates: int, sample: int, max_active_runs: int, timeout: float
) -> dict[str, Any]:
    """A ``sample``-date request alone (waited for to its end), then a ``dates``-date request until
    ``sample`` of its dates have finished, then cancelled; each given ``timeout`` seconds."""
    alone = _request(airflow, ALONE_FIRST, sample, sample, max_active_runs, timeout, "bench_scale_alone")
    if alone.status == "201":
        wait_run(airflow, CONTROLLER_DAG_ID, alone.run_id, deadline=time.monotonic() + timeout)
    big = _request(airflow, BIG_FIRST, dates, sample, max_active_runs, timeout, "bench_scale_big")
    running = reads(airflow, big.run_id) if big.status == "201" else {}
    try:
        cancelled = str(cancel(airflow, big.run_id))
    except ApiError as exc:
        cancelled = f"failed ({exc})"
    return {"alone": asdict(alone), "big": asdict(big), "cancelled": cancelled, "reads": running}


def reads(airflow: LocalAirflow, run_id: str) -> dict[str, float]:
    """Seconds the Backfills page's two reads take while ``run_id`` runs (median of 3 each): the
    list's first page of 50, and the backfill's detail with its first page of cells."""
    paths = {
        "list": (FRONT_DOOR, {"limit": 50}),
        "detail": (f"{FRONT_DOOR}/{quote(run_id, safe='')}", {}),
    }
    found = {}
    for name, (path, params) in paths.items():
        times = []
        for _ in range(3):
            began = time.monotonic()
            call(airflow, "GET", path, params=params)
            times.append(time.monotonic() - began)
        found[name] = sorted(times)[1]
    return found


def _request(
    airflow: LocalAirflow,
    first_date: pendulum.DateTime,
    dates: int,
    sample: int,
    max_active_runs: int,
    timeout: float,
    run_id: str,
) -> Request:
    """Request ``dates`` dates from ``first_date`` as ``run_id``; wait until ``sample`` target runs
    of them have finished, or ``timeout`` seconds after the request was sent."""
    first, last = _span(first_date, dates)
    conf = {"dag_id": TARGET, "start_date": first, "end_date": last, "max_active_runs": max_active_runs}
    moment, began = time.time(), time.monotonic()
    deadline = began + timeout
    with MemoryPeak(airflow) as memory:
        try:
            resp = airflow.api("POST", FRONT_DOOR, json=conf, params={"run_id": run_id}, timeout=timeout)
            status = str(resp.status_code)
            if resp.status_code != 201:
                status += f": {error_detail(resp)[:300]}"
        except ApiError as exc:  # no answer in time: the run may exist all the same
            status = f"no answer ({exc})"
        answered = time.monotonic() - began
    finished = 0
    if status[:1] not in ("4", "5"):
        while True:
            finished = finished_count(airflow, TARGET, first, last)
            if finished >= sample or time.monotonic() > deadline:
                break
            time.sleep(2)
    nth = nth_finished(airflow, TARGET, first, last, sample) if finished >= sample else None
    return Request(
        dates=dates,
        run_id=run_id,
        status=status,
        answered=answered,
        first_queued=_first_queued(airflow, first, last, moment),
        sample=sample,
        finished=finished,
        sample_end=seconds_since(moment, nth.get("end_date")) if nth else None,
        rss_peak_mib=memory.peak_mib,
    )


def _first_queued(airflow: LocalAirflow, first: str, last: str, moment: float) -> float | None:
    params = {"logical_date_gte": first, "logical_date_lte": last, "order_by": "id", "limit": 1}
    runs = call(airflow, "GET", runs_path(TARGET), params=params)["dag_runs"]
    return seconds_since(moment, runs[0].get("queued_at")) if runs else None


def dry_run_line(found: DryRun) -> str:
    planned = "" if found.planned is None else f", {found.planned:,} dates planned"
    return (
        f"scale (a): front-door dry run of {found.dates:,} five-minute dates: HTTP {found.status} in "
        f"{found.seconds:.1f} s{planned}; api-server memory (RSS summed over its processes) "
        f"{found.rss_before_mib:.0f} MiB before, {found.rss_peak_mib:.0f} MiB peak; "
        f"VmHWM summed {found.hwm_mib:.0f} MiB"
    )


def _request_text(found: dict[str, Any]) -> str:
    request = Request(**found)
    reached = (
        f"{request.per_date:.3f} s/date"
        if request.per_date is not None
        else f"not reached: {request.finished:,} of {request.sample:,} finished when the bench stopped"
    )
    return (
        f"{reached} (HTTP {request.status} in {request.answered:.1f} s, first queued "
        f"{fmt(request.first_queued)}, api-server peak RSS {request.rss_peak_mib:.0f} MiB during the request)"
    )


def backfill_lines(found: dict[str, Any]) -> list[str]:
    alone, big = Request(**found["alone"]), Request(**found["big"])
    ratio = "-" if alone.per_date is None or big.per_date is None else f"{big.per_date / alone.per_date:.2f}"
    return [
        f"scale (b): time per date of the first {alone.sample:,} dates finished:",
        "",
        f"* alone, a {alone.dates:,}-date request: {_request_text(found['alone'])}",
        f"* within a {big.dates:,}-date request: {_request_text(found['big'])}",
        f"* ratio {ratio}; the {big.dates:,}-date request cancelled: HTTP {found['cancelled']}",
        *(
            [
                f"* while it ran: the Backfills list (first 50) in {running['list']:.2f} s, its detail "
                f"(first page of cells) in {running['detail']:.2f} s (median of 3)"
            ]
            if (running := found.get("reads"))
            else []
        ),
    ]
