"""A backfill request: the controller's conf, parsed once into a frozen, validated value.

Every problem is reported as a :class:`FieldError` that names the conf key, the bad value and
what would be accepted; :func:`parse_request` collects all of them before raising, so a caller
fixes a request in one round trip. The keys, their types, defaults and limits are declared in
:mod:`backfill_controller.domain.keys`; the checks here follow the declaration.
"""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

import pendulum
from pendulum import DateTime

from backfill_controller.contract import CONTROLLER_DAG_ID
from backfill_controller.domain.keys import (
    DAG_ID_CHARACTERS,
    DATE_PATTERN,
    DEFAULT_MAX_ACTIVE_RUNS,
    KEY,
    KEYS,
    MAX_DAG_ID_LENGTH,
    MissingRuns,
    OnOverlap,
    Reprocess,
)
from backfill_controller.domain.settings import NOTIFIERS, Limits

#: Every key the controller's conf may hold (:data:`backfill_controller.domain.keys.KEYS`).
CONF_KEYS: tuple[str, ...] = tuple(key.name for key in KEYS)

DAG_ID_PATTERN = re.compile(rf"^{DAG_ID_CHARACTERS}{{1,{MAX_DAG_ID_LENGTH}}}$")
_DATE_RE = re.compile(DATE_PATTERN)
_CONTROL_CHARS = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
DATE_ACCEPTED = "YYYY-MM-DD or an ISO-8601 datetime such as 2024-01-31T06:00:00+00:00 (naive means UTC)"

MAX_CONF_BYTES = 65_536
MAX_CONF_DEPTH = 16


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
        """The request as JSON-ready conf (the inverse of :func:`parse_request`), in :data:`KEYS` order."""
        return {key.name: _json_ready(getattr(self, _attribute(key.name))) for key in KEYS}


def _attribute(key: str) -> str:
    """The :class:`BackfillRequest` field holding conf key ``key``."""
    return "target_dag_id" if key == "dag_id" else key


def _json_ready(value: Any) -> Any:
    if isinstance(value, DateTime):
        return value.isoformat()
    if isinstance(value, StrEnum):
        return value.value
    if isinstance(value, tuple):
        return [_json_ready(item) for item in value]
    if isinstance(value, Mapping):
        return dict(value)
    return value


def parse_datetime(text: str) -> DateTime:
    """Parse ``YYYY-MM-DD`` or an ISO-8601 datetime; naive values are UTC.

    >>> parse_datetime("2024-02-29").isoformat()
    '2024-02-29T00:00:00+00:00'
    >>> parse_datetime("2024-03-10T02:30:00-05:00").isoformat()
    '2024-03-10T07:30:00+00:00'
    """
    if not isinstance(text, str) or not _DATE_RE.match(text.strip()):
        raise ValueError(f"not a date: {text!r}")
    if text.endswith("+00:00"):  # as the record keeps every date: read without pendulum's parser
        try:
            at = datetime.fromisoformat(text)
        except ValueError:
            pass
        else:
            fields = (at.year, at.month, at.day, at.hour, at.minute, at.second, at.microsecond)
            return DateTime(*fields, tzinfo=pendulum.UTC)
    parsed = pendulum.parse(text.strip(), tz="UTC", strict=True)
    if not isinstance(parsed, DateTime):
        raise ValueError(f"not a date: {text!r}")
    return parsed.in_timezone("UTC")


