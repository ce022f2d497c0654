"""Deployment settings: limits an operator of the Airflow deployment sets, not the requester.

They are options of the Airflow configuration section ``[backfill_controller]``, set like any
Airflow option: in airflow.cfg ::

    [backfill_controller]
    max_dates_per_request = 5000
    denied_dags = *_pii, hr_*

or as environment variables, which win over airflow.cfg as for every Airflow option::

    AIRFLOW__BACKFILL_CONTROLLER__MAX_DATES_PER_REQUEST=5000

:data:`SETTINGS` is the one table of them (name, type, default, help); every lookup is derived
from it. An empty value counts as unset (the default applies). The ``notifiers`` option's JSON is
read here too (:func:`parse_notifiers`), since :meth:`Limits.from_config` offers its names to
requests; who is told of what is :mod:`backfill_controller.domain.notify`.

Which configuration object: ``airflow.sdk.configuration.conf`` (also ``airflow.sdk.conf``), in
every process. These settings are read by tasks (on workers), at DAG parse time (dag-processor)
and by the api-server plugin. Task code in Airflow 3 runs on the Task SDK, and
the SDK's ``conf`` is the one it is meant to read (a worker need not have Airflow core's
``airflow.configuration``; the controller's operators already read ``[workers]`` through it). The
servers have the Task SDK too (Airflow core depends on it), and for options like these (not
sensitive, so no ``_cmd``/``_secret`` variants) it reads the same sources as core's ``conf``: the
``AIRFLOW__BACKFILL_CONTROLLER__<NAME>`` variable at the moment of the lookup, then the airflow.cfg
core reads (``AIRFLOW_CONFIG``, else ``$AIRFLOW_HOME/airflow.cfg``). So every process sees the
value ``airflow config get-value backfill_controller <name>`` shows. It is imported inside the
lookup, never when this module is imported: the pure modules and the ``backfill`` CLI import this
module and must neither need Airflow nor wait for it.

Deprecated, for one release: the old environment variables ``BACKFILL_<NAME>``
(``BACKFILL_MAX_DATES_PER_REQUEST``...). One is still read when the option is not set, with a
:class:`DeprecationWarning` (once per name and process) naming the option to set instead; the
option wins when both are set.
"""

from __future__ import annotations

import configparser
import fnmatch
import json
import os
import re
import sys
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, TypeVar

from backfill_controller.domain.segments import MAX_MAP_LENGTH

SECTION = "backfill_controller"
OLD_PREFIX = "BACKFILL_"

T = TypeVar("T")


def names(text: str) -> tuple[str, ...]:
    """A comma-separated list, blanks dropped.

    >>> names(" sales_*, ,hr_* ")
    ('sales_*', 'hr_*')
    """
    return tuple(p.strip() for p in text.split(",") if p.strip())


@dataclass(frozen=True)
class Setting(Generic[T]):
    """One option of ``[backfill_controller]``: how its text is read, its default and meaning."""

    name: str
    type: Callable[[str], T]
    default: T
    help: str

    @property
    def option(self) -> str:
        """How messages name it.

        >>> MAX_DATES_PER_REQUEST.option
        '[backfill_controller] max_dates_per_request'
        """
        return f"[{SECTION}] {self.name}"

    @property
    def env_var(self) -> str:
        """
        >>> MAX_DATES_PER_REQUEST.env_var
        'AIRFLOW__BACKFILL_CONTROLLER__MAX_DATES_PER_REQUEST'
        """
        return f"AIRFLOW__{SECTION.upper()}__{self.name.upper()}"

    @property
    def old_env_var(self) -> str:
        """The deprecated variable it replaces.

        >>> MAX_DATES_PER_REQUEST.old_env_var
        'BACKFILL_MAX_DATES_PER_REQUEST'
        """
        return f"{OLD_PREFIX}{self.name.upper()}"

    def value(self) -> T:
        """The Airflow option, else the deprecated variable (with a warning), else the default.

        A value that cannot be read raises ValueError naming where it was set.
        """
        found = _lookup(self)
        if found is None:
            return self.default
        text, source = found
        try:
            return self.type(text)
        except ValueError as exc:
            raise ValueError(f"{source}: cannot read {text!r} ({exc})") from None


#: Where the scheduled catch-up's file is unless ``catchup_config`` says otherwise. A relative path
#: is read beside the DAGs folder (``dags/`` and ``include/`` side by side, as in an Astro project,
#: the official image's ``/opt/airflow`` and this repository): see :func:`resolve_beside_dags`.
DEFAULT_CATCHUP_CONFIG = Path("include/catchup.yaml")

