"""Deployment settings: limits an operator of the Airflow deployment sets, not the requester.

Read from the environment so they can be set per deployment (docker-compose, Helm values)::

    BACKFILL_MAX_DATES_PER_REQUEST   most dates one request may cover (default 10000)
    BACKFILL_MAX_ACTIVE_RUNS         highest max_active_runs a request may ask for (default 64)
    BACKFILL_POLL_INTERVAL           seconds between progress checks of waiting tasks (default 5)
    BACKFILL_API_CONN_ID             Airflow connection with the REST API's URL and credentials
                                     (default airflow_api)
    BACKFILL_ALLOWED_DAGS            comma-separated dag_id patterns (fnmatch) that may be backfilled
                                     (default: every DAG)
    BACKFILL_DENIED_DAGS             comma-separated dag_id patterns that may never be backfilled;
                                     a denial wins over an allowance
    BACKFILL_SEGMENT_SIZE            dates per controller run (default 1000, at most 1024)
    BACKFILL_TIMEOUT_MINUTES         longest a controller run waits for target runs (default 1440)
    BACKFILL_NOTIFIERS               named Airflow notifiers a request may pick (JSON; see notify.py)
    BACKFILL_NOTIFY                  comma-separated names notified when a request says nothing
    BACKFILL_CATCHUP_CONFIG          the scheduled catch-up's YAML file (default include/catchup.yaml)
    BACKFILL_CATCHUP_SCHEDULE        backfill_catchup's schedule (default @hourly), read at parse time
"""

from __future__ import annotations

import fnmatch
import os
from collections.abc import Mapping
from dataclasses import dataclass

from include.backfill.notify import notifier_names


@dataclass(frozen=True)
class Limits:
    max_dates_per_request: int = 10_000
    max_active_runs: int = 64
    allowed_dags: tuple[str, ...] = ()
    """fnmatch patterns of the dag_ids that may be backfilled; empty means every DAG."""
    denied_dags: tuple[str, ...] = ()
    """fnmatch patterns of the dag_ids that may never be backfilled."""
    notifiers: tuple[str, ...] = ()
    """Names of the deployment's notifiers (BACKFILL_NOTIFIERS) a request may pick."""

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> Limits:
        return cls(
            max_dates_per_request=int(env.get("BACKFILL_MAX_DATES_PER_REQUEST", cls.max_dates_per_request)),
            max_active_runs=int(env.get("BACKFILL_MAX_ACTIVE_RUNS", cls.max_active_runs)),
            allowed_dags=_patterns(env.get("BACKFILL_ALLOWED_DAGS", "")),
            denied_dags=_patterns(env.get("BACKFILL_DENIED_DAGS", "")),
            notifiers=notifier_names(env),
        )

    def refusal(self, dag_id: str) -> str | None:
        """Why the deployment forbids backfilling ``dag_id``, or None if it may be backfilled.

        >>> Limits(allowed_dags=("sales_*",), denied_dags=("*_pii",)).refusal("sales_pii")
        'denied by BACKFILL_DENIED_DAGS (pattern *_pii)'
        >>> Limits(allowed_dags=("sales_*",)).refusal("hr_payroll")
        'not in BACKFILL_ALLOWED_DAGS (sales_*)'
        """
        for pattern in self.denied_dags:
            if fnmatch.fnmatchcase(dag_id, pattern):
                return f"denied by BACKFILL_DENIED_DAGS (pattern {pattern})"
        if self.allowed_dags and not any(fnmatch.fnmatchcase(dag_id, p) for p in self.allowed_dags):
            return f"not in BACKFILL_ALLOWED_DAGS ({', '.join(self.allowed_dags)})"
        return None


def _patterns(text: str) -> tuple[str, ...]:
    return tuple(p.strip() for p in text.split(",") if p.strip())


def poll_interval(env: Mapping[str, str] = os.environ) -> float:
    return float(env.get("BACKFILL_POLL_INTERVAL", "5"))


def api_conn_id(env: Mapping[str, str] = os.environ) -> str:
    return env.get("BACKFILL_API_CONN_ID", "airflow_api")


def segment_size(env: Mapping[str, str] = os.environ) -> int:
    """Dates per controller run (``BACKFILL_SEGMENT_SIZE``, default 1000, at most max_map_length 1024)."""
    return max(1, min(1024, int(env.get("BACKFILL_SEGMENT_SIZE", "1000"))))


def timeout_minutes(env: Mapping[str, str] = os.environ) -> int:
    return int(env.get("BACKFILL_TIMEOUT_MINUTES", "1440"))
