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
"""

from __future__ import annotations

import argparse
import atexit
import base64
import contextlib
import glob
import json
import os
import shlex
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import quote

import requests

REPO_ROOT = Path(__file__).resolve().parents[1]
SERVICES = ("api-server", "scheduler", "dag-processor", "triggerer")
EXECUTORS = ("local", "celery")
#: With ``executor="celery"``: a Redis broker (Debian's redis-server) and one Celery worker more.
CELERY_SERVICES = ("redis", "celery-worker")
HEALTH_COMPONENTS = ("metadatabase", "scheduler", "triggerer", "dag_processor")
FINAL_RUN_STATES = frozenset({"success", "failed"})
BACKENDS = ("sqlite", "postgres")
MAX_RESTARTS = 10
_DAGBAG_MARK = "LOCAL_AIRFLOW_DAGBAG="
SIMPLE_AUTH_MANAGER = "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager"
FAB_AUTH_MANAGER = "airflow.providers.fab.auth_manager.fab_auth_manager.FabAuthManager"
AUTH_MANAGERS = {"simple": SIMPLE_AUTH_MANAGER, "fab": FAB_AUTH_MANAGER}
#: SimpleAuthManager's fixed roles, lowest to highest; each grants what the ones before it grant.
SIMPLE_ROLES = ("viewer", "user", "op", "admin")
#: The role of ``LocalAirflow.username`` by auth manager (FAB's builtin roles: Admin, Op, User,
#: Viewer, Public).
ADMIN_ROLE = {"simple": "admin", "fab": "Admin"}
#: FAB's REST API for users and roles (served by the FAB auth manager under /auth).
FAB_API = "/auth/fab/v1"
_FAB_SETUP_MARK = "LOCAL_AIRFLOW_FAB_SETUP="
# Run with the instance's environment and a JSON spec on stdin: creates FAB roles (with their
# permissions; missing actions/resources such as "DAG:<id>" are created) and creates or updates users
# (password and roles). FAB's security manager needs a Flask app: get_application_builder() builds one,
# which also syncs FAB's builtin roles. Prints no password.
_FAB_SETUP_CODE = """\
import json, sys
from airflow.providers.fab.auth_manager.cli_commands.utils import get_application_builder

spec = json.load(sys.stdin)
done = {"roles": [], "users": []}
with get_application_builder() as appbuilder:
    sm = appbuilder.sm
    for role_spec in spec["roles"]:
        role = sm.add_role(role_spec["name"])  # returns the existing role if there is one
        for action, resource in role_spec["permissions"]:
            perm = sm.create_permission(action, resource)
            if perm not in role.permissions:
                sm.add_permission_to_role(role, perm)
        done["roles"].append(role_spec["name"])
    for user_spec in spec["users"]:
        roles = [sm.find_role(name) for name in user_spec["roles"]]
        missing = [name for name, role in zip(user_spec["roles"], roles) if role is None]
        if missing:
            sys.exit(f"user {user_spec['username']!r}: unknown FAB roles {missing}")
        user = sm.find_user(username=user_spec["username"])
        if user is None:
            name = user_spec["username"]
            sm.add_user(name, name, "local", name + "@example.org", roles, user_spec["password"])
        else:
            user.roles = roles
            user.active = True
            user.password = sm._hash_password(user_spec["password"])
            if not sm.update_user(user):
                sys.exit(f"could not update user {user_spec['username']!r}")
        done["users"].append(user_spec["username"])
print("\\n" + MARK + json.dumps(done))
"""

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


def free_port(exclude: Iterable[int] = ()) -> int:
    """A TCP port on 127.0.0.1 that is free right now (and not in ``exclude``)."""
    excluded = set(exclude)
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind(("127.0.0.1", 0))
            port = int(sock.getsockname()[1])
        if port not in excluded:
            return port


def airflow_executable() -> str:
    """The ``airflow`` script of the running interpreter's environment (else the one on PATH)."""
    candidate = Path(sys.executable).parent / "airflow"
    if candidate.exists():
        return str(candidate)
    found = shutil.which("airflow")
    if not found:
        raise FileNotFoundError("no `airflow` executable next to the interpreter or on PATH")
    return found