#: Highest ``max_dates_per_request`` a deployment may set: every part of a backfill (planning, the
#: record, segments, the page's paged cells) is proven at this size.
MOST_DATES_PER_REQUEST = 100_000
MAX_DATES_PER_REQUEST = Setting(
    "max_dates_per_request",
    int,
    10_000,
    f"most dates one request may cover (at most {MOST_DATES_PER_REQUEST:,})",
)
MAX_ACTIVE_RUNS = Setting("max_active_runs", int, 64, "highest max_active_runs a request may ask for")
POLL_INTERVAL = Setting(
    "poll_interval", float, 5.0, "seconds between progress checks of the wait and report triggers"
)
API_CONN_ID = Setting(
    "api_conn_id", str, "airflow_api", "Airflow connection with the REST API's URL and credentials"
)
ALLOWED_DAGS: Setting[tuple[str, ...]] = Setting(
    "allowed_dags", names, (), "comma-separated fnmatch patterns of the dag_ids that may be backfilled"
)
DENIED_DAGS: Setting[tuple[str, ...]] = Setting(
    "denied_dags", names, (), "comma-separated patterns of dag_ids never backfilled (wins over allowed)"
)
SEGMENT_SIZE = Setting("segment_size", int, 1000, f"dates per controller run (at most {MAX_MAP_LENGTH})")
TIMEOUT_MINUTES = Setting("timeout_minutes", int, 1440, "longest a controller run waits for target runs")
NOTIFIERS = Setting(
    "notifiers", str, "", "JSON: named notifiers (class, kwargs, on) a request may pick (see notify.py)"
)
NOTIFY: Setting[tuple[str, ...]] = Setting(
    "notify", names, (), "comma-separated notifier names told when a request has no notify"
)
CATCHUP_CONFIG = Setting("catchup_config", Path, DEFAULT_CATCHUP_CONFIG, "the scheduled catch-up's YAML file")
CATCHUP_SCHEDULE = Setting(
    "catchup_schedule", str, "@hourly", "backfill_catchup's schedule, read when the DAG file is parsed"
)
PLANS_AT_ONCE = Setting(
    "plans_at_once", int, 2, "requests one api-server process plans at once; the others wait their turn"
)
PLAN_WAIT_SECONDS = Setting(
    "plan_wait_seconds", float, 60.0, "longest a request waits for its turn before it is answered 503"
)

#: Every deployment setting, the one table the lookups, docs and tests are derived from.
SETTINGS: tuple[Setting[Any], ...] = (
    MAX_DATES_PER_REQUEST,
    MAX_ACTIVE_RUNS,
    POLL_INTERVAL,
    API_CONN_ID,
    ALLOWED_DAGS,
    DENIED_DAGS,
    SEGMENT_SIZE,
    TIMEOUT_MINUTES,
    NOTIFIERS,
    NOTIFY,
    CATCHUP_CONFIG,
    CATCHUP_SCHEDULE,
    PLANS_AT_ONCE,
    PLAN_WAIT_SECONDS,
)

#: The events a notifier may be told of (``on``).
EVENTS: tuple[str, ...] = ("success", "failure", "budget_exhausted")


@dataclass(frozen=True)
class NotifierSpec:
    name: str
    class_path: str
    kwargs: Mapping[str, Any] = field(default_factory=dict)
    on: tuple[str, ...] = EVENTS


