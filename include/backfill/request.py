"""A backfill request: the controller's conf, parsed once into a frozen, validated value.

Every problem is reported as a :class:`FieldError` that names the conf key, the bad value and
what would be accepted; :func:`parse_request` collects all of them before raising, so a caller
fixes a request in one round trip.
"""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import pendulum
from pendulum import DateTime

from include.backfill.settings import NOTIFIERS, Limits

#: Every key the controller's conf may hold. Anything else is refused (a typo must not backfill).
CONF_KEYS: tuple[str, ...] = (
    "dag_id",
    "start_date",
    "end_date",
    "dates",
    "reprocess",
    "run_backwards",
    "max_active_runs",
    "chunk_size",
    "max_failed_dates",
    "conf",
    "dry_run",
    "reason",
    "task_regex",
    "include_upstream",
    "include_downstream",
    "missing_runs",
    "segment_size",
    "timeout_minutes",
    "on_overlap",
    "notify",
)

DAG_ID_PATTERN = re.compile(r"^[A-Za-z0-9_.\-]{1,250}$")
DATE_PATTERN = r"^\d{4}-\d{2}-\d{2}([T ]\d{2}:\d{2}(:\d{2}(\.\d{1,6})?)?(Z|[+-]\d{2}(:?\d{2})?)?)?$"
_DATE_RE = re.compile(DATE_PATTERN)
_CONTROL_CHARS = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
DATE_ACCEPTED = "YYYY-MM-DD or an ISO-8601 datetime such as 2024-01-31T06:00:00+00:00 (naive means UTC)"

DEFAULT_MAX_ACTIVE_RUNS = 10
MAX_REASON_LENGTH = 1000
MAX_TASK_REGEX_LENGTH = 1000
MAX_CONF_BYTES = 65_536
MAX_CONF_DEPTH = 16


class MissingRuns(StrEnum):
    """What a task-subset backfill does with a date that has no run (Airflow 3 has no partial runs)."""

    SKIP = "skip"
    """Report the date as skipped."""
    TRIGGER = "trigger"
    """Run the whole DAG for that date."""


MISSING_RUNS_ACCEPTED = "skip (report the date) or trigger (run the whole DAG for it)"


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
        return _REPROCESS_ALIASES.get(value) or cls(value)


_REPROCESS_ALIASES = {"none": Reprocess.MISSING, "completed": Reprocess.ALL}
REPROCESS_ACCEPTED = "one of missing, failed, all (native names none and completed are accepted too)"


@dataclass(frozen=True)
class FieldError:
    """One thing wrong with one conf key."""

    field: str
    value: Any
    problem: str
    accepted: str

    def __str__(self) -> str:
        shown = _short_repr(self.value)
        return f"{self.field}: {self.problem} (got {shown}); accepted: {self.accepted}"


class InvalidRequest(ValueError):
    """A request that cannot be carried out; nothing was created or changed."""

    def __init__(self, errors: Sequence[FieldError]):
        self.errors = tuple(errors)
        lines = "\n".join(f"  - {e}" for e in self.errors)
        super().__init__(f"invalid backfill request ({len(self.errors)} problem(s)):\n{lines}")


@dataclass(frozen=True)
class BackfillRequest:
    """What a user asked for, validated. Datetimes are timezone-aware (UTC when given naive)."""

    target_dag_id: str
    start_date: DateTime | None = None
    end_date: DateTime | None = None
    dates: tuple[DateTime, ...] | None = None
    reprocess: Reprocess = Reprocess.MISSING
    run_backwards: bool = False
    max_active_runs: int = DEFAULT_MAX_ACTIVE_RUNS
    chunk_size: int = DEFAULT_MAX_ACTIVE_RUNS
    max_failed_dates: int | None = None
    conf: Mapping[str, Any] = field(default_factory=dict)
    dry_run: bool = False
    reason: str = ""
    task_regex: str | None = None
    include_upstream: bool = False
    include_downstream: bool = False
    missing_runs: MissingRuns = field(default_factory=lambda: MissingRuns.SKIP)
    segment_size: int | None = None
    """Dates per controller run (None: the deployment's ``[backfill_controller] segment_size``)."""
    timeout_minutes: int | None = None
    """Longest a controller run waits for target runs (None: ``[backfill_controller] timeout_minutes``)."""
    on_overlap: OnOverlap = field(default_factory=lambda: OnOverlap.REFUSE)
    notify: tuple[str, ...] | None = None
    """Names of the deployment's notifiers to tell at the end (None: the deployment default)."""

    @property
    def is_task_subset(self) -> bool:
        return self.task_regex is not None

    def to_dict(self) -> dict[str, Any]:
        """The request as JSON-ready conf (the inverse of :func:`parse_request`)."""
        return {
            "dag_id": self.target_dag_id,
            "start_date": _iso(self.start_date),
            "end_date": _iso(self.end_date),
            "dates": [d.isoformat() for d in self.dates] if self.dates is not None else None,
            "reprocess": self.reprocess.value,
            "run_backwards": self.run_backwards,
            "max_active_runs": self.max_active_runs,
            "chunk_size": self.chunk_size,
            "max_failed_dates": self.max_failed_dates,
            "conf": dict(self.conf),
            "dry_run": self.dry_run,
            "reason": self.reason,
            "task_regex": self.task_regex,
            "include_upstream": self.include_upstream,
            "include_downstream": self.include_downstream,
            "missing_runs": self.missing_runs.value,
            "segment_size": self.segment_size,
            "timeout_minutes": self.timeout_minutes,
            "on_overlap": self.on_overlap.value,
            "notify": list(self.notify) if self.notify is not None else None,
        }


