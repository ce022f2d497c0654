"""CeleryExecutor: a Redis broker (Debian's redis-server) and one Celery worker.

(Not named ``celery.py``/``redis.py``: run with this folder on ``sys.path``, such modules would hide
the real ``celery`` and ``redis`` packages.)
"""

from __future__ import annotations

import shutil

from scripts.local_airflow.util import airflow_executable

#: With ``executor="celery"``: a Redis broker (Debian's redis-server) and one Celery worker more.
CELERY_SERVICES = ("redis", "celery-worker")


def celery_settings(redis_port: int, result_backend_url: str) -> dict[str, str]:
    """Airflow settings for CeleryExecutor: the Redis broker and the metadata database as result backend."""
    return {
        "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
        "AIRFLOW__CELERY__BROKER_URL": f"redis://127.0.0.1:{redis_port}/0",
        "AIRFLOW__CELERY__RESULT_BACKEND": "db+" + result_backend_url,
        "AIRFLOW__CELERY__WORKER_CONCURRENCY": "8",
    }


def redis_command(port: int) -> list[str]:
    """redis-server on 127.0.0.1:``port``: a throwaway broker, nothing on disk."""
    binary = shutil.which("redis-server") or "/usr/bin/redis-server"
    return [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]


def celery_worker_command(airflow: str | None = None) -> list[str]:
    """``airflow celery worker``, with the ``airflow`` script given (default: the interpreter's)."""
    return [airflow or airflow_executable(), "celery", "worker"]
