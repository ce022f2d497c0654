"""The Airflow processes of a local instance: migrate, start, supervise, restart, stop, logs.

Each service runs in its own session with the instance's environment and logs to
``logs/<service>.log`` in AIRFLOW_HOME.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import requests

from scripts.local_airflow.celery_executor import CELERY_SERVICES, celery_worker_command, redis_command
from scripts.local_airflow.postgres import PostgresServer
from scripts.local_airflow.util import airflow_executable, pids_in_sessions, send_signal, tail

SERVICES = ("api-server", "scheduler", "dag-processor", "triggerer")
HEALTH_COMPONENTS = ("metadatabase", "scheduler", "triggerer", "dag_processor")
MAX_RESTARTS = 10
_DAGBAG_MARK = "LOCAL_AIRFLOW_DAGBAG="


class ServicesMixin:
    """Starts and supervises the processes of an instance (``processes``: {service: Popen})."""

    home: Path
    port: int
    url: str
    executor: str
    auth_manager: str
    redis_port: int | None
    bin_dir: Path | None
    dags_folder: Path
    logs_dir: Path
    env: dict[str, str]
    processes: dict[str, subprocess.Popen[bytes]]
    restarts: dict[str, int]
    _session: requests.Session
    _pg: PostgresServer | None

    @property
    def python_bin(self) -> str:
        """The ``python`` every Airflow process of this instance runs."""
        return str(self.bin_dir / "python") if self.bin_dir is not None else sys.executable

    @property
    def airflow_bin(self) -> str:
        """The ``airflow`` script every Airflow process of this instance runs."""
        return airflow_executable(self.bin_dir)

    @property
    def service_names(self) -> tuple[str, ...]:
        """The processes this instance runs: Airflow's four, plus Redis and a Celery worker with Celery."""
        return (*SERVICES, *CELERY_SERVICES) if self.executor == "celery" else SERVICES

    def _command(self, service: str) -> list[str]:
        if service == "redis" and self.redis_port is not None:
            return redis_command(self.redis_port)
        if service == "celery-worker":
            return celery_worker_command(self.airflow_bin)
        args = [self.airflow_bin, service]
        if service == "api-server":
            args += ["--port", str(self.port), "--host", "127.0.0.1"]
        return args

    def _spawn(self, service: str) -> None:
        with open(self.logs_dir / f"{service}.log", "ab") as out:
            self.processes[service] = subprocess.Popen(
                self._command(service),
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                cwd=self.home,
                start_new_session=True,
            )

    def _migrate(self, deadline: float) -> None:
        log = self.logs_dir / "db-migrate.log"
        with open(log, "ab") as out:
            res = subprocess.run(
                [self.airflow_bin, "db", "migrate"],
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                cwd=self.home,
                timeout=max(deadline - time.monotonic(), 1),
                check=False,
            )
        if res.returncode != 0:
            raise RuntimeError(f"`airflow db migrate` failed ({res.returncode}):\n{tail(log, 40)}")
        # On SQLite no more is needed for write-ahead-log mode: Airflow's engine sets
        # `PRAGMA journal_mode=WAL` on every connection (airflow.utils.orm_event_handlers), so
        # readers and the one writer of the file do not block each other ("database is locked").

    def restart(self, service: str, *, kill: bool = False, down_for: float = 0.0) -> None:
        """Stop one service (SIGKILL to it and every process in its session when ``kill``, which
        also takes down the LocalExecutor workers and task processes of the scheduler), wait
        ``down_for`` seconds, and start it again. For fault-injection tests."""
        proc = self.processes[service]
        send_signal([*pids_in_sessions({proc.pid}), proc.pid], signal.SIGKILL if kill else signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=30)
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
        time.sleep(down_for)
        self._spawn(service)
        if service == "api-server":
            deadline = time.monotonic() + 120
            while self.health() is None:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"api-server did not come back:\n{self.log_tail(service, 40)}")
                time.sleep(1)

    def check_alive(self) -> None:
        """Restart a service that has exited, as a process supervisor would (at most
        ``MAX_RESTARTS`` times each); raise RuntimeError with its log tail beyond that.

        On SQLite a service can die of "database is locked" under load (Airflow's scheduler and
        triggerer exit on such errors and rely on being restarted)."""
        for service, proc in list(self.processes.items()):
            if proc.poll() is None:
                continue
            self.restarts[service] = self.restarts.get(service, 0) + 1
            if self.restarts[service] > MAX_RESTARTS:
                raise RuntimeError(
                    f"airflow {service} exited with code {proc.returncode} "
                    f"(restarted {MAX_RESTARTS} times already); last log lines:\n{self.log_tail(service, 40)}"
                )
            print(
                f"local_airflow: {service} exited with code {proc.returncode}; restarting it", file=sys.stderr
            )
            self._spawn(service)

    def health(self) -> dict[str, Any] | None:
        try:
            resp = self._session.get(f"{self.url}/api/v2/monitor/health", timeout=5)
        except requests.RequestException:
            return None
        return dict(resp.json()) if resp.status_code == 200 else None

    def _wait_healthy(self, deadline: float) -> None:
        last: dict[str, Any] | None = None
        while True:
            self.check_alive()
            last = self.health()
            if last and all((last.get(c) or {}).get("status") == "healthy" for c in HEALTH_COMPONENTS):
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"Airflow at {self.url} not healthy in time; last health: {last}")
            time.sleep(1)

    def _stop_services(self, grace: float) -> None:
        """Terminate every service and anything they started (SIGKILL after ``grace`` seconds)."""
        sessions = {proc.pid for proc in self.processes.values()}
        running = [proc.pid for proc in self.processes.values() if proc.poll() is None]
        send_signal(running, signal.SIGTERM, group=True)
        end = time.monotonic() + grace
        for proc in self.processes.values():
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=max(end - time.monotonic(), 0.1))
        # whatever is left in the services' sessions (task runners use their own process groups)
        for _ in range(3):
            leftovers = pids_in_sessions(sessions)
            if not leftovers:
                break
            send_signal(leftovers, signal.SIGKILL)
            time.sleep(0.5)
        for proc in self.processes.values():
            if proc.poll() is None:
                send_signal([proc.pid], signal.SIGKILL, group=True)
                proc.wait(timeout=10)
        self.processes.clear()

    # ------------------------------------------------------------------ logs
    def log_path(self, service: str) -> Path:
        if service == "postgres" and self._pg is not None:
            return self._pg.log_file
        return self.logs_dir / f"{service}.log"

    def log_tail(self, service: str, n: int = 50) -> str:
        """Last ``n`` lines of a service log (api-server, scheduler, dag-processor, triggerer,
        db-migrate, postgres)."""
        return tail(self.log_path(service), n)

    def services(self) -> list[str]:
        names = ["db-migrate", *(["fab-setup"] if self.auth_manager == "fab" else []), *self.service_names]
        return [*names, "postgres"] if self._pg is not None else names

    # ------------------------------------------------------------------ commands in the environment
    def _run(
        self, args: list[str], timeout: float, stdin: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        """Run ``args`` with this Airflow's environment in AIRFLOW_HOME (text output captured, no check)."""
        return subprocess.run(
            args,
            input=stdin,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd=self.home,
            check=False,
        )

    def _python(
        self, code: str, timeout: float, stdin: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        """Run ``code`` in a Python process with this Airflow's environment."""
        return self._run([self.python_bin, "-c", code], timeout, stdin)

    def airflow_cli(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        """Run ``airflow *args`` against this instance (text output captured, no check)."""
        return self._run([self.airflow_bin, *args], timeout)

    def parse_dag_folder(self, timeout: float = 120) -> dict[str, Any]:
        """Parse the DAGs folder in a subprocess (a DagBag, as the dag-processor would) and return
        ``{"dag_ids": [...], "import_errors": {file: traceback}}``: the DAGs this instance should list."""
        code = (
            "import json\n"
            "from airflow.dag_processing.dagbag import DagBag\n"
            f"bag = DagBag(dag_folder={str(self.dags_folder)!r})\n"
            "print('\\n' + _MARK + json.dumps({'dag_ids': sorted(bag.dag_ids),"
            " 'import_errors': dict(bag.import_errors)}))\n"
        ).replace("_MARK", repr(_DAGBAG_MARK))
        res = self._python(code, timeout)
        for line in reversed(res.stdout.splitlines()):
            if line.startswith(_DAGBAG_MARK):
                return dict(json.loads(line[len(_DAGBAG_MARK) :]))
        raise RuntimeError(f"parsing {self.dags_folder} failed ({res.returncode}):\n{res.stderr[-3000:]}")
