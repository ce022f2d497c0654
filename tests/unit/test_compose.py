"""docker-compose.yaml is the production topology: checked as data here, validated by
`docker-compose config` in `make compose-config`, and run as local processes by
tests/integration/test_topology.py."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
AIRFLOW_SERVICES = ("airflow-apiserver", "airflow-scheduler", "airflow-dag-processor", "airflow-triggerer")


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((REPO / "docker-compose.yaml").read_text())


def test_it_runs_the_official_topology_with_celery_workers(compose) -> None:
    assert set(compose["services"]) == {
        "postgres",
        "redis",
        *AIRFLOW_SERVICES,
        "airflow-worker",
        "airflow-init",
    }
    assert compose["services"]["airflow-worker"]["command"] == "celery worker"


def test_every_long_running_service_has_a_healthcheck(compose) -> None:
    for name, service in compose["services"].items():
        if name != "airflow-init":
            assert "healthcheck" in service, name


def test_airflow_services_share_the_image_the_api_connection_and_the_include_path(compose) -> None:
    for name in (*AIRFLOW_SERVICES, "airflow-worker", "airflow-init"):
        env = compose["services"][name]["environment"]
        assert env["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor", name
        assert env["AIRFLOW_CONN_AIRFLOW_API"].endswith("@airflow-apiserver:8080"), name
        assert env["PYTHONPATH"] == "/opt/airflow", name
        assert compose["services"][name]["image"] == "backfill-controller:latest", name


def test_the_image_is_the_official_one_plus_the_pinned_requirements() -> None:
    dockerfile = (REPO / "docker" / "Dockerfile").read_text()
    assert "FROM apache/airflow:3.3.2" in dockerfile
    assert "-r /opt/backfill/requirements.txt -c /opt/backfill/constraints.txt" in dockerfile
