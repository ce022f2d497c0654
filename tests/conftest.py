"""Shared pytest setup.

* ``--backend sqlite|postgres`` chooses the metadata database of the integration Airflow.
* ``--auth-manager simple|fab`` chooses its auth manager (default: ``fab`` on PostgreSQL, ``simple``
  on SQLite); the ``auth_manager_name`` fixture tells tests which one runs.
* Tests under ``tests/integration`` are marked ``integration`` automatically.
* ``--stock-venv PATH``: the virtualenv ``tests/stock`` deploys (``make test-stock``); without it
  they are skipped.
* ``airflow`` (session scope, lazy): a real local Airflow (``scripts.local_airflow.LocalAirflow``)
  whose DAGs folder holds symlinks to every ``dags/*.py`` and ``tests/dags/*.py``, with the repo's
  ``plugins/``. It is started only when a test asks for it, so ``pytest tests/unit`` never starts it.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from backfill_controller.contract import CONTROLLER_DAG_ID
from tests.support.figures import Figures

if TYPE_CHECKING:
    from scripts.local_airflow import LocalAirflow

REPO_ROOT = Path(__file__).resolve().parents[1]
DAG_SOURCES = (REPO_ROOT / "dags", REPO_ROOT / "tests" / "dags")
START_TIMEOUT = 240  # seconds: db migrate + four services (PostgreSQL migrate is the slow part)
DAGS_TIMEOUT = 180  # seconds: until every DAG is listed by the API

_LOG_REPORT = pytest.StashKey[str]()
_FIGURES = pytest.StashKey["Figures"]()
#: The REST password of the test Airflow: distinctive, so tests can prove it is never logged.
SECRET = "Bf-s3cret-7Q2xZ"
#: SimpleAuthManager's users besides the admin, one per fixed role (FAB's users are made by the tests
#: that need them: tests/integration/test_authorization.py).
SIMPLE_USERS = {"vera": ("viewer", SECRET), "uma": ("user", SECRET), "otto": ("op", SECRET)}


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("local airflow")
    group.addoption(
        "--backend",
        choices=("sqlite", "postgres"),
        default="sqlite",
        help="metadata database of the Airflow started for integration tests (default: sqlite)",
    )
    group.addoption(
        "--auth-manager",
        choices=("simple", "fab"),
        default=None,
        help="auth manager of the integration Airflow: simple (SimpleAuthManager) or fab (FabAuthManager, "
        "users and roles with per-DAG permissions); default: fab with --backend=postgres, simple with sqlite",
    )
    group.addoption(
        "--stock-venv",
        type=Path,
        default=None,
        help="a virtualenv with a stock Airflow and the built wheel, for tests/stock (make test-stock)",
    )
    group.addoption(
        "--keep-airflow-home",
        action="store_true",
        help="keep the temporary AIRFLOW_HOME (DB, logs) after the session even when all tests passed",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.stash[_FIGURES] = Figures()
    config.addinivalue_line(
        "markers",
        "backend(*names): run only against these metadata databases. Each module runs on one: the "
        "embedded default (SQLite) or PostgreSQL, which also runs the fault, concurrency and Celery "
        "tests; every module drives the whole controller, so both backends run it end to end.",
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    integration_dir = REPO_ROOT / "tests" / "integration"
    backend = config.getoption("--backend")
    for item in items:
        if integration_dir in Path(item.path).parents:
            item.add_marker(pytest.mark.integration)
        marker = item.get_closest_marker("backend")
        if marker and backend not in marker.args:
            item.add_marker(pytest.mark.skip(reason=f"runs on the {', '.join(marker.args)} backend only"))


def auth_manager_option(config: pytest.Config) -> str:
    """``--auth-manager``, else the backend's default: ``fab`` on PostgreSQL, ``simple`` on SQLite."""
    chosen = config.getoption("--auth-manager")
    if chosen:
        return str(chosen)
    return "fab" if config.getoption("--backend") == "postgres" else "simple"


@pytest.fixture(scope="session")
def auth_manager_name(request: pytest.FixtureRequest) -> str:
    """The auth manager of the integration Airflow: "simple" or "fab"."""
    return auth_manager_option(request.config)


def build_dags_folder(target: Path) -> list[Path]:
    """Symlink every ``*.py`` of dags/ and tests/dags/ into ``target``; return the links."""
    target.mkdir(parents=True, exist_ok=True)
    links = []
    for source_dir in DAG_SOURCES:
        for source in sorted(source_dir.glob("*.py")):
            if source.name == "__init__.py":
                continue
            link = target / source.name
            if link.exists() or link.is_symlink():  # same file name in both folders
                link = target / f"{source_dir.parent.name}_{source.name}"
            link.symlink_to(source)
            links.append(link)
    return links


