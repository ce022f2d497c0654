"""``make bench``: the controller against native backfill, on one local Airflow, at equal concurrency.

    python -m scripts.bench [--backend postgres|sqlite] [--rounds 3] [--overhead 60,365,2000]
                            [--realistic 120] [--contention 365] [--front-door 10,365,10000]
                            [--burst] [--scale] [--next | --venv PATH] [--max-active-runs 16]
                            [--target-max-active-runs M] [--chunk-size N] [--json out.json] [--keep]

Each case runs ``--rounds`` rounds (3 by default). In a round, twin targets are backfilled over the
same fresh daily dates: ``X`` through the controller's front door
(``POST /backfill-controller/api/backfills``, as a person or another system would), ``X_native``
with ``POST /api/v2/backfills``; round 1 runs native first, round 2 the controller first, and so on.
Cases (sizes configurable, '' skips one):

1. overhead: a trivial two-task target, N = 60, 365 and 2,000 dates;
2. realistic: a target whose run does about 5 seconds of work, N = 120;
3. contention: the trivial target at N = 365 while 25 runs of another DAG are active (native
   backfill can start nothing then, apache/airflow#58554: the bench stops waiting for it after
   twice the controller's longest time in the case, and 300 s at least, and cancels it).

Per side, from Airflow's timestamps, in seconds after the request was sent: the request's end (the
controller run's ``end_date``, native's ``completed_at``), every target run finished, the first
target run queued, the tail (last run's end to the request's end); and task processes per date,
counted from the task logs (one "Pre Execute" group per task process; the controller's side counts
its target's runs and its own, continuation runs included). Per case: the median ratio
controller / native and its spread over the rounds, the medians of the rest, every round.

Before the cases: one 3-date backfill each way (a warm-up, not measured), then the front door's
latency (``--front-door``: its dry run and a refusal against native's dry run, hourly dates), then
``--burst``: 40 concurrent dry runs of 720 hourly dates each way (bench_front_door). After them,
``--scale``: a dry run and a real backfill of 100,000 five-minute dates (bench_scale).

``--next`` runs the Airflow of ``.venv-next`` (``make venv-next``: the next Airflow with the
package's wheel); the output names the Airflow version either way. The Airflow is
``scripts.local_airflow``'s, with ``[workers] min_heartbeat_interval`` 1 s on PostgreSQL.
"""

from __future__ import annotations

import argparse
import json
import shlex
import shutil
import sys
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pendulum

from backfill_controller.contract import CONTROLLER_DAG_ID
from scripts import bench_front_door, bench_scale
from scripts.bench_common import airflow_version
from scripts.bench_rounds import (
    Case,
    Round,
    Summary,
    Window,
    controller_side,
    native_side,
    round_line,
    rounds_table,
    run_case,
    summary_lines,
    summary_table,
)
from scripts.local_airflow import REPO_ROOT, LocalAirflow

#: The daily targets' dates (bench/bench_targets.py: 1970-01-01 to 2025-01-01): the warm-up first,
#: then each case's rounds one after another, per target.
WARM_UP_DAY = pendulum.datetime(1970, 6, 1, tz="UTC")
FIRST_DAY = pendulum.datetime(1971, 1, 1, tz="UTC")
LAST_DAY = pendulum.datetime(2024, 12, 31, tz="UTC")
NEXT_VENV = REPO_ROOT / ".venv-next"
BLOCKERS = 25
DAILY_TARGETS = ("bench_trivial", "bench_trivial_native", "bench_work5", "bench_work5_native")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m scripts.bench",
        description=__doc__.splitlines()[0] if __doc__ else None,
    )
    parser.add_argument(
        "--backend", choices=("sqlite", "postgres"), default="postgres", help="default: postgres"
    )
    parser.add_argument("--rounds", type=int, default=3, help="rounds per case, at least 1 (default: 3)")
    parser.add_argument(
        "--overhead", default="60,365,2000", help="overhead case sizes, '' skips (default: 60,365,2000)"
    )
    parser.add_argument("--realistic", default="120", help="realistic case sizes, '' skips (default: 120)")
    parser.add_argument("--contention", default="365", help="contention case sizes, '' skips (default: 365)")
    parser.add_argument(
        "--front-door",
        default="10,365,10000",
        help="hourly dates of the front door's latency, '' skips (default: 10,365,10000)",
    )
    parser.add_argument("--burst", action="store_true", help="concurrent dry runs each way")
    parser.add_argument("--burst-calls", type=int, default=40, help="calls of the burst (default: 40)")
    parser.add_argument("--burst-dates", type=int, default=720, help="hourly dates per call (default: 720)")
    parser.add_argument("--scale", action="store_true", help="a dry run and a backfill of many dates")
    parser.add_argument(
        "--scale-dates", type=int, default=100_000, help="five-minute dates (default: 100000)"
    )
    parser.add_argument(
        "--scale-sample", type=int, default=2_000, help="dates finished, timed (default: 2000)"
    )
    parser.add_argument(
        "--scale-timeout", type=float, default=1800, help="s per --scale request (default: 1800)"
    )
    parser.add_argument("--timeout", type=float, help="seconds a side may take (default: 600 + 3 per date)")
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--next", action="store_true", help=f"run the Airflow of {NEXT_VENV.name}")
    which.add_argument("--venv", type=Path, help="run the Airflow of this virtualenv")
    parser.add_argument("--max-active-runs", type=int, default=16, help="both sides' (default: 16)")
    parser.add_argument(
        "--target-max-active-runs", type=int, help="the targets' own max_active_runs (default: the same)"
    )
    parser.add_argument("--chunk-size", type=int, help="controller chunk size (default: the request's)")
    parser.add_argument("--json", type=Path, help="also write every figure to this file")
    parser.add_argument("--keep", action="store_true", help="keep the Airflow home afterwards")
    return parser


