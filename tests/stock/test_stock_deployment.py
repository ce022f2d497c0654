"""A stock deployment: the built wheel on an Airflow that knows nothing of this repository.

``make test-stock`` builds the wheel (``make dist``), installs it, not editable, into its own
virtualenv holding only ``apache-airflow`` and ``apache-airflow-providers-standard`` at the pins of
requirements.txt, and runs this module with ``--stock-venv`` naming that virtualenv;
``make test-stock-next`` does the same on the next Airflow. The deployment is what a user's is:

* a DAGs folder holding one DAG of its own and a copy of ``dags/backfills.py`` (the two-line file),
* an empty plugins folder (the plugin comes from the package's entry point),
* no PYTHONPATH: the package can come only from the virtualenv's site-packages,
* SQLite, LocalExecutor, SimpleAuthManager, the ``airflow_api`` connection.

One Airflow start; two backfills of its own DAG run side by side, one through the front door, one
through the package's ``backfill`` console script, while the other checks look.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import textwrap
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import _LOG_REPORT, REPO_ROOT, SECRET, START_TIMEOUT, _log_report

from backfill_controller.contract import CATCHUP_DAG_ID, CONTROLLER_DAG_ID, URL_PREFIX
from scripts.local_airflow import LocalAirflow

pytestmark = pytest.mark.stock

DISTRIBUTION = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
TARGET = "stock_daily"
FRONT_DOOR = f"{URL_PREFIX}/api/backfills"
FRONT_DOOR_DATES = ("2024-03-01", "2024-03-02", "2024-03-03")
CLI_DATES = ("2024-03-10", "2024-03-11")
TIMEOUT = 300  # seconds, for each backfill

#: The deployment's own DAG: daily, one task that runs in a worker.
TARGET_DAG = textwrap.dedent(
    f'''
    """A deployment's own daily DAG, the backfills' target."""

    import pendulum
    from airflow.sdk import dag, task


    @dag(schedule="@daily", start_date=pendulum.datetime(2024, 1, 1, tz="UTC"), catchup=False)
    def {TARGET}():
        @task
        def work(ds=None):
            return ds

        work()


    {TARGET}()
    '''
)


@dataclass
class Started:
    """The two backfills, started one after the other and left running."""

    front_door_run_id: str
    front_door_answer: dict
    cli: subprocess.Popen[str]


@pytest.fixture(scope="module")
def stock_venv(request: pytest.FixtureRequest) -> Path:
    venv = request.config.getoption("--stock-venv")
    if venv is None:
        pytest.skip("needs --stock-venv: run `make test-stock`")
    return Path(venv).absolute()


@pytest.fixture(scope="module")
def deployment(request: pytest.FixtureRequest, stock_venv: Path) -> Iterator[LocalAirflow]:
    home = Path(tempfile.mkdtemp(prefix="backfill-airflow-stock-"))
    dags, plugins = home / "dags", home / "plugins"
    dags.mkdir()
    plugins.mkdir()
    (dags / f"{TARGET}.py").write_text(TARGET_DAG)
    shutil.copy(REPO_ROOT / "dags" / "backfills.py", dags / "backfills.py")
    instance = LocalAirflow(
        home=home,
        backend="sqlite",
        dags_folder=dags,
        plugins_folder=plugins,
        password=SECRET,
        venv=stock_venv,
        repo_on_path=False,
        # Only to finish sooner: the controller's sensor looks every second (default 5 s).
        extra_env={"AIRFLOW__BACKFILL_CONTROLLER__POLL_INTERVAL": "1"},
    )
    try:
        instance.start(timeout=START_TIMEOUT)
        instance.wait_for_dags([CONTROLLER_DAG_ID, CATCHUP_DAG_ID, TARGET], timeout=180)
    except BaseException:
        request.config.stash[_LOG_REPORT] = _log_report(instance)
        instance.stop(grace=5)
        raise

    yield instance

    failed = request.session.testsfailed > 0
    if failed:
        request.config.stash[_LOG_REPORT] = _log_report(instance)
    instance.stop(grace=5)
    if not failed and not request.config.getoption("--keep-airflow-home"):
        shutil.rmtree(home, ignore_errors=True)


def user_env() -> dict[str, str]:
    """A user's shell: none of the test's Airflow settings, connections or PYTHONPATH."""
    return {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "BACKFILL_", "PYTHONPATH"))}


@pytest.fixture(scope="module")
def started(deployment: LocalAirflow, stock_venv: Path) -> Iterator[Started]:
    """A backfill through the front door, then (once it has its run) one through ``backfill``."""
    conf = {
        "dag_id": TARGET,
        "start_date": FRONT_DOOR_DATES[0],
        "end_date": FRONT_DOOR_DATES[-1],
        "reason": "stock deployment",
    }
    answer = deployment.api("POST", FRONT_DOOR, json=conf)
    assert answer.status_code == 201, answer.text
    flags = ["--api-url", deployment.url, "--username", deployment.username, "--password", SECRET]
    cli = subprocess.Popen(
        [str(stock_venv / "bin" / "backfill"), TARGET, "-s", CLI_DATES[0], "-e", CLI_DATES[-1]]
        + ["--reason", "stock deployment", "--poll-interval", "2", *flags],
        cwd=deployment.home,
        env=user_env(),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    yield Started(answer.json()["dag_run_id"], answer.json(), cli)
    if cli.poll() is None:
        cli.kill()
        cli.communicate()


def target_runs(deployment: LocalAirflow, dates: tuple[str, ...]) -> dict[str, str]:
    """``{logical date: state}`` of the target's runs on ``dates``."""
    runs = deployment.dag_runs(TARGET, dates[0], dates[-1])
    return {run["logical_date"][:10]: run["state"] for run in runs}


