"""What a local Airflow is configured with: the choices, the settings and the shared environment."""

from __future__ import annotations

import base64
import json
import os
import shlex
import sys
from pathlib import Path
from urllib.parse import quote

from scripts.local_airflow.celery_executor import celery_settings
from scripts.local_airflow.postgres import PostgresServer

REPO_ROOT = Path(__file__).resolve().parents[2]
BACKENDS = ("sqlite", "postgres")
EXECUTORS = ("local", "celery")
SIMPLE_AUTH_MANAGER = "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager"
FAB_AUTH_MANAGER = "airflow.providers.fab.auth_manager.fab_auth_manager.FabAuthManager"
AUTH_MANAGERS = {"simple": SIMPLE_AUTH_MANAGER, "fab": FAB_AUTH_MANAGER}

# Settings that make a local Airflow react quickly in tests. Override any of them with ``extra_env``.
SPEED_SETTINGS = {
    # look for new/removed DAG files every 5 s (default 300 s)
    "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
    # re-parse each DAG file at most every 5 s (default 30 s)
    "AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": "5",
    # scheduler sleeps 0.5 s between idle loops (default 1 s)
    "AIRFLOW__SCHEDULER__SCHEDULER_IDLE_SLEEP_TIME": "0.5",
}
# ``[workers] min_heartbeat_interval`` by backend. A task's supervisor (Airflow 3.3.2) that misses
# its task process's exit sleeps until its next heartbeat, up to this long (default 5 s), holding
# its executor slot: it happened after about 40% of task processes here, at random; a 120-run
# backfill took 142 s at 5 s and 100 s at 1 s. Not on SQLite: there every heartbeat is a write to
# the one file, and Airflow 3.3.2's processes then more often waited out SQLite's 5 s lock timeout
# on one another (an api-server request held up 5 s and failing with HTTP 500, the triggerer exiting
# on "database is locked"). Test suite on SQLite: 13 requests held up 5 s at 2 s, 2 to 6 at 5 s.
MIN_HEARTBEAT_INTERVAL = {"postgres": "1", "sqlite": "5"}  # SQLite: Airflow's default


def check_choices(backend: str, executor: str, auth_manager: str) -> None:
    """Raise ValueError for an unknown backend, executor or auth manager, or Celery without PostgreSQL."""
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, not {backend!r}")
    if executor not in EXECUTORS:
        raise ValueError(f"executor must be one of {EXECUTORS}, not {executor!r}")
    if executor == "celery" and backend != "postgres":
        raise ValueError("the celery executor needs the postgres backend (its result backend)")
    if auth_manager not in AUTH_MANAGERS:
        raise ValueError(f"auth_manager must be one of {tuple(AUTH_MANAGERS)}, not {auth_manager!r}")


