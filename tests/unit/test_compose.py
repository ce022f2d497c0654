"""docker-compose.yaml is the production topology: checked as data here, validated by
`docker-compose config` in `make compose-config`, and run as local processes by
tests/integration/test_topology.py."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
AIRFLOW_SERVICES = ("airflow-apiserver", "airflow-scheduler", "airflow-dag-processor", "airflow-triggerer")
SECRETS = ("AIRFLOW_JWT_SECRET", "AIRFLOW_FERNET_KEY", "AIRFLOW_ADMIN_PASSWORD")
#: ``${NAME}``, ``${NAME:-default}``, ``${NAME-default}``, ``${NAME:?message}``, ``${NAME?message}``...
SUBSTITUTION = re.compile(r"\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?P<op>:?[-?+])?(?P<arg>[^}]*)\}")
SECRET_NAME = re.compile(r"SECRET|PASSWORD|FERNET|TOKEN|_KEY\b")


def strings(node: Any) -> Iterator[str]:
    """Every string of the loaded YAML, keys and values, however deep."""
    if isinstance(node, str):
        yield node
    elif isinstance(node, dict):
        for key, value in node.items():
            yield from strings(key)
            yield from strings(value)
    elif isinstance(node, list):
        for item in node:
            yield from strings(item)


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


def test_airflow_services_share_the_image_and_the_api_connection_without_pythonpath(compose) -> None:
    for name in (*AIRFLOW_SERVICES, "airflow-worker", "airflow-init"):
        env = compose["services"][name]["environment"]
        assert env["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor", name
        assert env["AIRFLOW_CONN_AIRFLOW_API"].endswith("@airflow-apiserver:8080"), name
        assert "PYTHONPATH" not in env, name  # the package comes from the image's site-packages
        assert compose["services"][name]["image"] == "backfill-controller:latest", name


def test_no_source_folder_is_mounted_over_the_image(compose) -> None:
    for name in (*AIRFLOW_SERVICES, "airflow-worker", "airflow-init"):
        for volume in compose["services"][name].get("volumes", []):
            assert not volume.startswith((".", "/")), (name, volume)


def test_the_header_says_to_build_the_wheel_first() -> None:
    header = (REPO / "docker-compose.yaml").read_text().split("\n\n", 1)[0]
    assert "make dist && docker compose build" in header


# --- the image: the official one, the wheel, the DAGs -------------------------------------------


def dockerfile() -> list[tuple[str, str]]:
    """The Dockerfile's instructions as (INSTRUCTION, arguments), comments dropped."""
    lines = (REPO / "docker" / "Dockerfile").read_text().splitlines()
    return [
        (line.split(maxsplit=1)[0], line.split(maxsplit=1)[1])
        for line in lines
        if line.strip() and not line.startswith("#")
    ]


def copies() -> dict[str, str]:
    """``{source: destination}`` of every COPY (options such as --chown dropped)."""
    found = {}
    for instruction, args in dockerfile():
        if instruction == "COPY":
            source, destination = [a for a in args.split() if not a.startswith("--")]
            found[source] = destination
    return found


def test_the_image_is_the_official_one_at_the_pinned_version() -> None:
    pins = dict(
        line.split("==") for line in (REPO / "requirements.txt").read_text().splitlines() if "==" in line
    )
    (base,) = [args for instruction, args in dockerfile() if instruction == "FROM"]
    assert base.startswith(f"apache/airflow:{pins['apache-airflow']}"), base


def test_the_image_installs_the_wheel_and_holds_the_dags_and_nothing_else() -> None:
    assert copies() == {
        "dist/airflow_backfill_controller-*.whl": "/tmp/",
        "dags/": "/opt/airflow/dags/",
        "include/catchup.yaml": "/opt/airflow/include/catchup.yaml",
    }
    (install,) = [args for instruction, args in dockerfile() if instruction == "RUN"]
    assert install.startswith("pip install --no-cache-dir")
    assert '"apache-airflow==${AIRFLOW_VERSION}"' in install  # pip may not move the image's Airflow
    assert install.endswith("/tmp/airflow_backfill_controller-*.whl")
    assert not [args for instruction, args in dockerfile() if instruction == "ENV"]  # no PYTHONPATH