def parse_notifiers(text: str) -> dict[str, NotifierSpec]:
    """Read ``[backfill_controller] notifiers``; raise ValueError naming the notifier and key that is wrong.

    >>> parse_notifiers('{"ops": {"class": "my.Notifier", "on": ["failure"]}}')["ops"].on
    ('failure',)
    >>> parse_notifiers('{"ops": {"class": "my.Notifier", "on": ["always"]}}')
    Traceback (most recent call last):
    ...
    ValueError: [backfill_controller] notifiers.ops.on: 'always' is not an event; accepted: success, ...
    """
    if not text.strip():
        return {}
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise ValueError(f"{NOTIFIERS.option} is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise ValueError(f"{NOTIFIERS.option} must be a JSON object of name -> {{class, kwargs, on}}")
    specs = {}
    for name, body in data.items():
        where = f"{NOTIFIERS.option}.{name}"
        if not isinstance(body, dict) or not isinstance(body.get("class"), str):
            raise ValueError(f"{where}: needs a 'class' (dotted path of a BaseNotifier subclass)")
        unknown = set(body) - {"class", "kwargs", "on"}
        if unknown:
            raise ValueError(
                f"{where}: unknown key(s) {', '.join(sorted(unknown))}; accepted: class, kwargs, on"
            )
        kwargs = body.get("kwargs", {})
        if not isinstance(kwargs, dict):
            raise ValueError(f"{where}.kwargs: must be an object of the notifier's arguments")
        on = body.get("on") or list(EVENTS)
        for event in on:
            if event not in EVENTS:
                raise ValueError(f"{where}.on: {event!r} is not an event; accepted: {', '.join(EVENTS)}")
        specs[name] = NotifierSpec(name, body["class"], kwargs, tuple(on))
    return specs


def deployment_notifiers() -> dict[str, NotifierSpec]:
    """The deployment's notifiers (``[backfill_controller] notifiers``); ValueError if it is wrong."""
    return parse_notifiers(NOTIFIERS.value())


def notifier_names() -> tuple[str, ...]:
    """The names a request may use (none when the setting is missing or wrong; the report says why)."""
    try:
        return tuple(deployment_notifiers())
    except ValueError:
        return ()


_warned: set[str] = set()

# Python hides DeprecationWarnings outside __main__; Airflow shows only its own. Show this module's
# (once per name, see _lookup), unless the operator chose warning filters (-W, PYTHONWARNINGS).
if not sys.warnoptions:
    warnings.filterwarnings("default", category=DeprecationWarning, module=re.escape(__name__) + "$")


def _lookup(setting: Setting[Any]) -> tuple[str, str] | None:
    """The setting's text and where it came from; None when neither spelling is set (or both empty)."""
    from airflow.sdk.configuration import conf

    try:
        configured = conf.get(SECTION, setting.name, fallback=None)
    except configparser.Error as exc:  # e.g. a single % in airflow.cfg (written %% there)
        raise ValueError(f"{setting.option}: {exc}") from None
    if configured is not None and configured.strip():
        return configured.strip(), setting.option
    old = os.environ.get(setting.old_env_var, "").strip()
    if not old:
        return None
    if setting.old_env_var not in _warned:
        _warned.add(setting.old_env_var)
        warnings.warn(
            f"{setting.old_env_var} is deprecated and will be ignored from the next release: set "
            f"{setting.option} in airflow.cfg, or the environment variable {setting.env_var}, instead",
            DeprecationWarning,
            stacklevel=1,
        )
    return old, f"{setting.old_env_var} (deprecated)"


@dataclass(frozen=True)
class Limits:
    max_dates_per_request: int = MAX_DATES_PER_REQUEST.default
    max_active_runs: int = MAX_ACTIVE_RUNS.default
    allowed_dags: tuple[str, ...] = ALLOWED_DAGS.default
    """fnmatch patterns of the dag_ids that may be backfilled; empty means every DAG."""
    denied_dags: tuple[str, ...] = DENIED_DAGS.default
    """fnmatch patterns of the dag_ids that may never be backfilled."""
    notifiers: tuple[str, ...] = ()
    """Names of the deployment's notifiers (``[backfill_controller] notifiers``) a request may pick."""

    @classmethod
    def from_config(cls) -> Limits:
        """The deployment's limits, as its Airflow configuration sets them; ValueError for a
        ``max_dates_per_request`` above :data:`MOST_DATES_PER_REQUEST` or below 1."""
        most = MAX_DATES_PER_REQUEST.value()
        if not 1 <= most <= MOST_DATES_PER_REQUEST:
            raise ValueError(
                f"{MAX_DATES_PER_REQUEST.option} is {most}; accepted: 1 to {MOST_DATES_PER_REQUEST}"
            )
        return cls(
            max_dates_per_request=most,
            max_active_runs=MAX_ACTIVE_RUNS.value(),
            allowed_dags=ALLOWED_DAGS.value(),
            denied_dags=DENIED_DAGS.value(),
            notifiers=notifier_names(),
        )

    def refusal(self, dag_id: str) -> str | None:
        """Why the deployment forbids backfilling ``dag_id``, or None if it may be backfilled.

        >>> Limits(allowed_dags=("sales_*",), denied_dags=("*_pii",)).refusal("sales_pii")
        'denied by [backfill_controller] denied_dags (pattern *_pii)'
        >>> Limits(allowed_dags=("sales_*",)).refusal("hr_payroll")
        'not in [backfill_controller] allowed_dags (sales_*)'
        """
        for pattern in self.denied_dags:
            if fnmatch.fnmatchcase(dag_id, pattern):
                return f"denied by {DENIED_DAGS.option} (pattern {pattern})"
        if self.allowed_dags and not any(fnmatch.fnmatchcase(dag_id, p) for p in self.allowed_dags):
            return f"not in {ALLOWED_DAGS.option} ({', '.join(self.allowed_dags)})"
        return None


def poll_interval() -> float:
    return POLL_INTERVAL.value()


def api_conn_id() -> str:
    return API_CONN_ID.value()


def segment_size() -> int:
    """Dates per controller run (``segment_size``, at most Airflow's default ``max_map_length``)."""
    return max(1, min(MAX_MAP_LENGTH, SEGMENT_SIZE.value()))


def timeout_minutes() -> int:
    return TIMEOUT_MINUTES.value()


def resolve_beside_dags(path: Path) -> Path:
    """``path`` itself when absolute, else relative to the parent of ``[core] dags_folder``."""
    if path.is_absolute():
        return path
    from airflow.configuration import conf

    return Path(conf.get("core", "dags_folder")).expanduser().resolve().parent / path
