"""Specification of the deployment settings: options of Airflow's ``[backfill_controller]`` section.

Every table-wide rule is checked for every row of :data:`backfill_controller.domain.settings.SETTINGS`: the
Airflow option is read (here through its ``AIRFLOW__BACKFILL_CONTROLLER__<NAME>`` variable, which
Airflow's configuration reads at lookup time), the old ``BACKFILL_<NAME>`` still works with a
DeprecationWarning, the option wins over the old name, and the defaults are what they were.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from backfill_controller.domain import settings
from backfill_controller.domain.settings import SETTINGS, Limits, Setting, poll_interval, segment_size

REPO_ROOT = Path(__file__).resolve().parents[2]

#: Per setting: two texts an operator may set and the values they are read as.
SAMPLES: dict[str, tuple[tuple[str, Any], tuple[str, Any]]] = {
    "max_dates_per_request": (("500", 500), ("20", 20)),
    "max_active_runs": (("8", 8), ("3", 3)),
    "poll_interval": (("0.5", 0.5), ("2", 2.0)),
    "api_conn_id": (("api", "api"), ("other_api", "other_api")),
    "allowed_dags": (("sales_*, hr_*", ("sales_*", "hr_*")), ("ops_*", ("ops_*",))),
    "denied_dags": (("*_pii", ("*_pii",)), (" a ,b", ("a", "b"))),
    "segment_size": (("200", 200), ("10", 10)),
    "timeout_minutes": (("90", 90), ("5", 5)),
    "notifiers": (('{"a": {"class": "x.Y"}}', '{"a": {"class": "x.Y"}}'), ("{}", "{}")),
    "notify": (("data-team, audit", ("data-team", "audit")), ("ops", ("ops",))),
    "catchup_config": (("/etc/catchup.yaml", Path("/etc/catchup.yaml")), ("c.yaml", Path("c.yaml"))),
    "catchup_schedule": (("@daily", "@daily"), ("0 * * * *", "0 * * * *")),
    "plans_at_once": (("4", 4), ("1", 1)),
    "plan_wait_seconds": (("30", 30.0), ("2.5", 2.5)),
}

#: The defaults before the settings became Airflow options: unchanged.
DEFAULTS: dict[str, Any] = {
    "max_dates_per_request": 10_000,
    "max_active_runs": 64,
    "poll_interval": 5.0,
    "api_conn_id": "airflow_api",
    "allowed_dags": (),
    "denied_dags": (),
    "segment_size": 1000,
    "timeout_minutes": 1440,
    "notifiers": "",
    "notify": (),
    "catchup_config": Path("include/catchup.yaml"),
    "catchup_schedule": "@hourly",
    "plans_at_once": 2,
    "plan_wait_seconds": 60.0,
}

each_setting = pytest.mark.parametrize("setting", SETTINGS, ids=[s.name for s in SETTINGS])


@contextmanager
def no_deprecation() -> Iterator[None]:
    """The block reads no old variable: it warns of none."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        yield
    assert not [w for w in caught if str(w.message).startswith("BACKFILL_")]


def deprecations(caught: Any, setting: Setting[Any]) -> list[str]:
    return [str(w.message) for w in caught if str(w.message).startswith(setting.old_env_var + " ")]


