"""``python -m scripts.local_airflow up``: a local Airflow that runs until Ctrl-C."""

from __future__ import annotations

import argparse
import signal
import sys
import time
from pathlib import Path
from typing import Any

from scripts.local_airflow import AUTH_MANAGERS, BACKENDS, EXECUTORS, LocalAirflow


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m scripts.local_airflow", description="Run a real local Airflow 3 without Docker."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", help="start a local Airflow and keep it running until Ctrl-C")
    up.add_argument("--backend", choices=BACKENDS, default="sqlite")
    up.add_argument("--home", type=Path, default=Path(".airflow-demo"))
    up.add_argument("--port", type=int, default=None)
    up.add_argument("--password", default="admin")
    up.add_argument("--dags-folder", type=Path, default=None, help="default: the repo's dags/")
    up.add_argument("--plugins-folder", type=Path, default=None, help="default: the repo's plugins/")
    up.add_argument("--timeout", type=float, default=300)
    up.add_argument(
        "--executor", choices=EXECUTORS, default="local", help="celery: adds Redis and a Celery worker"
    )
    up.add_argument(
        "--auth-manager",
        choices=tuple(AUTH_MANAGERS),
        default="simple",
        help="simple: SimpleAuthManager (default); fab: the FAB provider's FabAuthManager (users, roles)",
    )
    return parser


def _raise_keyboard_interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    # Ctrl-C and `kill` both stop cleanly (SIGINT is ignored when started in a script's background)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, _raise_keyboard_interrupt)
    airflow = LocalAirflow(
        home=args.home,
        backend=args.backend,
        port=args.port,
        dags_folder=args.dags_folder,
        plugins_folder=args.plugins_folder,
        password=args.password,
        executor=args.executor,
        auth_manager=args.auth_manager,
    )
    what = f"{args.backend}, {args.executor} executor, {args.auth_manager} auth manager"
    print(f"Starting Airflow ({what}) in {airflow.home}; logs in {airflow.logs_dir}", flush=True)
    started = time.monotonic()
    try:
        airflow.start(timeout=args.timeout)
        print(
            f"\nAirflow is up after {time.monotonic() - started:.0f}s\n"
            f"  UI:    {airflow.url}\n"
            f"  login: {airflow.username} / {airflow.password}\n"
            f"  CLI:   source {airflow.env_file} && airflow dags list\n"
            "Ctrl-C to stop.\n",
            flush=True,
        )
        while True:
            airflow.check_alive()
            time.sleep(2)
    except KeyboardInterrupt:
        print("\nStopping...", flush=True)
    except Exception as exc:  # noqa: BLE001 - report and exit non-zero
        print(f"\nERROR: {exc}", file=sys.stderr, flush=True)
        return 1
    finally:
        airflow.stop()
    return 0