class ConfigMixin:
    """The settings (AIRFLOW_* and PYTHONPATH) and full environment of every process of an instance.

    ``bin_dir``: the ``bin`` folder of the virtualenv whose ``airflow`` and ``python`` every process
    runs (None: the running interpreter's). ``repo_on_path``: the repository root is on PYTHONPATH
    (the suite's target DAGs and notifiers import ``tests``); without it PYTHONPATH is unset, as in a
    deployment whose code comes only from its installed packages.
    """

    home: Path
    backend: str
    executor: str
    auth_manager: str
    url: str
    port: int
    worker_log_port: int
    trigger_log_port: int
    redis_port: int | None
    bin_dir: Path | None
    repo_on_path: bool
    dags_folder: Path
    plugins_folder: Path
    username: str
    password: str
    users: dict[str, tuple[tuple[str, ...], str]]
    passwords_file: Path
    env_file: Path
    extra_env: dict[str, str]
    settings: dict[str, str]
    env: dict[str, str]
    _pg: PostgresServer | None

    def _secrets(self) -> dict[str, str]:
        """Fernet key, JWT secret and API secret key: generated once per home, then reused."""
        path = self.home / "local_airflow_secrets.json"
        if path.exists():
            return dict(json.loads(path.read_text()))
        values = {
            "fernet_key": base64.urlsafe_b64encode(os.urandom(32)).decode(),
            "jwt_secret": base64.urlsafe_b64encode(os.urandom(32)).decode(),
            "api_secret_key": base64.urlsafe_b64encode(os.urandom(16)).decode(),
        }
        path.write_text(json.dumps(values, indent=2) + "\n")
        path.chmod(0o600)
        return values

    @property
    def sql_alchemy_conn(self) -> str:
        if self._pg is not None:
            return self._pg.url
        return f"sqlite:///{self.home / 'airflow.db'}"

    def _configure(self) -> None:
        """(Re)compute ``settings`` and ``env`` from the instance's attributes."""
        self.settings = self._settings()
        self.env = self._full_env()

    def _settings(self) -> dict[str, str]:
        """Only what this class sets (AIRFLOW_* and PYTHONPATH), without the inherited environment."""
        secrets = self._secrets()
        credentials = f"{quote(self.username, safe='')}:{quote(self.password, safe='')}"
        settings = {
            "AIRFLOW_HOME": str(self.home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(self.dags_folder),
            "AIRFLOW__CORE__PLUGINS_FOLDER": str(self.plugins_folder),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
            "AIRFLOW__CORE__PARALLELISM": "8",
            "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
            "AIRFLOW__CORE__FERNET_KEY": secrets["fernet_key"],
            "AIRFLOW__CORE__AUTH_MANAGER": AUTH_MANAGERS[self.auth_manager],
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{self.url}/execution/",
            "AIRFLOW__API__HOST": "127.0.0.1",
            "AIRFLOW__API__PORT": str(self.port),
            "AIRFLOW__API__BASE_URL": self.url,
            "AIRFLOW__API__SECRET_KEY": secrets["api_secret_key"],
            "AIRFLOW__API_AUTH__JWT_SECRET": secrets["jwt_secret"],
            "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(self.worker_log_port),
            "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(self.trigger_log_port),
            "AIRFLOW__LOGGING__COLORED_CONSOLE_LOG": "False",
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": self.sql_alchemy_conn,
            "AIRFLOW_CONN_AIRFLOW_API": f"http://{credentials}@localhost:{self.port}",
            **SPEED_SETTINGS,
            "AIRFLOW__WORKERS__MIN_HEARTBEAT_INTERVAL": MIN_HEARTBEAT_INTERVAL[self.backend],
        }
        if self.auth_manager == "simple":
            settings["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS"] = ",".join(
                f"{name}:{roles[0]}" for name, (roles, _) in self.users.items()
            )
            settings["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE"] = str(self.passwords_file)
        if self.executor == "celery" and self._pg is not None and self.redis_port is not None:
            settings.update(celery_settings(self.redis_port, self._pg.url))
        if self.repo_on_path:
            pythonpath = [str(REPO_ROOT)]
            if os.environ.get("PYTHONPATH"):
                pythonpath.append(os.environ["PYTHONPATH"])
            settings["PYTHONPATH"] = os.pathsep.join(pythonpath)
        settings.update(self.extra_env)
        return settings

    def _full_env(self) -> dict[str, str]:
        env = dict(os.environ)
        if not self.repo_on_path:
            env.pop("PYTHONPATH", None)
        if self.bin_dir is not None:
            env["VIRTUAL_ENV"] = str(self.bin_dir.parent)
        # the environment's bin dir first, so `airflow` and `python` are this environment's
        path = [str(self.bin_dir or Path(sys.executable).parent)]
        if env.get("PATH"):
            path.append(env["PATH"])
        env["PATH"] = os.pathsep.join(path)
        env["PYTHONUNBUFFERED"] = "1"
        env.update(self.settings)
        return env

    def _write_env_file(self) -> None:
        """``env_file``: `source` it to use the airflow CLI against this instance."""
        self.env_file.write_text(
            "".join(f"export {k}={shlex.quote(v)}\n" for k, v in sorted(self.settings.items()))
        )
