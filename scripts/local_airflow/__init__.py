"""Run a real local Airflow 3 (api-server, scheduler, dag-processor, triggerer) without Docker.

Used by the integration tests (``tests/conftest.py``) and by ``make up``::

    python -m scripts.local_airflow up --backend sqlite --home .airflow-demo [--port 8080]

Backends: ``sqlite`` (a file in AIRFLOW_HOME) or ``postgres`` (a throwaway PostgreSQL server started
with initdb/pg_ctl, its data directory inside AIRFLOW_HOME; as root it runs as the ``postgres`` user).
Every process gets the same environment (``LocalAirflow.env``), so ``airflow`` CLI commands run with
it talk to the same metadata database.

Auth managers: ``simple`` (Airflow's SimpleAuthManager: users from the environment, fixed roles viewer,
user, op, admin) or ``fab`` (the FAB provider's FabAuthManager: users and roles in the metadata database,
per-DAG permissions such as ``("can_edit", "DAG:my_dag")``). Either way ``username``/``password`` is
an admin whose JWT ``token()`` returns, and ``AIRFLOW_CONN_AIRFLOW_API`` logs in with it.

The parts: ``config`` (settings and environment), ``postgres`` (the PostgreSQL server),
``celery_executor`` (Redis and the Celery worker), ``services`` (the processes), ``runs`` (DAGs,
runs, task states and XComs over the REST API), ``users`` (users and roles), ``cli``
(``python -m scripts.local_airflow``).
"""

from __future__ import annotations

import atexit
import subprocess
import time
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType

import requests

from backfill_controller.client.rest import RestClient
from scripts.local_airflow.celery_executor import CELERY_SERVICES
from scripts.local_airflow.config import (
    AUTH_MANAGERS,
    BACKENDS,
    EXECUTORS,
    FAB_AUTH_MANAGER,
    MIN_HEARTBEAT_INTERVAL,
    REPO_ROOT,
    SIMPLE_AUTH_MANAGER,
    SPEED_SETTINGS,
    ConfigMixin,
    check_choices,
)
from scripts.local_airflow.postgres import PostgresServer, find_postgres_bin
from scripts.local_airflow.runs import FINAL_RUN_STATES, RunsMixin
from scripts.local_airflow.services import HEALTH_COMPONENTS, MAX_RESTARTS, SERVICES, ServicesMixin
from scripts.local_airflow.users import ADMIN_ROLE, FAB_API, SIMPLE_ROLES, UsersMixin
from scripts.local_airflow.util import airflow_executable, free_port

__all__ = [
    "ADMIN_ROLE",
    "AUTH_MANAGERS",
    "BACKENDS",
    "CELERY_SERVICES",
    "EXECUTORS",
    "FAB_API",
    "FAB_AUTH_MANAGER",
    "FINAL_RUN_STATES",
    "HEALTH_COMPONENTS",
    "MAX_RESTARTS",
    "MIN_HEARTBEAT_INTERVAL",
    "REPO_ROOT",
    "SERVICES",
    "SIMPLE_AUTH_MANAGER",
    "SIMPLE_ROLES",
    "SPEED_SETTINGS",
    "LocalAirflow",
    "airflow_executable",
    "find_postgres_bin",
    "free_port",
]