@pytest.fixture(autouse=True)
def silent_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Neither spelling of any setting is set, and no deprecation has been warned of yet."""
    for setting in SETTINGS:
        monkeypatch.delenv(setting.env_var, raising=False)
        monkeypatch.delenv(setting.old_env_var, raising=False)
    monkeypatch.setattr(settings, "_warned", set())


def test_the_table_is_complete_and_each_setting_is_listed_once() -> None:
    defined = [v for v in vars(settings).values() if isinstance(v, Setting)]
    assert sorted(s.name for s in defined) == sorted(s.name for s in SETTINGS)
    assert len({s.name for s in SETTINGS}) == len(SETTINGS)
    assert set(SAMPLES) == set(DEFAULTS) == {s.name for s in SETTINGS}


@each_setting
def test_the_names_follow_airflow_and_the_old_variables(setting: Setting[Any]) -> None:
    assert setting.name == setting.name.lower() and not setting.name.startswith("backfill")
    assert setting.option == f"[backfill_controller] {setting.name}"
    assert setting.env_var == f"AIRFLOW__BACKFILL_CONTROLLER__{setting.name.upper()}"
    assert setting.old_env_var == f"BACKFILL_{setting.name.upper()}"


@each_setting
def test_the_default_is_unchanged(setting: Setting[Any]) -> None:
    with no_deprecation():
        assert setting.value() == setting.default == DEFAULTS[setting.name]


@each_setting
def test_the_airflow_option_is_read(setting: Setting[Any], monkeypatch: pytest.MonkeyPatch) -> None:
    for text, expected in SAMPLES[setting.name]:
        monkeypatch.setenv(setting.env_var, text)
        with no_deprecation():
            assert setting.value() == expected


@each_setting
def test_the_old_variable_still_works_with_a_deprecation_warning(
    setting: Setting[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    (text, expected), _ = SAMPLES[setting.name]
    monkeypatch.setenv(setting.old_env_var, text)

    with pytest.warns(DeprecationWarning) as caught:
        assert setting.value() == expected

    (message,) = deprecations(caught, setting)
    assert message.startswith(f"{setting.old_env_var} is deprecated")
    assert setting.option in message and setting.env_var in message


@each_setting
def test_the_deprecation_is_told_once_per_name(
    setting: Setting[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    (text, expected), _ = SAMPLES[setting.name]
    monkeypatch.setenv(setting.old_env_var, text)
    with pytest.warns(DeprecationWarning):
        setting.value()

    with no_deprecation():
        assert setting.value() == expected


@each_setting
def test_the_airflow_option_wins_over_the_old_variable(
    setting: Setting[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    (new_text, expected), (old_text, _) = SAMPLES[setting.name]
    monkeypatch.setenv(setting.env_var, new_text)
    monkeypatch.setenv(setting.old_env_var, old_text)

    with no_deprecation():  # the old name is not even looked at
        assert setting.value() == expected


@each_setting
def test_an_empty_value_counts_as_unset(setting: Setting[Any], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(setting.env_var, "  ")
    assert setting.value() == setting.default

    (old_text, expected), _ = SAMPLES[setting.name]
    monkeypatch.setenv(setting.old_env_var, old_text)
    with pytest.warns(DeprecationWarning):
        assert setting.value() == expected


def test_a_value_that_cannot_be_read_names_where_it_was_set(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIRFLOW__BACKFILL_CONTROLLER__MAX_ACTIVE_RUNS", "many")
    with pytest.raises(
        ValueError, match=re.escape("[backfill_controller] max_active_runs: cannot read 'many'")
    ):
        Limits.from_config()

    monkeypatch.delenv("AIRFLOW__BACKFILL_CONTROLLER__MAX_ACTIVE_RUNS")
    monkeypatch.setenv("BACKFILL_MAX_ACTIVE_RUNS", "many")
    with (
        pytest.warns(DeprecationWarning),
        pytest.raises(ValueError, match=re.escape("BACKFILL_MAX_ACTIVE_RUNS (deprecated): cannot read")),
    ):
        Limits.from_config()


def test_a_broken_airflow_cfg_value_names_the_option(monkeypatch: pytest.MonkeyPatch) -> None:
    from airflow.sdk.configuration import conf

    conf.read_string("[backfill_controller]\napi_conn_id = 100% sure\n")
    try:
        with pytest.raises(ValueError, match=re.escape("[backfill_controller] api_conn_id: ")):
            settings.api_conn_id()
    finally:
        conf.remove_section("backfill_controller")


def test_limits_default_when_nothing_is_configured() -> None:
    assert Limits.from_config() == Limits(max_dates_per_request=10_000, max_active_runs=64)


def test_limits_are_read_from_the_airflow_configuration(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIRFLOW__BACKFILL_CONTROLLER__MAX_DATES_PER_REQUEST", "500")
    monkeypatch.setenv("AIRFLOW__BACKFILL_CONTROLLER__MAX_ACTIVE_RUNS", "8")
    monkeypatch.setenv("AIRFLOW__BACKFILL_CONTROLLER__DENIED_DAGS", "*_pii")
    monkeypatch.setenv("BACKFILL_ALLOWED_DAGS", "sales_*")

    with pytest.warns(DeprecationWarning, match="BACKFILL_ALLOWED_DAGS"):
        limits = Limits.from_config()

    assert limits == Limits(500, 8, allowed_dags=("sales_*",), denied_dags=("*_pii",))
    assert limits.refusal("sales_pii") == "denied by [backfill_controller] denied_dags (pattern *_pii)"


@pytest.mark.parametrize(("text", "size"), [("5000", 1024), ("0", 1), ("300", 300)])
def test_segment_size_stays_within_airflows_max_map_length(
    text: str, size: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AIRFLOW__BACKFILL_CONTROLLER__SEGMENT_SIZE", text)
    assert segment_size() == size


def test_the_functions_read_the_table(monkeypatch: pytest.MonkeyPatch) -> None:
    assert poll_interval() == 5.0
    monkeypatch.setenv("AIRFLOW__BACKFILL_CONTROLLER__POLL_INTERVAL", "0.5")
    assert poll_interval() == 0.5


def test_airflow_cfg_and_airflows_own_cli_agree_with_the_lookup(tmp_path: Path) -> None:
    """In a fresh process: airflow.cfg is read, the variable wins over it, `airflow config` shows it."""
    (tmp_path / "airflow.cfg").write_text("[backfill_controller]\nmax_active_runs = 7\nnotify = a, b\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW__BACKFILL", "BACKFILL_"))}
    env.update(
        AIRFLOW_HOME=str(tmp_path),
        AIRFLOW__BACKFILL_CONTROLLER__MAX_DATES_PER_REQUEST="123",
        AIRFLOW__BACKFILL_CONTROLLER__NOTIFY="c",
    )
    env.pop("AIRFLOW_CONFIG", None)
    code = textwrap.dedent(
        """
        import argparse
        from airflow.cli.commands.config_command import get_value
        from backfill_controller.domain.settings import NOTIFY, Limits

        limits = Limits.from_config()
        print(limits.max_dates_per_request, limits.max_active_runs, ",".join(NOTIFY.value()))
        for option in ("max_dates_per_request", "max_active_runs", "notify"):
            get_value(argparse.Namespace(section="backfill_controller", option=option))
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split("\n")[:4] == ["123 7 c", "123", "7", "c"]


def test_the_readme_documents_every_setting() -> None:
    readme = (REPO_ROOT / "README.md").read_text()
    for setting in SETTINGS:
        assert f"| `{setting.name}` |" in readme, setting.name
    assert "[backfill_controller]" in readme and "AIRFLOW__BACKFILL_CONTROLLER__" in readme


@pytest.mark.parametrize("text", ["100001", "0"])
def test_max_dates_per_request_is_refused_outside_1_to_100000(
    text: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AIRFLOW__BACKFILL_CONTROLLER__MAX_DATES_PER_REQUEST", text)
    with pytest.raises(ValueError, match="max_dates_per_request is .*; accepted: 1 to 100000"):
        Limits.from_config()


def test_max_dates_per_request_may_be_100000(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIRFLOW__BACKFILL_CONTROLLER__MAX_DATES_PER_REQUEST", "100000")
    assert Limits.from_config().max_dates_per_request == 100_000
