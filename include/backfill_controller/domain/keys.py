"""The request contract: every key of the controller's conf, declared once in :data:`KEYS`.

A :class:`Key` states a conf key's name, JSON type, default, accepted values and limits, its
title, help text and section on the trigger form, and the ``backfill`` command's flag where one
flag sets the key to the value given. Derived from :data:`KEYS`:

* the trigger form's Params (:func:`form_params`, read by ``dags/backfill_controller.py``);
* in :func:`backfill_controller.domain.request.parse_request`: the unknown-key check, the type and limit
  checks (:meth:`Key.problem`) and the limits of the checks written for one key;
* the ``backfill`` command's flags that set one key each, and their translation into conf
  (:mod:`backfill_controller.cli`).

Not declared here: what a key does, and the checks that involve more than one key; they live
with the code that uses the value. Imports no Airflow: the ``backfill`` command uses it.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from backfill_controller.domain.segments import MAX_MAP_LENGTH
from backfill_controller.domain.settings import SEGMENT_SIZE, TIMEOUT_MINUTES, Limits

DATE_PATTERN = r"^\d{4}-\d{2}-\d{2}([T ]\d{2}:\d{2}(:\d{2}(\.\d{1,6})?)?(Z|[+-]\d{2}(:?\d{2})?)?)?$"
DAG_ID_CHARACTERS = r"[A-Za-z0-9_.\-]"
#: Airflow's longest dag_id.
MAX_DAG_ID_LENGTH = 250
#: Longest ``timeout_minutes`` a request may ask for: 30 days.
MAX_TIMEOUT_MINUTES = 60 * 24 * 30
DEFAULT_MAX_ACTIVE_RUNS = 10
#: The trigger form's sections, in the order it shows them.
SECTIONS = ("What", "Tasks", "How")


class MissingRuns(StrEnum):
    """What a task-subset backfill does with a date that has no run (Airflow 3 has no partial runs)."""

    SKIP = "skip"
    """Report the date as skipped."""
    TRIGGER = "trigger"
    """Run the whole DAG for that date."""


class OnOverlap(StrEnum):
    """What a backfill does when another one still running covers some of the same dates."""

    REFUSE = "refuse"
    WAIT = "wait"


class Reprocess(StrEnum):
    """Which existing runs a backfill re-runs. Runs queued or running are never touched."""

    MISSING = "missing"
    """Only dates with no run at all (native ``none``)."""
    FAILED = "failed"
    """Dates with no run and dates whose run failed."""
    ALL = "all"
    """Every date (native ``completed``)."""

    @classmethod
    def parse(cls, value: str) -> Reprocess:
        return REPROCESS_ALIASES.get(value) or cls(value)


#: Airflow's native names of the reprocess modes, accepted as well.
REPROCESS_ALIASES = {"none": Reprocess.MISSING, "completed": Reprocess.ALL}


@dataclass(frozen=True)
class Flag:
    """The ``backfill`` command's option that sets one key to the value given.

    How it parses follows the key's type: a boolean is a switch, an integer takes N >= 1, a key
    with choices takes one of them, any other key takes text shown as ``metavar``.
    """

    names: tuple[str, ...]
    help: str
    metavar: str | None = None


@dataclass(frozen=True)
class Key:
    """One key of the controller's conf.

    ``minimum``/``maximum`` bound an integer's value, a string's length or an array's length; a
    ``maximum`` or ``choices`` given as a string names the :class:`Limits` field that sets it.
    ``choices`` of an array apply to each item, and so does ``pattern``. A key that is not
    ``required`` and defaults to None is nullable: null and absence mean "not given". ``{choices}``
    in ``help`` stands for the accepted values. ``form_order`` places the key within its
    section (lower first; equal ones keep their order in :data:`KEYS`); ``form_omits`` names the
    JSON Schema words the trigger form leaves to the ``plan`` task.
    """

    name: str
    type: str
    """JSON type of a value given: ``string``, ``integer``, ``boolean``, ``array`` or ``object``."""
    title: str
    help: str
    section: str
    default: Any = None
    required: bool = False
    choices: tuple[str, ...] | str = ()
    labels: Mapping[str, str] = field(default_factory=dict)
    """How the trigger form shows each choice."""
    accepted: str = ""
    """What an error says is accepted, where the wording derived from the type does not fit."""
    pattern: str | None = None
    minimum: int | None = None
    maximum: int | str | None = None
    form_order: int = 0
    form_omits: tuple[str, ...] = ()
    flag: Flag | None = None

    @property
    def nullable(self) -> bool:
        return not self.required and self.default is None

    def upper(self, limits: Limits) -> int | None:
        """The ``maximum`` under ``limits``.

        >>> KEY["max_active_runs"].upper(Limits(max_active_runs=7)), KEY["segment_size"].upper(Limits())
        (7, 1024)
        """
        if isinstance(self.maximum, str):
            return int(getattr(limits, self.maximum))
        return self.maximum

    def options(self, limits: Limits) -> tuple[str, ...]:
        """The accepted values under ``limits`` (empty: any value of the type)."""
        if isinstance(self.choices, str):
            return tuple(getattr(limits, self.choices))
        return self.choices

    def problem(self, value: Any, limits: Limits) -> tuple[str, str] | None:
        """``(problem, accepted)`` for a given (non-null) value a boolean, an integer or a string
        with choices refuses; None when the value passes, or the key's type has no check here.

        >>> KEY["chunk_size"].problem(0, Limits(max_active_runs=8))
        ('is out of range', 'an integer from 1 to 8')
        >>> KEY["on_overlap"].problem("later", Limits())
        ('is not an option', 'refuse or wait')
        """
        if self.type == "boolean":
            return None if isinstance(value, bool) else ("is not a boolean", "true or false")
        if self.type == "integer":
            low, high = self.minimum, self.upper(limits)
            fits = isinstance(value, int) and not isinstance(value, bool)
            fits = fits and (low is None or value >= low) and (high is None or value <= high)
            return None if fits else ("is out of range", _integers(low, high))
        options = self.options(limits)
        if self.type == "string" and options and value not in options:
            return "is not an option", self.accepted or " or ".join(options)
        return None

    def param(self, limits: Limits) -> dict[str, Any]:
        """The keyword arguments of the trigger form's ``airflow.sdk.Param`` for this key."""
        kind: str | list[str] = ["null", self.type] if self.nullable else self.type
        schema = {"type": kind, **self._schema(limits), "title": self.title, "section": self.section}
        schema = {word: value for word, value in schema.items() if word not in self.form_omits}
        default = {} if self.required else {"default": copy.deepcopy(self.default)}
        return {**default, **schema, "description": self.describe(limits)}

    def describe(self, limits: Limits) -> str:
        """The help text, its ``{choices}`` replaced by the accepted values under ``limits``."""
        if "{choices}" not in self.help:
            return self.help
        return self.help.replace("{choices}", ", ".join(self.options(limits)) or "none defined")

    def _schema(self, limits: Limits) -> dict[str, Any]:
        """The JSON Schema words of the type, choices, pattern and bounds (an array's are its items')."""
        values: dict[str, Any] = {"pattern": self.pattern, "enum": list(self.options(limits)) or None}
        if self.labels:
            values["values_display"] = dict(self.labels)
        if self.type == "array":
            item = {"type": "string", **values}
            values = {"items": {word: value for word, value in item.items() if value is not None}}
        if self.type in _BOUND_WORDS:
            low, high = _BOUND_WORDS[self.type]
            values |= {low: self.minimum, high: self.upper(limits)}
        return {word: value for word, value in values.items() if value is not None}