class LocalAirflow(UsersMixin, RunsMixin, ServicesMixin, ConfigMixin):
    """A real Airflow 3 started as four processes with LocalExecutor, for tests and demos.

    Use as a context manager, or call ``start()`` and ``stop()``. ``env`` is the full environment
    of every process (run ``airflow`` CLI commands with it, or use ``airflow_cli``).
    """

    def __init__(
        self,
        home: Path,
        backend: str = "sqlite",
        port: int | None = None,
        dags_folder: Path | None = None,
        plugins_folder: Path | None = None,
        extra_env: dict[str, str] | None = None,
        password: str = "admin",
        username: str = "admin",
        executor: str = "local",
        auth_manager: str = "simple",
        users: Mapping[str, tuple[str, str]] | None = None,
        venv: Path | None = None,
        repo_on_path: bool = True,
    ) -> None:
        """``users``: more users than the admin ``username``, as ``{username: (role, password)}``,
        created before the services start; the role is one of :data:`SIMPLE_ROLES` with
        ``auth_manager="simple"``, a FAB role name with ``"fab"`` (builtin Admin, Op, User, Viewer,
        Public, or one given to ``create_role`` before ``start()``).

        ``venv``: a virtualenv whose ``airflow`` and ``python`` every process runs (default: the
        running interpreter's environment). ``repo_on_path=False`` leaves the repository off
        PYTHONPATH: with both, the instance is a stock deployment of whatever that virtualenv has
        installed (``tests/stock``)."""
        check_choices(backend, executor, auth_manager)
        self.bin_dir = Path(venv).absolute() / "bin" if venv is not None else None
        if self.bin_dir is not None and not (self.bin_dir / "python").exists():
            raise ValueError(f"{venv} is not a virtualenv: no bin/python")
        self.repo_on_path = repo_on_path
        self.executor = executor
        self.auth_manager = auth_manager
        self.home = Path(home).resolve()
        self.home.mkdir(parents=True, exist_ok=True)
        self.backend = backend
        self.port = port or free_port()
        self.dags_folder = Path(dags_folder or REPO_ROOT / "dags").resolve()
        self.plugins_folder = Path(plugins_folder or REPO_ROOT / "plugins").resolve()
        self.username = username
        self.password = password
        self.users = {}
        self._pending_roles = {}
        self._add_user(username, (ADMIN_ROLE[auth_manager],), password)
        for name, (role, user_password) in (users or {}).items():
            self._add_user(name, (role,), user_password)
        self.url = f"http://localhost:{self.port}"
        self.logs_dir = self.home / "logs"
        self.passwords_file = self.home / "passwords.json"
        self.env_file = self.home / "env.sh"  # `source` it to use the airflow CLI against this instance
        used = {self.port}
        self.worker_log_port = free_port(used)
        used.add(self.worker_log_port)
        self.trigger_log_port = free_port(used)
        used.add(self.trigger_log_port)
        self._pg = PostgresServer(self.home, free_port(used)) if backend == "postgres" else None
        if self._pg is not None:
            used.add(self._pg.port)
        self.redis_port = free_port(used) if executor == "celery" else None
        self.extra_env = dict(extra_env or {})
        self._configure()
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        self.restarts: dict[str, int] = {}
        self._session = requests.Session()
        self.rest = RestClient(self.url, username, password, attempts=1)
        self._running = False

    def start(self, timeout: float = 180) -> LocalAirflow:
        """Migrate the DB, start the four services and wait until /api/v2/monitor/health is all healthy."""
        if self._running:
            return self
        deadline = time.monotonic() + timeout
        self.logs_dir.mkdir(parents=True, exist_ok=True)
        if self.auth_manager == "simple":
            self._write_passwords()
        self._write_env_file()
        self._running = True
        atexit.register(self.stop)
        try:
            if self._pg is not None:
                self._pg.start()
            if self.executor == "celery":
                self._spawn("redis")
            self._migrate(deadline)
            if self.auth_manager == "fab":
                self._fab_setup(self._pending_roles, self.users, deadline)
                self._pending_roles.clear()
            for service in self.service_names:
                if service not in self.processes:
                    self._spawn(service)
            self._wait_healthy(deadline)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self, grace: float = 20) -> None:
        """Terminate every service (and anything they started), then stop PostgreSQL."""
        self._stop_services(grace)
        if self._pg is not None:
            self._pg.stop()
        self.rest.forget_token()
        self._running = False
        atexit.unregister(self.stop)

    def __enter__(self) -> LocalAirflow:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
