"""Deployment settings: limits an operator of the Airflow deployment sets, not the requester.

Read from the environment so they can be set per deployment (docker-compose, Helm values)::

    BACKFILL_MAX_DATES_PER_REQUEST   most dates one request may cover (default 10000)
    BACKFILL_MAX_ACTIVE_RUNS         highest max_active_runs a request may ask for (default 64)
    BACKFILL_POLL_INTERVAL           seconds between progress checks of waiting tasks (default 5)
    BACKFILL_API_CONN_ID             Airflow connection with the REST API's URL and credentials
                                     (default airflow_api)
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class Limits:
    max_dates_per_request: int = 10_000
    max_active_runs: int = 64

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> Limits:
        return cls(
            max_dates_per_request=int(env.get("BACKFILL_MAX_DATES_PER_REQUEST", cls.max_dates_per_request)),
            max_active_runs=int(env.get("BACKFILL_MAX_ACTIVE_RUNS", cls.max_active_runs)),
        )


def poll_interval(env: Mapping[str, str] = os.environ) -> float:
    return float(env.get("BACKFILL_POLL_INTERVAL", "5"))


def api_conn_id(env: Mapping[str, str] = os.environ) -> str:
    return env.get("BACKFILL_API_CONN_ID", "airflow_api")


def segment_size(env: Mapping[str, str] = os.environ) -> int:
    """Dates per controller run (``BACKFILL_SEGMENT_SIZE``, default 1000, at most max_map_length 1024)."""
    return max(1, min(1024, int(env.get("BACKFILL_SEGMENT_SIZE", "1000"))))