def _log_report(instance: LocalAirflow, lines: int = 40) -> str:
    parts = [
        f"AIRFLOW_HOME: {instance.home} (backend {instance.backend}, "
        f"{instance.auth_manager} auth manager, {instance.url})"
    ]
    for service in instance.services():
        parts.append(f"----- {service} (last {lines} lines of {instance.log_path(service)})")
        parts.append(instance.log_tail(service, lines))
    return "\n".join(parts)


NOTIFICATIONS = "notifications.jsonl"


def notifiers(path: Path) -> dict[str, Any]:
    """The test deployment's notifiers: both append to one file what they were told."""
    recorder = "tests.support.notifiers.RecordingNotifier"
    return {
        "everything": {"class": recorder, "kwargs": {"path": str(path)}},
        "failures": {
            "class": recorder,
            "kwargs": {"path": str(path), "subject": "FAILED {{ backfill.dag_id }}: {{ backfill.event }}"},
            "on": ["failure", "budget_exhausted"],
        },
    }


@pytest.fixture(scope="session")
def airflow(request: pytest.FixtureRequest) -> Iterator[LocalAirflow]:
    """A running local Airflow with the repo's DAGs, the test target DAGs and plugins."""
    from scripts.local_airflow import LocalAirflow

    config = request.config
    backend = config.getoption("--backend")
    home = Path(tempfile.mkdtemp(prefix=f"backfill-airflow-{backend}-"))
    dags_folder = home / "dags"
    build_dags_folder(dags_folder)
    instance = LocalAirflow(
        home=home,
        backend=backend,
        dags_folder=dags_folder,
        plugins_folder=REPO_ROOT / "plugins",
        password=SECRET,
        auth_manager=auth_manager_option(config),
        users=SIMPLE_USERS if auth_manager_option(config) == "simple" else None,
        # A killed worker's task instances are found after 30 s instead of 5 minutes (fault tests).
        extra_env={
            "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT": "30",
            "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT_DETECTION_INTERVAL": "5",
            # A restarted scheduler adopts the queued task instances of the one killed after 10 s
            # instead of 5 minutes (once the dead scheduler's job misses its 30 s health threshold).
            "AIRFLOW__SCHEDULER__ORPHANED_TASKS_CHECK_INTERVAL": "10",
            # Waiting tasks look at their target runs every second (deployment default: 5 s).
            "AIRFLOW__BACKFILL_CONTROLLER__POLL_INTERVAL": "1",
            "AIRFLOW__BACKFILL_CONTROLLER__CATCHUP_CONFIG": str(
                REPO_ROOT / "tests" / "support" / "catchup.yaml"
            ),
            "AIRFLOW__BACKFILL_CONTROLLER__NOTIFIERS": json.dumps(notifiers(home / NOTIFICATIONS)),
            "AIRFLOW__BACKFILL_CONTROLLER__NOTIFY": "everything",
        },
    )
    try:
        instance.start(timeout=START_TIMEOUT)
        parsed = instance.parse_dag_folder()
        if parsed["import_errors"]:
            errors = "\n".join(f"--- {f}\n{tb}" for f, tb in parsed["import_errors"].items())
            raise RuntimeError(f"DAG files fail to import:\n{errors}")
        expected = {CONTROLLER_DAG_ID, *parsed["dag_ids"]}
        instance.wait_for_dags(sorted(expected), timeout=DAGS_TIMEOUT)
    except BaseException:
        config.stash[_LOG_REPORT] = _log_report(instance)
        instance.stop(grace=5)
        raise

    yield instance

    failed = request.session.testsfailed > 0
    if failed:
        config.stash[_LOG_REPORT] = _log_report(instance)
    instance.stop(grace=5)
    if not failed and not config.getoption("--keep-airflow-home"):
        shutil.rmtree(home, ignore_errors=True)


@pytest.fixture(scope="session")
def figures(request: pytest.FixtureRequest) -> Figures:
    """Where tests record faults survived, bad inputs refused and runs lost or duplicated."""
    return request.config.stash[_FIGURES]


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter, config: pytest.Config) -> None:
    figures = config.stash.get(_FIGURES, None)
    if figures:
        backend = config.getoption("--backend")
        table = figures.markdown(backend)
        out = REPO_ROOT / ".figures" / f"{backend}.md"
        out.parent.mkdir(exist_ok=True)
        out.write_text(table)
        terminalreporter.write_sep("=", f"reliability figures ({out.relative_to(REPO_ROOT)})")
        terminalreporter.write_line(table)
    report = config.stash.get(_LOG_REPORT, None)
    if report:
        terminalreporter.write_sep("=", "local Airflow service logs")
        terminalreporter.write_line(report)