def parse_request(
    conf: Mapping[str, Any],
    *,
    limits: Limits,
    now: DateTime | None,
    controller_dag_id: str = CONTROLLER_DAG_ID,
) -> BackfillRequest:
    """Validate the controller's conf and return the request it describes.

    Keys set to ``None`` mean "use the default" (the UI form sends every key). No requested date
    may be after ``now``; ``now=None`` skips that check, for a request accepted before and read
    again. Raises :class:`InvalidRequest` listing every problem found, in the order checked.
    """
    if not isinstance(conf, Mapping):
        raise InvalidRequest([FieldError("request", conf, "the request must be a JSON object", "an object")])
    errors = _unknown_keys(conf)
    read = _Reader(conf, limits, errors)
    values: dict[str, Any] = {"dag_id": _target(conf.get("dag_id"), controller_dag_id, limits, errors)}
    values |= _when(conf, limits, now, errors)
    values["reprocess"] = _reprocess(conf.get("reprocess"), errors)
    values |= read.each("run_backwards", "dry_run")
    values |= _pace(read)
    values["conf"] = _conf(conf.get("conf"), errors)
    values["reason"] = _reason(conf.get("reason"), errors)
    values["task_regex"] = _task_regex(conf.get("task_regex"), errors)
    values |= read.each("include_upstream", "include_downstream")
    values["missing_runs"] = MissingRuns(read("missing_runs"))
    values["segment_size"] = read("segment_size")
    values["on_overlap"] = OnOverlap(read("on_overlap"))
    values["timeout_minutes"] = read("timeout_minutes")
    values["notify"] = _notify(conf.get("notify"), limits, errors)
    if conf.get("task_regex") is None:
        for name in ("include_upstream", "include_downstream"):
            if values[name]:
                errors.append(
                    FieldError(name, values[name], "only applies with task_regex", "false or a task_regex")
                )
    if errors:
        raise InvalidRequest(errors)
    return BackfillRequest(**{_attribute(name): value for name, value in values.items()})


