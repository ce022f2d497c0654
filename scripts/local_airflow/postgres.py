"""A throwaway PostgreSQL server for the metadata database: initdb, pg_ctl, createdb.

Its data directory is inside AIRFLOW_HOME (or, as root, in the temp folder when the ``postgres``
user cannot reach AIRFLOW_HOME). As root every server command runs as the ``postgres`` user.
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from scripts.local_airflow.util import tail

# Server options: only on 127.0.0.1 (no Unix socket), durability off: the data is thrown away.
_SERVER_OPTIONS = (
    "-c listen_addresses=127.0.0.1 -c unix_socket_directories='' "
    "-c max_connections=200 -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
)


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


class PostgresServer:
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
        self.data.mkdir(mode=0o700, exist_ok=True)
        if not self.as_root:
            return
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
            self._initdb()
        pg_ctl = [str(self.bin / "pg_ctl"), "-D", str(self.data), "-l", str(self.log_file)]
        options = f"-p {self.port} {_SERVER_OPTIONS}"
        res = self._run(*pg_ctl, "-o", options, "-w", "-t", str(int(timeout)), "start", timeout=timeout + 10)
        if res.returncode != 0:
            raise RuntimeError(f"pg_ctl start failed:\n{res.stdout}\n{res.stderr}\n{tail(self.log_file, 30)}")
        self.started = True
        self._createdb()

    def _initdb(self) -> None:
        res = self._run(
            str(self.bin / "initdb"),
            *("-D", str(self.data), "-A", "trust", "-U", "postgres", "-E", "UTF8", "--no-sync"),
        )
        if res.returncode != 0:
            raise RuntimeError(f"initdb failed:\n{res.stdout}\n{res.stderr}")

    def _createdb(self) -> None:
        createdb = [str(self.bin / "createdb"), "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres"]
        res = subprocess.run(
            [*createdb, "airflow"],
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