def find_postgres_bin() -> Path:
    """Directory holding initdb/pg_ctl: $PG_BIN, else the newest Debian-style install, else PATH."""
    if os.environ.get("PG_BIN"):
        return Path(os.environ["PG_BIN"])
    found = glob.glob("/usr/lib/postgresql/*/bin/initdb")
    if found:

        def version(path: str) -> tuple[int, ...]:
            name = Path(path).parent.parent.name
            return tuple(int(p) for p in name.split(".") if p.isdigit())

        return Path(max(found, key=version)).parent
    which = shutil.which("initdb")
    if which:
        return Path(which).parent
    raise FileNotFoundError(
        "PostgreSQL server binaries (initdb, pg_ctl) not found: install them with "
        "`apt-get install postgresql` or set PG_BIN to the folder holding them"
    )


def _tail(path: Path, n: int) -> str:
    try:
        with open(path, "rb") as fh:
            lines = fh.read().decode("utf-8", errors="replace").splitlines()
    except FileNotFoundError:
        return f"<{path.name}: no log yet>"
    return "\n".join(lines[-n:])


class _Postgres:
    """A throwaway PostgreSQL server: initdb (trust auth), pg_ctl start on a free port, createdb airflow."""

    def __init__(self, home: Path, port: int) -> None:
        self.home = home
        self.port = port
        self.as_root = os.geteuid() == 0
        self.data = home / "pgdata"
        self.log_file = home / "logs" / "postgres.log"
        self._outside_dir: Path | None = None
        self._bin: Path | None = None
        self.started = False

    @property
    def bin(self) -> Path:
        if self._bin is None:
            self._bin = find_postgres_bin()
        return self._bin

    @property
    def url(self) -> str:
        return f"postgresql+psycopg2://postgres@127.0.0.1:{self.port}/airflow"

    def _run(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        cmd = list(args)
        if self.as_root:  # PostgreSQL refuses to run as root
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        return subprocess.run(
            cmd, capture_output=True, text=True, timeout=timeout, cwd=str(self.data.parent), check=False
        )

    def _postgres_can_use(self, path: Path) -> bool:
        result = subprocess.run(["runuser", "-u", "postgres", "--", "test", "-w", str(path)], check=False)
        return result.returncode == 0

    def _prepare_dirs(self) -> None:
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        if not self.as_root:
            self.data.mkdir(mode=0o700, exist_ok=True)
            return
        self.data.mkdir(mode=0o700, exist_ok=True)
        shutil.chown(self.data, "postgres", "postgres")
        # the postgres user must be able to traverse AIRFLOW_HOME (search permission only)
        self.home.chmod(self.home.stat().st_mode | 0o011)
        if not self._postgres_can_use(self.data):
            # a parent of AIRFLOW_HOME is closed to other users: use a private dir in the temp folder
            self._outside_dir = Path(tempfile.mkdtemp(prefix="local-airflow-pg-"))
            shutil.chown(self._outside_dir, "postgres", "postgres")
            self.data = self._outside_dir / "pgdata"
            self.data.mkdir(mode=0o700)
            shutil.chown(self.data, "postgres", "postgres")
            (self.home / "pgdata.location").write_text(f"{self.data}\n")
        # pg_ctl writes its log as the postgres user
        self.log_file.touch()
        shutil.chown(self.log_file, "postgres", "postgres")
        if not self._postgres_can_use(self.log_file):
            self.log_file = self.data.parent / "postgres.log"

    def start(self, timeout: float = 60) -> None:
        self._prepare_dirs()
        if not (self.data / "PG_VERSION").exists():
            res = self._run(
                str(self.bin / "initdb"),
                "-D",
                str(self.data),
                "-A",
                "trust",
                "-U",
                "postgres",
                "-E",
                "UTF8",
                "--no-sync",
            )
            if res.returncode != 0:
                raise RuntimeError(f"initdb failed:\n{res.stdout}\n{res.stderr}")
        options = (
            f"-p {self.port} -c listen_addresses=127.0.0.1 -c unix_socket_directories='' "
            "-c max_connections=200 -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        )
        res = self._run(
            str(self.bin / "pg_ctl"),
            "-D",
            str(self.data),
            "-l",
            str(self.log_file),
            "-o",
            options,
            "-w",
            "-t",
            str(int(timeout)),
            "start",
            timeout=timeout + 10,
        )
        if res.returncode != 0:
            raise RuntimeError(
                f"pg_ctl start failed:\n{res.stdout}\n{res.stderr}\n{_tail(self.log_file, 30)}"
            )
        self.started = True
        res = subprocess.run(
            [str(self.bin / "createdb"), "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres"]
            + ["airflow"],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        if res.returncode != 0 and "already exists" not in res.stderr:
            raise RuntimeError(f"createdb failed:\n{res.stdout}\n{res.stderr}")

    def stop(self) -> None:
        if (self.data / "postmaster.pid").exists() or self.started:
            pg_ctl = [str(self.bin / "pg_ctl"), "-D", str(self.data), "-w", "-t", "30"]
            res = self._run(*pg_ctl, "-m", "fast", "stop")
            if res.returncode != 0 and (self.data / "postmaster.pid").exists():
                self._run(*pg_ctl, "-m", "immediate", "stop")
        self.started = False
        if self._outside_dir is not None:
            shutil.rmtree(self._outside_dir, ignore_errors=True)
            with contextlib.suppress(FileNotFoundError):
                (self.home / "pgdata.location").unlink()
            self._outside_dir = None


class LocalAirflow:
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
    ) -> None:
        """``users``: more users than the admin ``username``, as ``{username: (role, password)}``,
        created before the services start; the role is one of :data:`SIMPLE_ROLES` with
        ``auth_manager="simple"``, a FAB role name with ``"fab"`` (builtin Admin, Op, User, Viewer,
        Public, or one given to ``create_role`` before ``start()``)."""
        if backend not in BACKENDS:
            raise ValueError(f"backend must be one of {BACKENDS}, not {backend!r}")
        if executor not in EXECUTORS:
            raise ValueError(f"executor must be one of {EXECUTORS}, not {executor!r}")
        if executor == "celery" and backend != "postgres":
            raise ValueError("the celery executor needs the postgres backend (its result backend)")
        if auth_manager not in AUTH_MANAGERS:
            raise ValueError(f"auth_manager must be one of {tuple(AUTH_MANAGERS)}, not {auth_manager!r}")
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
        #: {username: (roles, password)} of every user created at start, the admin first
        self.users: dict[str, tuple[tuple[str, ...], str]] = {}
        #: FAB roles to create at start: {name: [(action, resource), ...]}
        self._pending_roles: dict[str, list[tuple[str, str]]] = {}
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
        self._pg = _Postgres(self.home, free_port(used)) if backend == "postgres" else None
        if self._pg is not None:
            used.add(self._pg.port)
        self.redis_port = free_port(used) if executor == "celery" else None
        self.extra_env = dict(extra_env or {})
        self.settings = self._settings()
        self.env = self._full_env()
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        self.restarts: dict[str, int] = {}
        self._session = requests.Session()
        self._token: str | None = None
        self._running = False

    # ------------------------------------------------------------------ configuration
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
        if self.executor == "celery" and self._pg is not None:
            settings.update(
                {
                    "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
                    "AIRFLOW__CELERY__BROKER_URL": f"redis://127.0.0.1:{self.redis_port}/0",
                    "AIRFLOW__CELERY__RESULT_BACKEND": "db+" + self._pg.url,
                    "AIRFLOW__CELERY__WORKER_CONCURRENCY": "8",
                }
            )
        pythonpath = [str(REPO_ROOT)]
        if os.environ.get("PYTHONPATH"):
            pythonpath.append(os.environ["PYTHONPATH"])
        settings["PYTHONPATH"] = os.pathsep.join(pythonpath)
        settings.update(self.extra_env)
        return settings

    def _full_env(self) -> dict[str, str]:
        env = dict(os.environ)
        # the interpreter's bin dir first, so `airflow` and `python` are this environment's
        path = [str(Path(sys.executable).parent)]
        if env.get("PATH"):
            path.append(env["PATH"])
        env["PATH"] = os.pathsep.join(path)
        env["PYTHONUNBUFFERED"] = "1"
        env.update(self.settings)
        return env

    # ------------------------------------------------------------------ lifecycle
    def start(self, timeout: float = 180) -> LocalAirflow:
        """Migrate the DB, start the four services and wait until /api/v2/monitor/health is all healthy."""
        if self._running:
            return self
        deadline = time.monotonic() + timeout
        self.logs_dir.mkdir(parents=True, exist_ok=True)
        if self.auth_manager == "simple":
            passwords = {name: password for name, (_, password) in self.users.items()}
            self.passwords_file.write_text(json.dumps(passwords) + "\n")
            self.passwords_file.chmod(0o600)
        self.env_file.write_text(
            "".join(f"export {k}={shlex.quote(v)}\n" for k, v in sorted(self.settings.items()))
        )
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

    def _migrate(self, deadline: float) -> None:
        log = self.logs_dir / "db-migrate.log"
        with open(log, "ab") as out:
            res = subprocess.run(
                [airflow_executable(), "db", "migrate"],
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                cwd=self.home,
                timeout=max(deadline - time.monotonic(), 1),
                check=False,
            )
        if res.returncode != 0:
            raise RuntimeError(f"`airflow db migrate` failed ({res.returncode}):\n{_tail(log, 40)}")
        if self._pg is None:
            self._use_wal()

    def _fab_setup(
        self,
        roles: Mapping[str, Iterable[tuple[str, str]]],
        users: Mapping[str, tuple[Sequence[str], str]],
        deadline: float | None = None,
    ) -> None:
        """Create FAB roles and create or update users in one Python process (FAB's security
        manager; works with or without the services running). Output in logs/fab-setup.log."""
        spec = {
            "roles": [
                {"name": name, "permissions": [list(p) for p in perms]} for name, perms in roles.items()
            ],
            "users": [
                {"username": name, "roles": list(user_roles), "password": password}
                for name, (user_roles, password) in users.items()
            ],
        }
        log = self.logs_dir / "fab-setup.log"
        timeout = max(deadline - time.monotonic(), 1) if deadline is not None else 300
        res = self._python(
            _FAB_SETUP_CODE.replace("MARK", repr(_FAB_SETUP_MARK)), timeout, stdin=json.dumps(spec)
        )
        with open(log, "a") as out:
            out.write(res.stdout + res.stderr)
        if res.returncode != 0 or _FAB_SETUP_MARK not in res.stdout:
            raise RuntimeError(f"creating FAB roles/users failed ({res.returncode}):\n{_tail(log, 40)}")

    def _use_wal(self) -> None:
        """Put the SQLite file in write-ahead-log mode (persistent, set once).

        In SQLite's default rollback-journal mode a reader blocks a writer and a waiting writer
        blocks new readers, so four Airflow processes polling one file see "database is locked"
        (a scheduler heartbeat failing for 20 s, a task failing on a state update). In WAL mode
        readers and the one writer no longer block each other.
        """
        with sqlite3.connect(self.home / "airflow.db") as db:
            mode = db.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        if mode != "wal":
            raise RuntimeError(f"SQLite refused write-ahead-log mode (journal_mode={mode})")

    @property
    def service_names(self) -> tuple[str, ...]:
        """The processes this instance runs: Airflow's four, plus Redis and a Celery worker with Celery."""
        return (*SERVICES, *CELERY_SERVICES) if self.executor == "celery" else SERVICES

    def _spawn(self, service: str) -> None:
        args = [airflow_executable(), service]
        if service == "api-server":
            args += ["--port", str(self.port), "--host", "127.0.0.1"]
        elif service == "celery-worker":
            args = [airflow_executable(), "celery", "worker"]
        elif service == "redis":
            binary = shutil.which("redis-server") or "/usr/bin/redis-server"
            args = [binary, "--port", str(self.redis_port), "--bind", "127.0.0.1"]
            args += ["--save", "", "--appendonly", "no"]  # a throwaway broker: nothing on disk
        with open(self.logs_dir / f"{service}.log", "ab") as out:
            self.processes[service] = subprocess.Popen(
                args,
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                cwd=self.home,
                start_new_session=True,
            )

    def restart(self, service: str, *, kill: bool = False, down_for: float = 0.0) -> None:
        """Stop one service (SIGKILL to it and every process in its session when ``kill``, which
        also takes down the LocalExecutor workers and task processes of the scheduler), wait
        ``down_for`` seconds, and start it again. For fault-injection tests."""
        proc = self.processes[service]
        sig = signal.SIGKILL if kill else signal.SIGTERM
        for pid in [*_pids_in_sessions({proc.pid}), proc.pid]:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, sig)
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

    def stop(self, grace: float = 20) -> None:
        """Terminate every service (and anything they started), then stop PostgreSQL."""
        sessions = {proc.pid for proc in self.processes.values()}
        for proc in self.processes.values():
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(proc.pid, signal.SIGTERM)
        end = time.monotonic() + grace
        for proc in self.processes.values():
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=max(end - time.monotonic(), 0.1))
        # whatever is left in the services' sessions (task runners use their own process groups)
        for _ in range(3):
            leftovers = _pids_in_sessions(sessions)
            if not leftovers:
                break
            for pid in leftovers:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.5)
        for proc in self.processes.values():
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)
        self.processes.clear()
        if self._pg is not None:
            self._pg.stop()
        self._token = None
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

    # ------------------------------------------------------------------ users and roles
    def _add_user(self, username: str, roles: Sequence[str], password: str) -> None:
        if isinstance(roles, str):
            raise TypeError("roles must be a sequence of role names, not a string")
        roles = tuple(roles)
        if not username or not roles:
            raise ValueError("a user needs a name and a role")
        if self.auth_manager == "simple":
            if len(roles) != 1 or roles[0].lower() not in SIMPLE_ROLES:
                raise ValueError(
                    f"SimpleAuthManager gives each user exactly one of {SIMPLE_ROLES}, not {list(roles)}"
                )
            if set(username) & set(":,") or username != username.strip():
                raise ValueError(f"SimpleAuthManager user names cannot hold ':' or ',': {username!r}")
            roles = (roles[0].lower(),)
        self.users[username] = (roles, password)

    def create_role(self, name: str, permissions: Iterable[tuple[str, str]]) -> None:
        """FAB only: create a role with these ``(action, resource)`` permissions, or replace the
        permissions of the role of that name, e.g. ``[("can_read", "DAG:x"), ("can_edit", "DAG:x"),
        ("can_create", "DAG Runs")]``.

        Before ``start()``: created at start (missing resources such as ``DAG:x`` are created).
        While running: through FAB's REST API, which refuses an unknown action or resource (HTTP
        400): a ``DAG:<dag_id>`` resource exists once the dag-processor has stored that DAG
        (``wait_for_dags``). Users already logged in see a changed role within FAB's cache TTL
        (``[fab] cache_ttl``, 30 s)."""
        if self.auth_manager != "fab":
            raise NotImplementedError(f"SimpleAuthManager has only its fixed roles {SIMPLE_ROLES}")
        perms = [(str(action), str(resource)) for action, resource in permissions]
        if not self._running:
            self._pending_roles[name] = perms
            return
        body = {
            "name": name,
            "actions": [{"action": {"name": a}, "resource": {"name": r}} for a, r in perms],
        }
        resp = self.api("POST", f"{FAB_API}/roles", json=body)
        if resp.status_code == 409:  # exists: replace its permissions
            resp = self.api(
                "PATCH",
                f"{FAB_API}/roles/{quote(name, safe='')}",
                params={"update_mask": "actions"},
                json=body,
            )
        _raise_for(resp, f"create role {name!r}")

    def create_user(self, username: str, password: str, roles: Sequence[str]) -> None:
        """Create a user (or update the password and roles of an existing one).

        ``"simple"``: before ``start()`` only (SimpleAuthManager reads its users when its processes
        start), with exactly one role of :data:`SIMPLE_ROLES`. ``"fab"``: FAB role names, before
        ``start()`` (created at start) or while running (FAB's REST API)."""
        if self.auth_manager == "simple":
            if self._running:
                raise RuntimeError("SimpleAuthManager reads its users at start: create them before start()")
            self._add_user(username, roles, password)
            self.settings = self._settings()
            self.env = self._full_env()
            return
        if not self._running:
            self._add_user(username, roles, password)
            return
        if isinstance(roles, str):
            raise TypeError("roles must be a sequence of role names, not a string")
        body = {
            "username": username,
            "email": f"{username}@example.org",
            "first_name": username,
            "last_name": "local",
            "roles": [{"name": role} for role in roles],
            "password": password,
        }
        resp = self.api("POST", f"{FAB_API}/users", json=body)
        if resp.status_code == 409:  # exists: new password and roles
            patch = {"roles": body["roles"], "password": password}
            resp = self.api("PATCH", f"{FAB_API}/users/{quote(username, safe='')}", json=patch)
        _raise_for(resp, f"create user {username!r}")
        self.users[username] = (tuple(roles), password)

    # ------------------------------------------------------------------ REST API
    def token_for(self, username: str, password: str) -> str:
        """A JWT of the public REST API for this user (POST /auth/token; both auth managers take a
        JSON body with username and password). Raises HTTPError if the login is refused."""
        resp = self._session.post(
            f"{self.url}/auth/token", json={"username": username, "password": password}, timeout=30
        )
        _raise_for(resp, f"log in as {username!r}")
        return str(resp.json()["access_token"])

    def token(self, refresh: bool = False) -> str:
        """A JWT for the public REST API (POST /auth/token with the admin credentials)."""
        if self._token is None or refresh:
            self._token = self.token_for(self.username, self.password)
        return self._token

    def api(self, method: str, path: str, *, token: str | None = None, **kwargs: Any) -> requests.Response:
        """Call the REST API with a bearer token: ``token`` if given (e.g. from ``token_for``), else
        the admin's (renewed once on HTTP 401); ``path`` like "/api/v2/dags". Does not raise on errors."""
        kwargs.setdefault("timeout", 30)
        if self._running:
            self.check_alive()  # every call also supervises: a dead service is restarted at once
        headers = dict(kwargs.pop("headers", None) or {})
        for attempt in range(1 if token else 2):
            headers["Authorization"] = f"Bearer {token or self.token(refresh=attempt > 0)}"
            resp = self._session.request(method, f"{self.url}{path}", headers=headers, **kwargs)
            if resp.status_code != 401:
                break
        return resp

    def _json(self, method: str, path: str, **kwargs: Any) -> Any:
        resp = self.api(method, path, **kwargs)
        if resp.status_code >= 400:
            raise requests.HTTPError(
                f"{method} {path} -> HTTP {resp.status_code}: {resp.text[:2000]}", response=resp
            )
        return resp.json()

    def import_errors(self) -> list[dict[str, Any]]:
        """DAG import errors plus plugin import errors (as dicts with filename and stack_trace/error)."""
        errors = list(self._json("GET", "/api/v2/importErrors", params={"limit": 100})["import_errors"])
        plugins = self.api("GET", "/api/v2/plugins/importErrors")
        if plugins.status_code == 200:
            errors += plugins.json().get("import_errors", [])
        return errors

    def wait_for_dags(self, dag_ids: Iterable[str], timeout: float = 120) -> None:
        """Wait until each DAG is known to the API server, not stale and without import errors."""
        pending = set(dag_ids)
        deadline = time.monotonic() + timeout
        while pending:
            self.check_alive()
            for dag_id in sorted(pending):
                resp = self.api("GET", f"/api/v2/dags/{dag_id}")
                if resp.status_code == 200:
                    dag = resp.json()
                    if not dag.get("has_import_errors") and not dag.get("is_stale"):
                        pending.discard(dag_id)
            if not pending:
                return
            if time.monotonic() > deadline:
                details = "\n".join(
                    f"--- {e.get('filename') or e.get('source')}\n{e.get('stack_trace') or e.get('error')}"
                    for e in self.import_errors()
                )
                raise TimeoutError(
                    f"DAGs not loaded after {timeout:.0f}s: {sorted(pending)}\n"
                    f"import errors:\n{details or '(none)'}\n"
                    f"dag-processor log:\n{self.log_tail('dag-processor', 20)}"
                )
            time.sleep(2)

    def trigger(self, dag_id: str, conf: dict[str, Any] | None = None, run_id: str | None = None) -> str:
        """Trigger a manual run (logical_date null) and return its run_id. Raises HTTPError on 4xx/5xx."""
        resp = self.post_run(dag_id, conf or {}, run_id)
        if resp.status_code >= 400:
            raise requests.HTTPError(
                f"trigger {dag_id} -> HTTP {resp.status_code}: {resp.text[:2000]}", response=resp
            )
        return str(resp.json()["dag_run_id"])

    def post_run(
        self, dag_id: str, conf: dict[str, Any], run_id: str | None = None, *, token: str | None = None
    ) -> requests.Response:
        """Ask Airflow for a manual run as ``token``'s user (default: the admin); Airflow's answer.

        Retried while SQLite is locked: that surfaces as HTTP 500 "Database error" or 503, and
        Airflow rolled the request back, so nothing was created.
        """
        body: dict[str, Any] = {"logical_date": None, "conf": conf}
        if run_id:
            body["dag_run_id"] = run_id
        for _ in range(5):
            resp = self.api("POST", f"/api/v2/dags/{dag_id}/dagRuns", json=body, token=token)
            if resp.status_code not in (500, 503):
                break
            time.sleep(3)
        return resp

    def dag_runs(self, dag_id: str, first_day: str, last_day: str, **params: Any) -> list[dict[str, Any]]:
        """Every run of ``dag_id`` with a logical date on ``first_day`` .. ``last_day`` (YYYY-MM-DD,
        inclusive, UTC), all pages of 100; ``params`` add REST filters."""
        runs: list[dict[str, Any]] = []
        window = {"logical_date_gte": f"{first_day}T00:00:00Z", "logical_date_lte": f"{last_day}T23:59:59Z"}
        while True:
            page = self._json(
                "GET",
                f"/api/v2/dags/{dag_id}/dagRuns",
                params={**window, **params, "limit": 100, "offset": len(runs)},
            )
            runs += page["dag_runs"]
            if not page["dag_runs"] or len(runs) >= page["total_entries"]:
                return runs

    def run_state(self, dag_id: str, run_id: str) -> str:
        return str(self._json("GET", f"/api/v2/dags/{dag_id}/dagRuns/{run_id}")["state"])

    def task_states(self, dag_id: str, run_id: str) -> dict[str, str | None]:
        """{task_id or task_id[map_index]: state} for one run."""
        data = self._json(
            "GET", f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances", params={"limit": 100}
        )
        states: dict[str, str | None] = {}
        for ti in data["task_instances"]:
            key = ti["task_id"] if ti.get("map_index", -1) < 0 else f"{ti['task_id']}[{ti['map_index']}]"
            states[key] = ti["state"]
        return states

    def wait_for_run(self, dag_id: str, run_id: str, timeout: float = 300) -> str:
        """Wait for a run to reach success or failed and return that state."""
        deadline = time.monotonic() + timeout
        while True:
            state = self.run_state(dag_id, run_id)
            if state in FINAL_RUN_STATES:
                return state
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"run {dag_id}/{run_id} still {state} after {timeout:.0f}s; "
                    f"tasks: {self.task_states(dag_id, run_id)}"
                )
            self.check_alive()
            time.sleep(1)

    def xcom(
        self, dag_id: str, run_id: str, task_id: str, key: str = "return_value", map_index: int = -1
    ) -> Any:
        """The XCom value as JSON data (raises HTTPError 404 if there is none)."""
        data = self._json(
            "GET",
            f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/xcomEntries/{key}",
            params={"map_index": map_index},
        )
        value = data["value"]
        if isinstance(value, str):
            with contextlib.suppress(ValueError):
                return json.loads(value)
        return value

    def xcom_sizes(self, dag_id: str, run_id: str, task_ids: Iterable[str]) -> dict[str, int]:
        """``{task_id.key: bytes of its JSON value}`` for every XCom of these tasks of one run."""
        sizes = {}
        for task_id in task_ids:
            entries = self._json(
                "GET",
                f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/xcomEntries",
                params={"limit": 100},
            )["xcom_entries"]
            for entry in entries:
                value = self.xcom(dag_id, run_id, task_id, key=entry["key"])
                sizes[f"{task_id}.{entry['key']}"] = len(json.dumps(value))
        return sizes

    # ------------------------------------------------------------------ helpers
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

    def _python(
        self, code: str, timeout: float, stdin: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        """Run ``code`` in a Python process with this Airflow's environment."""
        return subprocess.run(
            [sys.executable, "-c", code],
            input=stdin,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd=self.home,
            check=False,
        )

    def airflow_cli(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        """Run ``airflow *args`` against this instance (text output captured, no check)."""
        return subprocess.run(
            [airflow_executable(), *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd=self.home,
            check=False,
        )

    def log_path(self, service: str) -> Path:
        if service == "postgres" and self._pg is not None:
            return self._pg.log_file
        return self.logs_dir / f"{service}.log"

    def log_tail(self, service: str, n: int = 50) -> str:
        """Last ``n`` lines of a service log (api-server, scheduler, dag-processor, triggerer,
        db-migrate, postgres)."""
        return _tail(self.log_path(service), n)

    def services(self) -> list[str]:
        names = ["db-migrate", *(["fab-setup"] if self.auth_manager == "fab" else []), *self.service_names]
        return [*names, "postgres"] if self._pg is not None else names


def _raise_for(resp: requests.Response, what: str) -> None:
    if resp.status_code >= 400:
        raise requests.HTTPError(f"{what} -> HTTP {resp.status_code}: {resp.text[:2000]}", response=resp)


def _pids_in_sessions(sessions: set[int]) -> list[int]:
    """PIDs (other than ours) whose session id is one of ``sessions`` (Linux /proc; else empty)."""
    found: list[int] = []
    proc = Path("/proc")
    if not sessions or not proc.is_dir():
        return found
    me = os.getpid()
    for entry in proc.iterdir():
        if not entry.name.isdigit() or int(entry.name) == me:
            continue
        try:
            if os.getsid(int(entry.name)) in sessions:
                found.append(int(entry.name))
        except (ProcessLookupError, PermissionError):
            continue
    return found


def _raise_keyboard_interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
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
    args = parser.parse_args(argv)

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


if __name__ == "__main__":
    sys.exit(main())