def _unknown_keys(conf: Mapping[str, Any]) -> list[FieldError]:
    errors = []
    for key in conf:
        if key not in KEY:
            close = difflib.get_close_matches(str(key), CONF_KEYS, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            errors.append(FieldError(str(key), conf[key], f"unknown key{hint}", ", ".join(CONF_KEYS)))
    return errors


_DECLARED: Any = object()
"""A default meaning: the key's declared default."""


class _Reader:
    """Reads keys of one conf with the checks their declaration implies (:meth:`Key.problem`).

    A key that is null or absent, or refused (the problem is added to ``errors``), reads as its
    declared default or the one given.
    """

    def __init__(self, conf: Mapping[str, Any], limits: Limits, errors: list[FieldError]):
        self.conf, self.limits, self.errors = conf, limits, errors

    def __call__(self, name: str, default: Any = _DECLARED) -> Any:
        key, value = KEY[name], self.conf.get(name)
        fallback = key.default if default is _DECLARED else default
        if value is None:
            return fallback
        if (found := key.problem(value, self.limits)) is not None:
            self.errors.append(FieldError(name, value, *found))
            return fallback
        return value

    def each(self, *names: str) -> dict[str, Any]:
        return {name: self(name) for name in names}


def _target(value: Any, controller_dag_id: str, limits: Limits, errors: list[FieldError]) -> str | None:
    target = _dag_id(value, controller_dag_id, errors)
    if target is not None and (refusal := limits.refusal(target)):
        errors.append(
            FieldError("dag_id", target, f"this deployment forbids backfilling it: {refusal}", "another DAG")
        )
        return None
    return target


def _when(
    conf: Mapping[str, Any], limits: Limits, now: DateTime | None, errors: list[FieldError]
) -> dict[str, Any]:
    """``start_date``, ``end_date`` and ``dates``, each checked, then checked together."""
    start = _date(conf.get("start_date"), "start_date", errors)
    end = _date(conf.get("end_date"), "end_date", errors)
    dates = _dates(conf.get("dates"), limits, errors)
    _check_one_way(conf, dates, errors)
    if start is not None and end is not None and start > end:
        errors.append(
            FieldError(
                "start_date", conf.get("start_date"), f"is after end_date {end.isoformat()}", "start <= end"
            )
        )
    if now is not None and start is not None and start > now:
        errors.append(
            FieldError(
                "start_date",
                conf.get("start_date"),
                f"is in the future (now is {now.isoformat()})",
                "a past date",
            )
        )
    future = [d for d in dates or () if now is not None and d > now]
    if future:
        errors.append(FieldError("dates", future[0].isoformat(), "is in the future", "past dates only"))
    return {"start_date": start, "end_date": end, "dates": dates}


def _check_one_way(
    conf: Mapping[str, Any], dates: tuple[DateTime, ...] | None, errors: list[FieldError]
) -> None:
    """Either a whole window or a list of dates."""
    start, end = conf.get("start_date"), conf.get("end_date")
    window_given = start is not None or end is not None
    if dates is not None and window_given:
        errors.append(
            FieldError(
                "dates",
                conf.get("dates"),
                "give either dates or start_date/end_date, not both",
                "one of the two",
            )
        )
    elif dates is None and not window_given and "dates" not in {e.field for e in errors}:
        errors.append(
            FieldError(
                "start_date", None, "no dates requested", "start_date and end_date, or a non-empty dates list"
            )
        )
    elif dates is None and window_given:
        if start is None:
            errors.append(FieldError("start_date", None, "missing (end_date was given)", DATE_ACCEPTED))
        if end is None:
            errors.append(FieldError("end_date", None, "missing (start_date was given)", DATE_ACCEPTED))


def _pace(read: _Reader) -> dict[str, Any]:
    """``max_active_runs``, ``chunk_size`` (at most, and by default, the former), ``max_failed_dates``."""
    max_active_runs = read("max_active_runs")
    chunk_size = read("chunk_size", default=max_active_runs)
    if chunk_size > max_active_runs and "chunk_size" not in {e.field for e in read.errors}:
        read.errors.append(
            FieldError(
                "chunk_size",
                chunk_size,
                f"is larger than max_active_runs ({max_active_runs}); a chunk holds at most that many dates",
                f"an integer from 1 to {max_active_runs}",
            )
        )
    return {
        "max_active_runs": max_active_runs,
        "chunk_size": chunk_size,
        "max_failed_dates": read("max_failed_dates"),
    }


def _notify(value: Any, limits: Limits, errors: list[FieldError]) -> tuple[str, ...] | None:
    notifiers = KEY["notify"].options(limits)
    known = ", ".join(notifiers) or f"none: this deployment defines no notifiers ({NOTIFIERS.option})"
    accepted = f"null (the deployment default), [] (nobody), or names from: {known}"
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        errors.append(FieldError("notify", value, "is not a list of notifier names", accepted))
        return None
    for name in value:
        if name not in notifiers:
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
    most = KEY["dates"].upper(limits)
    accepted = f"a non-empty list of at most {most} distinct dates, each {DATE_ACCEPTED}"
    if not isinstance(value, list) or not value:
        errors.append(FieldError("dates", value, "is not a non-empty list", accepted))
        return None
    if most is not None and len(value) > most:
        errors.append(FieldError("dates", f"<{len(value)} dates>", "too many dates", accepted))
        return None
    parsed: list[DateTime] = []
    for item in value:
        try:
            parsed.append(parse_datetime(item))
        except (ValueError, TypeError, OverflowError):
            errors.append(FieldError("dates", item, "contains something that is not a date", accepted))
            return None
    seen: set[DateTime] = set()
    for day in parsed:  # one pass: the first date listed twice
        if day in seen:
            errors.append(FieldError("dates", day.isoformat(), "lists the same date twice", accepted))
            return None
        seen.add(day)
    return tuple(sorted(parsed))


def _reprocess(value: Any, errors: list[FieldError]) -> Reprocess:
    if value is None:
        return Reprocess.MISSING
    try:
        return Reprocess.parse(value)
    except (ValueError, TypeError):
        errors.append(FieldError("reprocess", value, "is not a reprocess mode", KEY["reprocess"].accepted))
        return Reprocess.MISSING


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
    longest = _longest("task_regex")
    accepted = (
        "a Python regular expression matched with re.search against task ids, like Airflow 2's -t, "
        f"at most {longest} characters"
    )
    if not isinstance(value, str) or len(value) > longest:
        errors.append(FieldError("task_regex", value, "is not a regular expression", accepted))
        return None
    try:
        re.compile(value)  # matching is bounded in time by backfill_controller.domain.selection.matching
    except (re.error, OverflowError, RecursionError) as exc:  # a{99999999999}, deeply nested groups
        errors.append(FieldError("task_regex", value, f"does not compile: {exc}", accepted))
        return None
    return value


def _reason(value: Any, errors: list[FieldError]) -> str:
    if value is None:
        return ""
    longest = _longest("reason")
    accepted = f"text of at most {longest} characters, no control characters"
    if not isinstance(value, str):
        errors.append(FieldError("reason", value, "is not text", accepted))
        return ""
    if len(value) > longest or _CONTROL_CHARS.search(value):
        errors.append(FieldError("reason", value, "is too long or has control characters", accepted))
        return ""
    return value.strip()


def _longest(name: str) -> int:
    """The declared maximum length of text key ``name`` (a fixed number, not a deployment limit)."""
    maximum = KEY[name].maximum
    assert isinstance(maximum, int), name
    return maximum


def _short_repr(value: Any, limit: int = 80) -> str:
    text = json.dumps(value, default=str) if not isinstance(value, str) else repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