def _sizes(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x.strip()]


def _cases(args: argparse.Namespace) -> list[Case]:
    runs, chunk = args.max_active_runs, args.chunk_size
    cases = [Case("overhead", "bench_trivial", n, runs, chunk) for n in _sizes(args.overhead)]
    cases += [Case("realistic", "bench_work5", n, runs, chunk) for n in _sizes(args.realistic)]
    cases += [Case("contention", "bench_trivial", n, runs, chunk, BLOCKERS) for n in _sizes(args.contention)]
    return cases


def _windows(cases: list[Case], rounds: int) -> list[list[Window]]:
    """Each case's windows, one per round: consecutive fresh dates per target, a day apart."""
    next_day: dict[str, pendulum.DateTime] = {}
    found = []
    for case in cases:
        windows = []
        for _ in range(rounds):
            window = Window(next_day.get(case.target, FIRST_DAY), case.n)
            next_day[case.target] = window.first.add(days=case.n + 1)
            windows.append(window)
        if windows and windows[-1].first.add(days=case.n - 1) > LAST_DAY:
            raise SystemExit(
                f"{case.target}: {rounds} rounds of the cases need dates past {LAST_DAY.to_date_string()}, "
                "the targets' end; fewer rounds or smaller sizes"
            )
        found.append(windows)
    return found