def test_the_front_door_accepts_the_backfill(started: Started) -> None:
    assert started.front_door_answer["target_dag_id"] == TARGET
    assert started.front_door_answer["dates"] == len(FRONT_DOOR_DATES)


def test_the_package_comes_from_the_wheel_in_site_packages(deployment: LocalAirflow) -> None:
    assert "PYTHONPATH" not in deployment.env
    code = (
        "import sysconfig, backfill_controller as p; print(p.__file__); print(sysconfig.get_path('purelib'))"
    )
    res = subprocess.run(
        [deployment.python_bin, "-c", code],
        env=deployment.env,
        cwd=deployment.home,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert res.returncode == 0, res.stderr
    module_file, site_packages = res.stdout.splitlines()[-2:]
    assert Path(module_file).is_relative_to(site_packages), (module_file, site_packages)
    assert not Path(module_file).is_relative_to(REPO_ROOT / "include"), module_file


def test_airflow_lists_the_package_as_a_provider(deployment: LocalAirflow, started: Started) -> None:
    res = deployment.airflow_cli("providers", "list", timeout=120)
    assert res.returncode == 0, res.stderr[-3000:]
    (line,) = [line for line in res.stdout.splitlines() if DISTRIBUTION["name"] in line]
    assert DISTRIBUTION["version"] in line, line


def test_the_plugin_is_loaded_from_the_entry_point(deployment: LocalAirflow, started: Started) -> None:
    plugins = deployment.api("GET", "/api/v2/plugins").json()["plugins"]
    (plugin,) = [p for p in plugins if p["name"] == "backfill_controller"]
    assert plugin["source"].startswith(f"{DISTRIBUTION['name']}=={DISTRIBUTION['version']}"), plugin["source"]
    assert not list(Path(deployment.plugins_folder).iterdir())


def test_the_front_door_backfill_succeeds_with_a_run_per_date(
    deployment: LocalAirflow, started: Started
) -> None:
    state = deployment.wait_for_run(CONTROLLER_DAG_ID, started.front_door_run_id, timeout=TIMEOUT)
    assert state == "success", deployment.task_states(CONTROLLER_DAG_ID, started.front_door_run_id)
    assert target_runs(deployment, FRONT_DOOR_DATES) == dict.fromkeys(FRONT_DOOR_DATES, "success")


def test_the_backfill_command_of_the_package_backfills_two_dates(
    deployment: LocalAirflow, started: Started
) -> None:
    try:
        out, err = started.cli.communicate(timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        started.cli.kill()
        out, err = started.cli.communicate()
        pytest.fail(f"backfill did not finish in {TIMEOUT}s:\n{out}\n{err}")
    assert started.cli.returncode == 0, out + err
    assert f"SUCCESS: {len(CLI_DATES)} dates of {TARGET}" in out, out + err
    assert SECRET not in out + err
    assert target_runs(deployment, CLI_DATES) == dict.fromkeys(CLI_DATES, "success")


def test_the_backfills_page_answers_with_its_html(deployment: LocalAirflow) -> None:
    page = deployment.api("GET", f"{URL_PREFIX}/ui")
    assert page.status_code == 200, page.text[:2000]
    assert page.headers["content-type"].startswith("text/html")
    assert "<title>Backfills</title>" in page.text


def test_the_list_shows_both_backfills(deployment: LocalAirflow, started: Started) -> None:
    listed = deployment.api("GET", FRONT_DOOR, params={"dag_id": TARGET})
    assert listed.status_code == 200, listed.text[:2000]
    backfills = listed.json()["backfills"]
    assert len(backfills) == 2, backfills
    assert started.front_door_run_id in {b["run_id"] for b in backfills}
    assert {b["phase"] for b in backfills} == {"succeeded"}
