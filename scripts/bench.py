"""``make bench``: the controller against native backfill, on the same local Airflow, same concurrency.

For each case it backfills twin targets (``X`` through the controller, ``X_native`` natively with
``POST /api/v2/backfills``) over the same daily window and prints, for each: wall time from
request to every run finished, runs per second, task processes spent per date, and the ratio
controller / native. Cases (sizes configurable):

1. overhead: a trivial two-task target, N = 60, 365 and 2,000 dates;
2. realistic: a target whose run does about 5 seconds of work, N = 120;
3. contention: case 1 at N = 365 while 25 runs of another DAG are active
   (native backfill sorts its runs behind all others: apache/airflow#58554).

First, the front door's latency (``--front-door 10,365,10000``): its dry run and a refusal that
checks every date, next to native's ``POST /api/v2/backfills/dry_run``, for N hourly dates.

    python -m scripts.bench [--backend postgres] [--front-door 10,365,10000] [--overhead 60,365,2000]
                            [--realistic 120] [--contention 365] [--max-active-runs 16]
                            [--target-max-active-runs M] [--chunk-size N] [--json out.json]

The targets' own ``max_active_runs`` defaults to the backfills' (both sides run at most that many
runs at once); with a larger one (``--target-max-active-runs 64``) only the controller's window
holds its runs back and its feeding task waits in its worker, holding an executor slot.

Before the cases, one 3-date backfill each way warms the Airflow up (not measured). The Airflow is
``scripts.local_airflow``'s, with ``[workers] min_heartbeat_interval`` 1 s: with Airflow's 5 s,
about 40% of all task processes (both sides') held their executor slot 5 s after they ended, at
random, which made single runs of a case differ by up to ±10%.

Task processes are counted from the task logs: every task process (a start, or a resume after a
deferral) writes one "Pre Execute" group.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import pendulum

from backfill_controller.contract import CONTROLLER_DAG_ID, URL_PREFIX, Task, XCom
from scripts.local_airflow import REPO_ROOT, LocalAirflow

FIRST_DAY = pendulum.datetime(2016, 1, 1, tz="UTC")
WARM_UP_DAY = pendulum.datetime(2015, 6, 1, tz="UTC")  # before every measured case's dates


@dataclass
class Measure:
    case: str
    dates: int
    how: str
    seconds: float
    runs_per_second: float
    processes_per_date: float
    succeeded: int


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=("sqlite", "postgres"), default="postgres")
    parser.add_argument("--overhead", default="60,365,2000", help="sizes of the overhead case ('' skips)")
    parser.add_argument("--realistic", default="120", help="sizes of the realistic case ('' skips)")
    parser.add_argument("--contention", default="365", help="sizes of the contention case ('' skips)")
    parser.add_argument("--scale", action="store_true", help="also time a 9,961-date (hourly) dry run")
    parser.add_argument(
        "--front-door",
        default="10,365,10000",
        help="sizes (hourly dates) of the front-door latency case: dry run and refusal vs native dry run",
    )
    parser.add_argument("--max-active-runs", type=int, default=16)
    parser.add_argument(
        "--target-max-active-runs", type=int, help="the targets' own max_active_runs (default: the same)"
    )
    parser.add_argument("--chunk-size", type=int, help="controller chunk size (default: the request's)")
    parser.add_argument("--json", help="also write the measures to this file")
    parser.add_argument("--keep", action="store_true", help="keep the Airflow home afterwards")
    args = parser.parse_args(argv)

    home = Path(tempfile.mkdtemp(prefix="backfill-bench-"))
    dags = home / "dags"
    dags.mkdir()
    for source in [*sorted((REPO_ROOT / "dags").glob("*.py")), REPO_ROOT / "bench" / "bench_targets.py"]:
        (dags / source.name).symlink_to(source)
    airflow = LocalAirflow(
        home,
        backend=args.backend,
        dags_folder=dags,
        extra_env={
            "AIRFLOW__BACKFILL_CONTROLLER__POLL_INTERVAL": "2",
            "AIRFLOW__CORE__MAX_ACTIVE_RUNS_PER_DAG": "64",
            "BENCH_TARGET_MAX_ACTIVE_RUNS": str(args.target_max_active_runs or args.max_active_runs),
        },
    )
    measures: list[Measure] = []
    offset = 0  # each backfill gets its own dates
    try:
        target_cap = args.target_max_active_runs or args.max_active_runs
        print(
            f"starting Airflow ({args.backend}) in {home}; targets' max_active_runs {target_cap}", flush=True
        )
        airflow.start()
        ids = ["bench_trivial", "bench_trivial_native", "bench_work5", "bench_work5_native", "bench_blocker"]
        ids.append("bench_hourly")
        airflow.wait_for_dags([CONTROLLER_DAG_ID, *ids], timeout=300)
        _warm_up(airflow, args.max_active_runs)
        if _sizes(args.front_door):
            print("\n" + front_door_table(_front_door(airflow, _sizes(args.front_door))), flush=True)
        cases = [("overhead", "bench_trivial", n) for n in _sizes(args.overhead)]
        cases += [("realistic", "bench_work5", n) for n in _sizes(args.realistic)]
        cases += [("contention", "bench_trivial", n) for n in _sizes(args.contention)]
        for name, target, n in cases:
            case = Case(name, target, FIRST_DAY.add(days=offset), n, args.max_active_runs)
            offset += n + 1
            if name == "contention":
                # Native backfill can starve behind other active runs (apache/airflow#58554): the
                # controller goes first, and native gets at most twice its time (5 minutes or more).
                blockers = _block(airflow, 25)
                ours = _controller(airflow, case, args.chunk_size)
                native = _native(airflow, case, cap=max(300.0, 2 * ours.seconds))
            else:
                blockers = []
                native = _native(airflow, case)
                ours = _controller(airflow, case, args.chunk_size)
            for run_id in blockers:
                airflow.api("PATCH", f"/api/v2/dags/bench_blocker/dagRuns/{run_id}", json={"state": "failed"})
            measures += [native, ours]
            _print([native, ours])
        if args.scale:
            print("\n" + _scale(airflow), flush=True)
    finally:
        airflow.stop()
        if not args.keep:
            shutil.rmtree(home, ignore_errors=True)
    print("\n" + table(measures))
    if args.json:
        Path(args.json).write_text(json.dumps([asdict(m) for m in measures], indent=2) + "\n")
    return 0


def _warm_up(airflow: LocalAirflow, max_active_runs: int) -> None:
    """A 3-date backfill each way before the measured cases, so that one-time start-up costs are
    not billed to the first case (the triggerer's first call to its in-process API took 5 s)."""
    case = Case("warm-up", "bench_trivial", WARM_UP_DAY, 3, max_active_runs)
    _native(airflow, case)
    _controller(airflow, case, None)
    print("warmed up: a 3-date backfill each way", flush=True)


def _scale(airflow: LocalAirflow) -> str:
    """A dry run of 9,961 hourly dates: planning time, peak memory, largest XCom."""
    conf = {"dag_id": "bench_hourly", "start_date": "2023-01-01", "end_date": "2024-02-20", "dry_run": True}
    began = time.monotonic()
    run_id = airflow.trigger(CONTROLLER_DAG_ID, conf)
    state = airflow.wait_for_run(CONTROLLER_DAG_ID, run_id, timeout=1800)
    seconds = time.monotonic() - began
    stats = airflow.xcom(CONTROLLER_DAG_ID, run_id, Task.PLAN, key=XCom.STATS)
    largest = max(airflow.xcom_sizes(CONTROLLER_DAG_ID, run_id, (Task.PLAN, Task.REPORT)).values())
    return (
        f"scale: {stats['dates']} dates dry run {state} in {seconds:.0f}s; "
        f"plan task {stats['plan_seconds']}s, peak RSS {stats['peak_rss_mb']} MB; "
        f"largest XCom {largest / 1024:.0f} KiB"
    )


FRONT_DOOR = f"{URL_PREFIX}/api/backfills"


def _front_door(airflow: LocalAirflow, sizes: list[int], repeat: int = 5) -> list[tuple[int, str, float]]:
    """Median seconds of the front door's dry run and refusal, and native's dry run, for ``n``
    hourly dates of ``bench_hourly`` (the refusal: the same dates with the last one off the
    schedule, found after every date is checked)."""
    airflow.api("PATCH", "/api/v2/dags/bench_hourly", json={"is_paused": False})
    first = pendulum.datetime(2016, 1, 1, tz="UTC")
    found = []
    for n in sizes:
        last = first.add(hours=n - 1)
        window = {"dag_id": "bench_hourly", "start_date": first.isoformat(), "end_date": last.isoformat()}
        dates = [first.add(hours=h).isoformat() for h in range(n - 1)] + [last.add(minutes=30).isoformat()]
        native = {
            "dag_id": "bench_hourly",
            "from_date": first.isoformat(),
            "to_date": last.isoformat(),
            "reprocess_behavior": "none",
            "max_active_runs": 16,
            "run_backwards": False,
            "dag_run_conf": {},
        }
        calls = (
            ("front door: dry run", f"{FRONT_DOOR}/dry_run", window, 200),
            (
                "front door: refusal (last date off the schedule)",
                FRONT_DOOR,
                {"dag_id": "bench_hourly", "dates": dates},
                422,
            ),
            ("native: POST /api/v2/backfills/dry_run", "/api/v2/backfills/dry_run", native, 200),
        )
        for what, path, body, expected in calls:
            seconds = []
            for _ in range(repeat):
                began = time.monotonic()
                resp = airflow.api("POST", path, json=body, timeout=300)
                seconds.append(time.monotonic() - began)
                if resp.status_code != expected:
                    raise RuntimeError(f"{what}: HTTP {resp.status_code}: {resp.text[:300]}")
            found.append((n, what, sorted(seconds)[len(seconds) // 2]))
    return found


def front_door_table(found: list[tuple[int, str, float]]) -> str:
    lines = ["| dates | call | median of 5 |", "|---|---|---|"]
    lines += [f"| {n:,} | {what} | {seconds:.3f} s |" for n, what, seconds in found]
    return "\n".join(lines)


def _sizes(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x.strip()]


@dataclass(frozen=True)
class Case:
    """One backfill of the bench: ``n`` daily dates of ``target`` (``<target>_native`` natively)."""

    name: str
    target: str
    start: pendulum.DateTime
    n: int
    max_active_runs: int

    @property
    def window(self) -> tuple[str, str]:
        return self.start.to_date_string(), self.start.add(days=self.n - 1).to_date_string()


def _native(airflow: LocalAirflow, case: Case, cap: float | None = None) -> Measure:
    dag_id, (first, last) = f"{case.target}_native", case.window
    body = {
        "dag_id": dag_id,
        "from_date": f"{first}T00:00:00Z",
        "to_date": f"{last}T00:00:00Z",
        "reprocess_behavior": "none",
        "max_active_runs": case.max_active_runs,
        "run_backwards": False,
        "dag_run_conf": {},
    }
    began = time.monotonic()
    for _ in range(120):  # SQLite answers 503 while the scheduler writes
        resp = airflow.api("POST", "/api/v2/backfills", json=body)
        if resp.status_code != 503:
            break
        time.sleep(1)
    resp.raise_for_status()
    states = _wait_runs(airflow, dag_id, first, last, case.n, until=None if cap is None else began + cap)
    seconds = time.monotonic() - began
    if cap is None:
        _wait_completed(airflow, resp.json()["id"])
    spent = _processes(airflow, dag_id, window=case.window)
    return _measure(case, "native", seconds, spent, states)


def _wait_completed(airflow: LocalAirflow, backfill_id: int, timeout: float = 60) -> None:
    """Until the scheduler marks the backfill completed (a loop after its last run): a DAG takes
    one active backfill at a time, so the next one would be refused (409)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if airflow.api("GET", f"/api/v2/backfills/{backfill_id}").json().get("completed_at"):
            return
        time.sleep(0.5)


def _controller(airflow: LocalAirflow, case: Case, chunk: int | None) -> Measure:
    first, last = case.window
    conf = {
        "dag_id": case.target,
        "start_date": first,
        "end_date": last,
        "max_active_runs": case.max_active_runs,
    }
    if chunk:
        conf["chunk_size"] = chunk
    began = time.monotonic()
    run_id = airflow.trigger(CONTROLLER_DAG_ID, conf)
    airflow.wait_for_run(CONTROLLER_DAG_ID, run_id, timeout=6 * 3600)
    seconds = time.monotonic() - began
    states = _wait_runs(airflow, case.target, first, last, case.n)
    processes = _processes(airflow, case.target, window=case.window)
    processes += _processes(airflow, CONTROLLER_DAG_ID, run_prefix=run_id)
    return _measure(case, "controller", seconds, processes, states)


def _measure(case: Case, how: str, seconds: float, processes: int, states: list[str]) -> Measure:
    return Measure(
        case.name,
        case.n,
        how,
        round(seconds, 1),
        round(case.n / seconds, 2),
        round(processes / case.n, 2),
        states.count("success"),
    )


def _wait_runs(
    airflow: LocalAirflow, dag_id: str, first: str, last: str, n: int, until: float | None = None
) -> list[str]:
    """The runs' states once all have finished, or as they are at ``until`` (monotonic seconds)."""
    while True:
        states = [r["state"] for r in airflow.dag_runs(dag_id, first, last)]
        if len(states) >= n and all(s in ("success", "failed") for s in states):
            return states
        if until is not None and time.monotonic() > until:
            return states
        time.sleep(1)


def _processes(
    airflow: LocalAirflow, dag_id: str, run_prefix: str = "", window: tuple[str, str] | None = None
) -> int:
    """Task processes of ``dag_id``: runs whose run_id starts with ``run_prefix`` and, with
    ``window``, target runs (``<prefix>__<logical date>``) of this case's dates only."""
    root = airflow.home / "logs" / f"dag_id={dag_id}"
    count = 0
    for run in root.glob(f"run_id={run_prefix}*"):
        day = run.name.rsplit("__", 1)[-1][:10]
        if window is not None and not window[0] <= day <= window[1]:
            continue
        for log in run.glob("task_id=*/**/attempt=*.log"):
            count += log.read_text(errors="replace").count("::group::Pre Execute")
    return count


def _block(airflow: LocalAirflow, count: int) -> list[str]:
    runs = [airflow.trigger("bench_blocker") for _ in range(count)]
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        running = sum(airflow.run_state("bench_blocker", r) == "running" for r in runs)
        if running == count:
            break
        time.sleep(2)
    return runs


def _print(pair: list[Measure]) -> None:
    native, ours = pair
    ratio = ours.seconds / native.seconds if native.seconds else float("nan")
    unfinished = (
        f" (native: only {native.succeeded} of {native.dates} finished)"
        if native.succeeded < native.dates
        else ""
    )
    print(
        f"{ours.case:<10} N={ours.dates:<5} native {native.seconds:7.1f}s  controller {ours.seconds:7.1f}s"
        f"  ratio {ratio:4.2f}  processes/date {native.processes_per_date:.2f}"
        f" vs {ours.processes_per_date:.2f}{unfinished}",
        flush=True,
    )


def table(measures: list[Measure]) -> str:
    lines = [
        "| case | N | native s | controller s | ratio | native runs/s | controller runs/s "
        "| processes/date native | processes/date controller |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for native, ours in zip(measures[::2], measures[1::2], strict=True):
        over = "> " if native.succeeded < native.dates else ""  # stopped waiting: not finished
        lines.append(
            f"| {ours.case} | {ours.dates} | {over}{native.seconds} | {ours.seconds} "
            f"| {ours.seconds / native.seconds:.2f} "
            f"| {native.runs_per_second} | {ours.runs_per_second} | {native.processes_per_date} "
            f"| {ours.processes_per_date} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
