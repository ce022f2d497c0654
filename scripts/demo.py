"""``make demo``: start a local Airflow (SQLite, LocalExecutor, four services) and run a real backfill.

It previews, then backfills two weeks of the example ``sales_pipeline`` through the front door
(``POST /backfill-controller/api/backfills``), shows progress
while the controller works, prints the per-date summary and exits non-zero if the backfill failed.

    python -m scripts.demo [--start 2024-01-01] [--end 2024-01-14] [--port 8080] [--keep]
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import Counter
from pathlib import Path

from backfill_controller.contract import CONTROLLER_DAG_ID, TARGET_RUN_PREFIX, URL_PREFIX, Task
from backfill_controller.domain.report import render_table
from scripts.local_airflow import REPO_ROOT, LocalAirflow, free_port


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dag-id", default="sales_pipeline")
    parser.add_argument("--start", default="2024-01-01")
    parser.add_argument("--end", default="2024-01-14")
    parser.add_argument("--port", type=int, default=None, help="API/UI port (default 8080 if free)")
    parser.add_argument("--home", default=str(REPO_ROOT / ".airflow-demo"))
    parser.add_argument("--keep", action="store_true", help="keep Airflow running afterwards (Ctrl-C stops)")
    args = parser.parse_args(argv)

    port = args.port or _port_or_free(8080)
    airflow = LocalAirflow(Path(args.home), backend="sqlite", port=port)
    print(f"Starting Airflow 3 (SQLite, LocalExecutor) in {airflow.home} ...", flush=True)
    try:
        airflow.start()
        airflow.wait_for_dags([CONTROLLER_DAG_ID, args.dag_id], timeout=240)
        print(f"UI: {airflow.url}  (log in as {airflow.username} / {airflow.password})\n", flush=True)
        ok = run_backfill(airflow, args.dag_id, args.start, args.end)
        if args.keep:
            print(f"\nAirflow keeps running at {airflow.url}; Ctrl-C stops it.", flush=True)
            while True:
                time.sleep(5)
                airflow.check_alive()
        else:
            print("\nTo keep Airflow up afterwards: `make up` (or `python -m scripts.demo --keep`).")
        return 0 if ok else 1
    except KeyboardInterrupt:
        return 130
    finally:
        airflow.stop()


FRONT_DOOR = f"{URL_PREFIX}/api/backfills"


def run_backfill(airflow: LocalAirflow, dag_id: str, start: str, end: str) -> bool:
    conf = {
        "dag_id": dag_id,
        "start_date": start,
        "end_date": end,
        "reprocess": "all",
        "max_active_runs": 8,
        "chunk_size": 4,
        "reason": "make demo",
    }
    print(f"POST {FRONT_DOOR}/dry_run  {conf}", flush=True)
    preview = airflow.api("POST", f"{FRONT_DOOR}/dry_run", json=conf)
    preview.raise_for_status()
    print(render_table(preview.json()) + "\n", flush=True)
    print(f"POST {FRONT_DOOR}  {conf}", flush=True)
    started = airflow.api("POST", FRONT_DOOR, json=conf)
    started.raise_for_status()
    run_id = started.json()["dag_run_id"]
    began = time.monotonic()
    while (state := airflow.run_state(CONTROLLER_DAG_ID, run_id)) not in ("success", "failed"):
        print(f"[{time.monotonic() - began:5.0f}s] {progress(airflow, dag_id, start, end)}", flush=True)
        time.sleep(3)
    report = airflow.xcom(CONTROLLER_DAG_ID, run_id, Task.REPORT)
    print(f"\nController run {run_id} finished {state} in {time.monotonic() - began:.0f}s\n")
    print(render_table(report))
    return state == "success"


def progress(airflow: LocalAirflow, dag_id: str, start: str, end: str) -> str:
    runs = airflow.dag_runs(dag_id, start, end, run_id_prefix_pattern=TARGET_RUN_PREFIX)
    counts = Counter(r["state"] for r in runs)
    return ", ".join(f"{counts.get(s, 0)} {s}" for s in ("success", "failed", "running", "queued"))


def _port_or_free(preferred: int) -> int:
    import socket

    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", preferred))
            return preferred
        except OSError:
            return free_port()


if __name__ == "__main__":
    sys.exit(main())