def test_the_catch_up_file_is_where_the_default_setting_looks(compose) -> None:
    from backfill_controller.domain.settings import DEFAULT_CATCHUP_CONFIG

    env = compose["services"]["airflow-scheduler"]["environment"]
    beside_dags = Path(env["AIRFLOW__CORE__DAGS_FOLDER"]).parent / DEFAULT_CATCHUP_CONFIG
    assert copies()["include/catchup.yaml"] == str(beside_dags)
    # Unset unless .env or the environment sets it: then the default applies.
    value = env.get("AIRFLOW__BACKFILL_CONTROLLER__CATCHUP_CONFIG", "")
    assert value in ("", "${AIRFLOW__BACKFILL_CONTROLLER__CATCHUP_CONFIG:-}"), value


def test_the_build_context_lets_through_what_the_image_copies() -> None:
    kept = [line[1:] for line in (REPO / ".dockerignore").read_text().splitlines() if line.startswith("!")]
    assert sorted(copies()) == sorted(kept)


# --- no default secrets: compose refuses to start without them ----------------------------------


@pytest.mark.parametrize(
    ("secret", "setting"),
    [
        ("AIRFLOW_JWT_SECRET", "AIRFLOW__API_AUTH__JWT_SECRET"),
        ("AIRFLOW_FERNET_KEY", "AIRFLOW__CORE__FERNET_KEY"),
        ("AIRFLOW_ADMIN_PASSWORD", "AIRFLOW_CONN_AIRFLOW_API"),
    ],
    ids=["jwt secret", "fernet key", "admin password in the api connection"],
)
def test_every_airflow_service_gets_the_secret_only_from_a_required_variable(
    compose, secret, setting
) -> None:
    for name in (*AIRFLOW_SERVICES, "airflow-worker", "airflow-init"):
        value = compose["services"][name]["environment"][setting]
        uses = [m for m in SUBSTITUTION.finditer(value) if m["name"] == secret]
        assert len(uses) == 1, (name, value)
        (use,) = uses
        assert use["op"] == ":?" and use["arg"].startswith(f"set {secret} to "), (name, value)
        if setting != "AIRFLOW_CONN_AIRFLOW_API":
            assert use.group(0) == value, (name, value)  # the whole value: nothing literal around it


def test_airflow_init_writes_the_admin_password_from_the_required_variable(compose) -> None:
    script = " ".join(compose["services"]["airflow-init"]["command"])
    assert "passwords.json" in script
    (use,) = [m for m in SUBSTITUTION.finditer(script) if m["name"] == "AIRFLOW_ADMIN_PASSWORD"]
    assert use["op"] == ":?"


@pytest.mark.parametrize("secret", SECRETS, ids=[s.lower() for s in SECRETS])
def test_every_use_of_a_secret_is_required_and_says_how_to_set_it(compose, secret) -> None:
    uses = [m for text in strings(compose) for m in SUBSTITUTION.finditer(text) if m["name"] == secret]
    assert uses, f"{secret} is not used"
    for use in uses:
        assert use["op"] == ":?", use.group(0)  # required, and empty counts as unset
        assert use["arg"].startswith(f"set {secret} to "), use.group(0)


def test_no_default_password_or_secret_remains() -> None:
    text = (REPO / "docker-compose.yaml").read_text()
    for use in SUBSTITUTION.finditer(text):
        if SECRET_NAME.search(use["name"]):
            assert use["op"] == ":?", f"{use.group(0)} has a default or may be empty"
    assert "change-me" not in text
    assert "(admin / admin)" not in text
    compose = yaml.safe_load(text)
    for name, service in compose["services"].items():
        env = service.get("environment", {})
        for key, value in env.items():
            if key == "POSTGRES_PASSWORD":
                continue  # the internal database's, unpublished (left as in the official file)
            if SECRET_NAME.search(key) and not key.endswith("_FILE"):
                assert isinstance(value, str) and SUBSTITUTION.fullmatch(value), (name, key, value)


def test_the_header_says_which_secrets_to_set() -> None:
    header = (REPO / "docker-compose.yaml").read_text().split("\n\n", 1)[0]
    assert ".env" in header
    for secret in SECRETS:
        assert f"#   {secret}=" in header, secret


def test_deployment_settings_are_passed_as_airflow_options_under_their_own_names(compose) -> None:
    from backfill_controller.domain.settings import SETTINGS

    options = {s.env_var for s in SETTINGS}
    for name in (*AIRFLOW_SERVICES, "airflow-worker", "airflow-init"):
        env = compose["services"][name]["environment"]
        assert not [k for k in env if k.startswith("BACKFILL_")], name  # the deprecated names
        passed = [k for k in env if k.startswith("AIRFLOW__BACKFILL_CONTROLLER__")]
        assert passed and set(passed) <= options, name
        for key in passed:
            uses = list(SUBSTITUTION.finditer(env[key]))
            assert all(use["name"] == key and use["op"] == ":-" for use in uses), (key, env[key])