def parse_datetime(text: str) -> DateTime:
    """Parse ``YYYY-MM-DD`` or an ISO-8601 datetime; naive values are UTC.

    >>> parse_datetime("2024-02-29").isoformat()
    '2024-02-29T00:00:00+00:00'
    >>> parse_datetime("2024-03-10T02:30:00-05:00").isoformat()
    '2024-03-10T07:30:00+00:00'
    """
    if not isinstance(text, str) or not _DATE_RE.match(text.strip()):
        raise ValueError(f"not a date: {text!r}")
    parsed = pendulum.parse(text.strip(), tz="UTC", strict=True)
    if not isinstance(parsed, DateTime):
        raise ValueError(f"not a date: {text!r}")
    return parsed.in_timezone("UTC")


def parse_request(
    conf: Mapping[str, Any],
    *,
    limits: Limits,
    now: DateTime | None,
    controller_dag_id: str = "backfill_controller",
) -> BackfillRequest:
    """Validate the controller's conf and return the request it describes.

    Keys set to ``None`` mean "use the default" (the UI form sends every key). No requested date
    may be after ``now``; ``now=None`` skips that check, for a request accepted before and read
    again. Raises :class:`InvalidRequest` listing every problem found.
    """
    errors: list[FieldError] = []
    if not isinstance(conf, Mapping):
        raise InvalidRequest([FieldError("request", conf, "the request must be a JSON object", "an object")])

    for key in conf:
        if key not in CONF_KEYS:
            close = difflib.get_close_matches(str(key), CONF_KEYS, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            errors.append(FieldError(str(key), conf[key], f"unknown key{hint}", ", ".join(CONF_KEYS)))

    def get(key: str) -> Any:
        return conf.get(key)

    target = _dag_id(get("dag_id"), controller_dag_id, errors)
    if target is not None and (refusal := limits.refusal(target)):
        errors.append(
            FieldError("dag_id", target, f"this deployment forbids backfilling it: {refusal}", "another DAG")
        )
        target = None
    start = _date(get("start_date"), "start_date", errors)
    end = _date(get("end_date"), "end_date", errors)
    dates = _dates(get("dates"), limits, errors)

    window_given = get("start_date") is not None or get("end_date") is not None
    if dates is not None and window_given:
        errors.append(
            FieldError(
                "dates", get("dates"), "give either dates or start_date/end_date, not both", "one of the two"
            )
        )
    elif dates is None and not window_given and "dates" not in {e.field for e in errors}:
        errors.append(
            FieldError(
                "start_date", None, "no dates requested", "start_date and end_date, or a non-empty dates list"
            )
        )
    elif dates is None and window_given:
        if get("start_date") is None:
            errors.append(FieldError("start_date", None, "missing (end_date was given)", DATE_ACCEPTED))
        if get("end_date") is None:
            errors.append(FieldError("end_date", None, "missing (start_date was given)", DATE_ACCEPTED))
    if start is not None and end is not None and start > end:
        errors.append(
            FieldError(
                "start_date", get("start_date"), f"is after end_date {end.isoformat()}", "start <= end"
            )
        )
    if now is not None and start is not None and start > now:
        errors.append(
            FieldError(
                "start_date", get("start_date"), f"is in the future (now is {now.isoformat()})", "a past date"
            )
        )
    for d in dates or ():
        if now is not None and d > now:
            errors.append(FieldError("dates", d.isoformat(), "is in the future", "past dates only"))
            break

    reprocess = _reprocess(get("reprocess"), errors)
    run_backwards = _bool(get("run_backwards"), "run_backwards", False, errors)
    dry_run = _bool(get("dry_run"), "dry_run", False, errors)
    max_active_runs = _positive_int(
        get("max_active_runs"), "max_active_runs", DEFAULT_MAX_ACTIVE_RUNS, limits.max_active_runs, errors
    )
    chunk_size = _positive_int(
        get("chunk_size"), "chunk_size", max_active_runs, limits.max_active_runs, errors
    )
    if chunk_size > max_active_runs and "chunk_size" not in {e.field for e in errors}:
        errors.append(
            FieldError(
                "chunk_size",
                chunk_size,
                f"is larger than max_active_runs ({max_active_runs}); a chunk holds at most that many dates",
                f"an integer from 1 to {max_active_runs}",
            )
        )
    max_failed = get("max_failed_dates")
    max_failed_dates = (
        None
        if max_failed is None
        else _positive_int(max_failed, "max_failed_dates", 1, limits.max_dates_per_request, errors)
    )
    target_conf = _conf(get("conf"), errors)
    reason = _reason(get("reason"), errors)
    task_regex = _task_regex(get("task_regex"), errors)
    include_upstream = _bool(get("include_upstream"), "include_upstream", False, errors)
    include_downstream = _bool(get("include_downstream"), "include_downstream", False, errors)
    missing_runs = _missing_runs(get("missing_runs"), errors)
    segment = get("segment_size")
    segment_size = None if segment is None else _positive_int(segment, "segment_size", 1000, 1024, errors)
    on_overlap = _choice(get("on_overlap"), "on_overlap", OnOverlap, OnOverlap.REFUSE, errors)
    timeout = get("timeout_minutes")
    timeout_minutes = (
        None if timeout is None else _positive_int(timeout, "timeout_minutes", 1, 60 * 24 * 30, errors)
    )
    notify = _notify(get("notify"), limits, errors)
    if task_regex is None and get("task_regex") is None:
        for name, value in (
            ("include_upstream", include_upstream),
            ("include_downstream", include_downstream),
        ):
            if value:
                errors.append(
                    FieldError(name, value, "only applies with task_regex", "false or a task_regex")
                )

    if errors:
        raise InvalidRequest(errors)
    assert target is not None
    return BackfillRequest(
        target_dag_id=target,
        start_date=start,
        end_date=end,
        dates=dates,
        reprocess=reprocess,
        run_backwards=run_backwards,
        max_active_runs=max_active_runs,
        chunk_size=chunk_size,
        max_failed_dates=max_failed_dates,
        conf=target_conf,
        dry_run=dry_run,
        reason=reason,
        task_regex=task_regex,
        include_upstream=include_upstream,
        include_downstream=include_downstream,
        missing_runs=missing_runs,
        segment_size=segment_size,
        timeout_minutes=timeout_minutes,
        on_overlap=on_overlap,
        notify=notify,
    )


def _notify(value: Any, limits: Limits, errors: list[FieldError]) -> tuple[str, ...] | None:
    known = ", ".join(limits.notifiers) or f"none: this deployment defines no notifiers ({NOTIFIERS.option})"
    accepted = f"null (the deployment default), [] (nobody), or names from: {known}"
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        errors.append(FieldError("notify", value, "is not a list of notifier names", accepted))
        return None
    for name in value:
        if name not in limits.notifiers:
            errors.append(FieldError("notify", name, "is not a notifier of this deployment", accepted))
            return None
    return tuple(dict.fromkeys(value))


def _dag_id(value: Any, controller_dag_id: str, errors: list[FieldError]) -> str | None:
    accepted = "the dag_id of an existing DAG (letters, digits, _ . -)"
    if value is None or value == "":
        errors.append(FieldError("dag_id", value, "is required", accepted))
        return None
    if not isinstance(value, str) or not DAG_ID_PATTERN.match(value):
        errors.append(FieldError("dag_id", value, "is not a valid dag_id", accepted))
        return None
    if value == controller_dag_id:
        errors.append(FieldError("dag_id", value, "the controller cannot backfill itself", "any other DAG"))
        return None
    return value


def _date(value: Any, name: str, errors: list[FieldError]) -> DateTime | None:
    if value is None:
        return None
    try:
        return parse_datetime(value)
    except (ValueError, TypeError, OverflowError):
        errors.append(FieldError(name, value, "is not a date", DATE_ACCEPTED))
        return None


def _dates(value: Any, limits: Limits, errors: list[FieldError]) -> tuple[DateTime, ...] | None:
    if value is None:
        return None
    accepted = (
        f"a non-empty list of at most {limits.max_dates_per_request} distinct dates, each {DATE_ACCEPTED}"
    )
    if not isinstance(value, list) or not value:
        errors.append(FieldError("dates", value, "is not a non-empty list", accepted))
        return None
    if len(value) > limits.max_dates_per_request:
        errors.append(FieldError("dates", f"<{len(value)} dates>", "too many dates", accepted))
        return None
    parsed: list[DateTime] = []
    for item in value:
        try:
            parsed.append(parse_datetime(item))
        except (ValueError, TypeError, OverflowError):
            errors.append(FieldError("dates", item, "contains something that is not a date", accepted))
            return None
    if len(set(parsed)) != len(parsed):
        dup = next(d for d in parsed if parsed.count(d) > 1)
        errors.append(FieldError("dates", dup.isoformat(), "lists the same date twice", accepted))
        return None
    return tuple(sorted(parsed))


def _reprocess(value: Any, errors: list[FieldError]) -> Reprocess:
    if value is None:
        return Reprocess.MISSING
    try:
        return Reprocess.parse(value)
    except (ValueError, TypeError):
        errors.append(FieldError("reprocess", value, "is not a reprocess mode", REPROCESS_ACCEPTED))
        return Reprocess.MISSING


def _bool(value: Any, name: str, default: bool, errors: list[FieldError]) -> bool:
    if value is None:
        return default
    if not isinstance(value, bool):
        errors.append(FieldError(name, value, "is not a boolean", "true or false"))
        return default
    return value


def _positive_int(value: Any, name: str, default: int, maximum: int, errors: list[FieldError]) -> int:
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= maximum:
        errors.append(FieldError(name, value, "is out of range", f"an integer from 1 to {maximum}"))
        return default
    return value


def _conf(value: Any, errors: list[FieldError]) -> dict[str, Any]:
    if value is None:
        return {}
    accepted = f"a JSON object of at most {MAX_CONF_BYTES} bytes"
    if not isinstance(value, dict):
        errors.append(FieldError("conf", value, "is not an object", accepted))
        return {}
    try:
        size = len(json.dumps(value))
    except (TypeError, ValueError, RecursionError):
        errors.append(FieldError("conf", value, "is not JSON", accepted))
        return {}
    if size > MAX_CONF_BYTES:
        errors.append(FieldError("conf", f"<{size} bytes>", "is too large", accepted))
        return {}
    if _depth(value) > MAX_CONF_DEPTH:
        errors.append(
            FieldError("conf", "<deeply nested>", f"nests deeper than {MAX_CONF_DEPTH} levels", accepted)
        )
        return {}
    return value


def _depth(value: Any) -> int:
    """
    >>> _depth({"a": [1, {"b": 2}]}), _depth(3)
    (3, 0)
    """
    if isinstance(value, dict):
        return 1 + max((_depth(v) for v in value.values()), default=0)
    if isinstance(value, list):
        return 1 + max((_depth(v) for v in value), default=0)
    return 0


def _task_regex(value: Any, errors: list[FieldError]) -> str | None:
    if value is None or value == "":
        return None
    accepted = (
        "a Python regular expression matched with re.search against task ids, like Airflow 2's -t, "
        f"at most {MAX_TASK_REGEX_LENGTH} characters"
    )
    if not isinstance(value, str) or len(value) > MAX_TASK_REGEX_LENGTH:
        errors.append(FieldError("task_regex", value, "is not a regular expression", accepted))
        return None
    try:
        re.compile(value)  # matching is bounded in time by include.backfill.selection.matching
    except (re.error, OverflowError, RecursionError) as exc:  # a{99999999999}, deeply nested groups
        errors.append(FieldError("task_regex", value, f"does not compile: {exc}", accepted))
        return None
    return value


def _choice(value: Any, name: str, kind: Any, default: Any, errors: list[FieldError]) -> Any:
    if value is None:
        return default
    try:
        return kind(value)
    except ValueError:
        errors.append(FieldError(name, value, "is not an option", " or ".join(k.value for k in kind)))
        return default


def _missing_runs(value: Any, errors: list[FieldError]) -> MissingRuns:
    if value is None:
        return MissingRuns.SKIP
    try:
        return MissingRuns(value)
    except ValueError:
        errors.append(FieldError("missing_runs", value, "is not an option", MISSING_RUNS_ACCEPTED))
        return MissingRuns.SKIP


def _reason(value: Any, errors: list[FieldError]) -> str:
    if value is None:
        return ""
    accepted = f"text of at most {MAX_REASON_LENGTH} characters, no control characters"
    if not isinstance(value, str):
        errors.append(FieldError("reason", value, "is not text", accepted))
        return ""
    if len(value) > MAX_REASON_LENGTH or _CONTROL_CHARS.search(value):
        errors.append(FieldError("reason", value, "is too long or has control characters", accepted))
        return ""
    return value.strip()


def _iso(value: DateTime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _short_repr(value: Any, limit: int = 80) -> str:
    text = json.dumps(value, default=str) if not isinstance(value, str) else repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
