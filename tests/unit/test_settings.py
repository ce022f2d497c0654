"""Specification of the deployment limits read from the environment."""

from __future__ import annotations

from include.backfill.settings import Limits, api_conn_id, poll_interval


def test_limits_default_when_the_environment_is_silent() -> None:
    assert Limits.from_env({}) == Limits(max_dates_per_request=10_000, max_active_runs=64)


def test_limits_are_read_from_the_environment() -> None:
    env = {"BACKFILL_MAX_DATES_PER_REQUEST": "500", "BACKFILL_MAX_ACTIVE_RUNS": "8"}

    assert Limits.from_env(env) == Limits(max_dates_per_request=500, max_active_runs=8)


def test_poll_interval_and_connection_have_defaults() -> None:
    assert (poll_interval({}), api_conn_id({})) == (5.0, "airflow_api")


def test_poll_interval_and_connection_are_read_from_the_environment() -> None:
    env = {"BACKFILL_POLL_INTERVAL": "0.5", "BACKFILL_API_CONN_ID": "api"}

    assert (poll_interval(env), api_conn_id(env)) == (0.5, "api")