#: The JSON Schema words of ``minimum`` and ``maximum`` for each type they bound.
_BOUND_WORDS = {
    "integer": ("minimum", "maximum"),
    "string": ("minLength", "maxLength"),
    "array": ("minItems", "maxItems"),
}


def _integers(low: int | None, high: int | None) -> str:
    if low is not None and high is not None:
        return f"an integer from {low} to {high}"
    if low is not None:
        return f"an integer of at least {low}"
    return "an integer" if high is None else f"an integer of at most {high}"


def _values(kind: type[StrEnum]) -> tuple[str, ...]:
    return tuple(member.value for member in kind)


def _switch(name: str, title: str, help: str, section: str, **more: Any) -> Key:
    return Key(name, "boolean", title, help, section, default=False, **more)


#: Every key the controller's conf may hold, in the order requests are written out. Anything else
#: is refused: a typo must not backfill.
KEYS: tuple[Key, ...] = (
    Key(
        "dag_id",
        "string",
        "Target DAG",
        "dag_id of the DAG to backfill.",
        "What",
        required=True,
        pattern=rf"^{DAG_ID_CHARACTERS}+$",
        minimum=1,
        maximum=MAX_DAG_ID_LENGTH,
        form_omits=("maxLength",),
    ),
    Key(
        "start_date",
        "string",
        "Start date",
        "First logical date, inclusive. YYYY-MM-DD or ISO-8601; naive means UTC.",
        "What",
        pattern=DATE_PATTERN,
    ),
    Key("end_date", "string", "End date", "Last logical date, inclusive.", "What", pattern=DATE_PATTERN),
    Key(
        "dates",
        "array",
        "Explicit dates",
        "Instead of a window: the logical dates to run (for DAGs with schedule=None, any datetimes).",
        "What",
        pattern=DATE_PATTERN,
        minimum=1,
        maximum="max_dates_per_request",
    ),
    Key(
        "reprocess",
        "string",
        "Re-process",
        "Which existing runs to re-run. Queued or running runs are never touched.",
        "What",
        default=Reprocess.MISSING.value,
        choices=_values(Reprocess) + tuple(REPROCESS_ALIASES),
        labels={
            "missing": "missing: only dates with no run",
            "failed": "failed: also dates whose run failed",
            "all": "all: every date",
            "none": "none (native name of missing)",
            "completed": "completed (native name of all)",
        },
        accepted="one of missing, failed, all (native names none and completed are accepted too)",
    ),
    _switch(
        "run_backwards",
        "Newest first",
        "Run the newest date first.",
        "How",
        flag=Flag(("-B", "--run-backwards"), "newest date first"),
    ),
    Key(
        "max_active_runs",
        "integer",
        "Max active runs",
        "Most target runs of this backfill running at once.",
        "How",
        default=DEFAULT_MAX_ACTIVE_RUNS,
        minimum=1,
        maximum="max_active_runs",
        flag=Flag(
            ("--max-active-runs",),
            f"most target runs of this backfill running at once (default {DEFAULT_MAX_ACTIVE_RUNS})",
            "N",
        ),
    ),
    Key(
        "chunk_size",
        "integer",
        "Chunk size",
        "Dates per trigger task instance (unit of progress in the grid, and of the failure budget: "
        "a chunk starts only while the budget lasts). Default: the whole segment, one trigger task "
        "instance per controller run; max_active_runs when max_failed_dates is set.",
        "How",
        minimum=1,
        maximum="max_active_runs",
        flag=Flag(
            ("--chunk-size",),
            "dates per trigger task (default: the whole segment; --max-active-runs with a failure budget)",
            "N",
        ),
    ),
    Key(
        "max_failed_dates",
        "integer",
        "Max failed dates",
        "After this many failed dates no new chunk starts; the rest are cancelled. Empty: no limit.",
        "How",
        minimum=1,
        maximum="max_dates_per_request",
        form_order=1,
        form_omits=("maximum",),
        flag=Flag(
            ("--max-failed-dates",),
            "after N failed dates start no new chunk; the rest are reported cancelled",
            "N",
        ),
    ),
    Key(
        "conf",
        "object",
        "Run conf",
        "Passed to every target run; validated against the target's Params.",
        "What",
        default={},
    ),
    _switch(
        "dry_run",
        "Dry run",
        "Only report what would happen to each date; change nothing.",
        "How",
        form_order=-1,
        flag=Flag(("--dry-run",), "report what would happen to each date; change nothing"),
    ),
    Key(
        "reason",
        "string",
        "Reason",
        "Recorded as the note of every run created or cleared, and in the report.",
        "What",
        default="",
        maximum=1000,
        flag=Flag(("--reason",), "recorded as the note of every run created or cleared", "TEXT"),
    ),
    Key(
        "task_regex",
        "string",
        "Only tasks matching",
        "Re-run only the tasks whose task_id matches this Python regex (re.search), like Airflow 2's "
        "-t. Empty: whole runs.",
        "Tasks",
        maximum=1000,
        flag=Flag(
            ("-t", "--task-regex"),
            "re-run only the tasks whose task_id matches (re.search) in existing runs, "
            "plus their upstream tasks unless -i",
            "REGEX",
        ),
    ),
    _switch(
        "include_upstream",
        "Include upstream",
        "With a task regex: also re-run the matched tasks' upstream tasks (Airflow 2's -i).",
        "Tasks",
    ),
    _switch(
        "include_downstream",
        "Include downstream",
        "With a task regex: also re-run the tasks that depend on the matched ones.",
        "Tasks",
        flag=Flag(
            ("--include-downstream",), "with -t: also re-run the tasks downstream of the matching ones"
        ),
    ),
    Key(
        "missing_runs",
        "string",
        "Dates with no run",
        "With a task regex: a date with no run cannot be partially re-run (Airflow 3 has no partial runs).",
        "Tasks",
        default=MissingRuns.SKIP.value,
        choices=_values(MissingRuns),
        labels={"skip": "skip: report the date as skipped", "trigger": "trigger: run the whole DAG for it"},
        accepted="skip (report the date) or trigger (run the whole DAG for it)",
        flag=Flag(
            ("--missing-runs",),
            "with -t: a date with no run is reported as skipped (skip, default) or "
            "gets a whole new run (trigger)",
        ),
    ),
    Key(
        "segment_size",
        "integer",
        "Segment size",
        "Advanced: dates per controller run; larger requests continue in further runs of this DAG, "
        f"one after another. Empty: the deployment default ({SEGMENT_SIZE.default}).",
        "How",
        minimum=1,
        maximum=MAX_MAP_LENGTH,
        flag=Flag(
            ("--segment-size",),
            f"advanced: dates per controller run, at most {MAX_MAP_LENGTH} "
            f"(default: the deployment's, {SEGMENT_SIZE.default})",
            "N",
        ),
    ),
    Key(
        "timeout_minutes",
        "integer",
        "Timeout (minutes)",
        "Longest this run waits for target runs to finish; then it fails naming the dates still open. "
        f"Empty: the deployment default ({TIMEOUT_MINUTES.default}).",
        "How",
        minimum=1,
        maximum=MAX_TIMEOUT_MINUTES,
        flag=Flag(
            ("--timeout-minutes",),
            f"longest the controller waits for the target runs (default: the deployment's, "
            f"{TIMEOUT_MINUTES.default})",
            "N",
        ),
    ),
    Key(
        "on_overlap",
        "string",
        "If another backfill has these dates",
        "Two backfills never run the same date of a DAG; backfills of other dates run side by side.",
        "How",
        default=OnOverlap.REFUSE.value,
        choices=_values(OnOverlap),
        labels={
            "refuse": "refuse: fail at once, naming the other backfill",
            "wait": "wait: start when the other backfill has finished",
        },
        flag=Flag(
            ("--on-overlap",),
            "another backfill still running has some of these dates: refuse (default) or wait for it",
        ),
    ),
    Key(
        "notify",
        "array",
        "Notify",
        "Names of this deployment's notifiers to tell when the backfill ends ({choices}). "
        "Empty: the deployment default; []: nobody.",
        "How",
        choices="notifiers",
    ),
)

#: Each key of :data:`KEYS` by name.
KEY: Mapping[str, Key] = {key.name: key for key in KEYS}


def form_params(limits: Limits) -> dict[str, dict[str, Any]]:
    """The trigger form's Params, each as the keyword arguments of its ``airflow.sdk.Param``, in
    the order the form shows them: by section (:data:`SECTIONS`), then ``form_order``."""
    shown = sorted(KEYS, key=lambda key: (SECTIONS.index(key.section), key.form_order))
    return {key.name: key.param(limits) for key in shown}