@dataclass
class Results:
    """Everything measured so far (printed and written even when a later part fails)."""

    airflow: str = ""
    backend: str = ""
    command: str = ""
    front_door: list[tuple[int, str, float]] = field(default_factory=list)
    burst: list[bench_front_door.Burst] = field(default_factory=list)
    rounds: list[Round] = field(default_factory=list)
    summaries: list[Summary] = field(default_factory=list)
    scale_dry_run: bench_scale.DryRun | None = None
    scale_backfill: dict[str, Any] | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "airflow": self.airflow,
            "backend": self.backend,
            "command": self.command,
            "front_door": [{"dates": n, "call": what, "median_s": s} for n, what, s in self.front_door],
            "burst": [b.as_dict() for b in self.burst],
            "rounds": [asdict(r) for r in self.rounds],
            "summaries": [asdict(s) for s in self.summaries],
            "scale_dry_run": asdict(self.scale_dry_run) if self.scale_dry_run else None,
            "scale_backfill": self.scale_backfill,
        }

    def tables(self) -> str:
        parts = [f"## Airflow {self.airflow or '?'}, {self.backend}: `{self.command}`"]
        if self.front_door:
            parts.append("Front door latency:\n\n" + bench_front_door.latency_table(self.front_door))
        if self.burst:
            parts.append(f"Burst:\n\n{bench_front_door.burst_table(self.burst)}")
        if self.summaries:
            parts.append(f"Cases:\n\n{summary_table(self.summaries)}")
            parts.append(f"Rounds:\n\n{rounds_table(self.rounds)}")
        if self.scale_dry_run:
            parts.append(bench_scale.dry_run_line(self.scale_dry_run))
        if self.scale_backfill:
            parts.append("\n".join(bench_scale.backfill_lines(self.scale_backfill)))
        return "\n\n".join(parts)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    venv = NEXT_VENV if args.next else args.venv
    if venv is not None and not (venv / "bin" / "python").exists():
        print(
            f"{venv} is not a virtualenv" + (": make venv-next builds it" if args.next else ""),
            file=sys.stderr,
        )
        return 2
    cases = _cases(args)
    windows = _windows(cases, max(1, args.rounds))
    results = Results(
        backend=args.backend, command=shlex.join(["python", "-m", "scripts.bench", *sys.argv[1:]])
    )
    home = Path(tempfile.mkdtemp(prefix="backfill-bench-"))
    airflow = _airflow(home, args, venv)
    try:
        target_cap = args.target_max_active_runs or args.max_active_runs
        print(
            f"starting Airflow ({args.backend}) in {home}; targets' max_active_runs {target_cap}", flush=True
        )
        airflow.start()
        results.airflow = airflow_version(airflow)
        print(f"Airflow {results.airflow}" + (f" from {venv}" if venv else ""), flush=True)
        _ready(airflow, scale=args.scale)
        _warm_up(airflow, args.max_active_runs)
        if _sizes(args.front_door):
            results.front_door = bench_front_door.latency(airflow, _sizes(args.front_door))
            print("\n" + bench_front_door.latency_table(results.front_door) + "\n", flush=True)
        if args.burst:
            results.burst = bench_front_door.burst(airflow, args.burst_calls, args.burst_dates)
            print("\n" + bench_front_door.burst_table(results.burst) + "\n", flush=True)
        for case, case_windows in zip(cases, windows, strict=True):
            timeout = args.timeout or 600 + 3 * case.n
            rounds = []
            for done in run_case(airflow, case, case_windows, timeout):
                rounds.append(done)
                results.rounds.append(done)
            results.summaries.append(Summary.of(rounds))
            print("\n".join(summary_lines(results.summaries[-1])) + "\n", flush=True)
        if args.scale:
            results.scale_dry_run = bench_scale.dry_run(airflow, args.scale_dates, args.scale_timeout)
            print(bench_scale.dry_run_line(results.scale_dry_run), flush=True)
            results.scale_backfill = bench_scale.backfill(
                airflow, args.scale_dates, args.scale_sample, args.max_active_runs, args.scale_timeout
            )
            print("\n".join(bench_scale.backfill_lines(results.scale_backfill)), flush=True)
    finally:
        airflow.stop()
        if not args.keep:
            shutil.rmtree(home, ignore_errors=True)
        print("\n" + results.tables())
        if args.json:
            args.json.write_text(json.dumps(results.as_dict(), indent=2) + "\n")
    return 0


def _airflow(home: Path, args: argparse.Namespace, venv: Path | None) -> LocalAirflow:
    """A local Airflow whose DAGs are the repository's and the bench targets."""
    dags = home / "dags"
    dags.mkdir()
    for source in [*sorted((REPO_ROOT / "dags").glob("*.py")), REPO_ROOT / "bench" / "bench_targets.py"]:
        (dags / source.name).symlink_to(source)
    extra_env = {
        "AIRFLOW__BACKFILL_CONTROLLER__POLL_INTERVAL": "2",
        "AIRFLOW__CORE__MAX_ACTIVE_RUNS_PER_DAG": "64",
        "BENCH_TARGET_MAX_ACTIVE_RUNS": str(args.target_max_active_runs or args.max_active_runs),
    }
    if args.scale:
        extra_env["AIRFLOW__BACKFILL_CONTROLLER__MAX_DATES_PER_REQUEST"] = str(max(100_000, args.scale_dates))
    return LocalAirflow(home, backend=args.backend, dags_folder=dags, extra_env=extra_env, venv=venv)


def _ready(airflow: LocalAirflow, scale: bool) -> None:
    """Until every DAG the bench uses is loaded, and its targets unpaused."""
    targets = [*DAILY_TARGETS, bench_front_door.HOURLY, *([bench_scale.TARGET] if scale else [])]
    airflow.wait_for_dags([CONTROLLER_DAG_ID, "bench_blocker", *targets], timeout=300)
    for dag_id in targets:
        airflow.set_paused(dag_id, False)


def _warm_up(airflow: LocalAirflow, max_active_runs: int) -> None:
    """A 3-date backfill each way before the measured cases, so that one-time start-up costs are
    not billed to the first case (the triggerer's first call to its in-process API took 5 s)."""
    case = Case("warm-up", "bench_trivial", 3, max_active_runs)
    window = Window(WARM_UP_DAY, 3)
    native = native_side(airflow, case, window, True, 600)
    ours = controller_side(airflow, case, window, False, 600, "bench_warm_up")
    print("warm-up, not measured: " + round_line(Round("warm-up", 3, 0, native, ours)), flush=True)


if __name__ == "__main__":
    sys.exit(main())
