"""Specification of a backfill request: what the controller's conf may say, and every way it can be wrong."""

from __future__ import annotations

import json
from typing import Any

import pendulum
import pytest

from backfill_controller.contract import CONTROLLER_DAG_ID
from backfill_controller.domain.request import (
    DEFAULT_MAX_ACTIVE_RUNS,
    BackfillRequest,
    FieldError,
    InvalidRequest,
    Reprocess,
    parse_datetime,
    parse_request,
)
from backfill_controller.domain.settings import Limits

NOW = pendulum.datetime(2024, 6, 1, tz="UTC")
LIMITS = Limits(max_dates_per_request=3, max_active_runs=20)
WINDOW = {"dag_id": "sales", "start_date": "2024-01-01", "end_date": "2024-01-31"}
REMOVE = object()
"""An override value meaning: take this key out of the conf."""


def utc(*args: int) -> pendulum.DateTime:
    return pendulum.datetime(*args, tz="UTC")


def parse(conf: dict[str, Any], **limits: int) -> BackfillRequest:
    return parse_request(conf, limits=Limits(**limits) if limits else LIMITS, now=NOW)


def refused(conf: Any) -> tuple[FieldError, ...]:
    with pytest.raises(InvalidRequest) as excinfo:
        parse_request(conf, limits=LIMITS, now=NOW)
    return excinfo.value.errors


def with_changes(base: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    conf = {**base, **changes}
    return {k: v for k, v in conf.items() if v is not REMOVE}


# --- what a valid request becomes ------------------------------------------------------------


def test_a_window_is_parsed_into_utc_bounds() -> None:
    request = parse(WINDOW)

    assert request.target_dag_id == "sales"
    assert (request.start_date, request.end_date) == (utc(2024, 1, 1), utc(2024, 1, 31))
    assert request.dates is None


def test_explicit_dates_are_sorted_oldest_first() -> None:
    request = parse({"dag_id": "sales", "dates": ["2024-01-03", "2024-01-01", "2024-01-02"]})

    assert request.dates == (utc(2024, 1, 1), utc(2024, 1, 2), utc(2024, 1, 3))
    assert (request.start_date, request.end_date) == (None, None)


def test_defaults_apply_to_every_optional_key() -> None:
    request = parse(WINDOW)

    assert request.reprocess is Reprocess.MISSING
    assert request.run_backwards is False
    assert request.dry_run is False
    assert request.max_active_runs == DEFAULT_MAX_ACTIVE_RUNS
    assert request.chunk_size == DEFAULT_MAX_ACTIVE_RUNS
    assert request.max_failed_dates is None
    assert request.conf == {}
    assert request.reason == ""


def test_chunk_size_defaults_to_max_active_runs() -> None:
    assert parse({**WINDOW, "max_active_runs": 4}).chunk_size == 4


def test_keys_set_to_none_mean_the_default() -> None:
    """The UI form sends every key, the unused ones as null."""
    every_key_null = {
        "dag_id": "sales",
        "start_date": None,
        "end_date": None,
        "dates": ["2024-01-01"],
        "reprocess": None,
        "run_backwards": None,
        "max_active_runs": None,
        "chunk_size": None,
        "max_failed_dates": None,
        "conf": None,
        "dry_run": None,
        "reason": None,
    }

    assert parse(every_key_null) == BackfillRequest("sales", dates=(utc(2024, 1, 1),))


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2024-01-01", utc(2024, 1, 1)),
        ("2024-01-01T06:30", utc(2024, 1, 1, 6, 30)),
        ("2024-01-01 06:30:00", utc(2024, 1, 1, 6, 30)),
        ("2024-01-01T06:30:00.250000", pendulum.datetime(2024, 1, 1, 6, 30, 0, 250000, tz="UTC")),
        ("2024-01-01T06:30:00Z", utc(2024, 1, 1, 6, 30)),
        ("2024-01-01T01:30:00-05:00", utc(2024, 1, 1, 6, 30)),
        ("2024-01-01T07:30+0100", utc(2024, 1, 1, 6, 30)),
    ],
    ids=[
        "date only is midnight UTC",
        "naive datetime is UTC",
        "space instead of T",
        "microseconds",
        "Z suffix",
        "negative offset converted to UTC",
        "offset without colon",
    ],
)
def test_dates_are_read_as_utc(text: str, expected: pendulum.DateTime) -> None:
    parsed = parse_datetime(text)

    assert parsed == expected
    assert parsed.utcoffset() == pendulum.duration(0)


@pytest.mark.parametrize(
    "text",
    [
        "2024-01-01T00:00:00+00:00",
        "2024-01-01T05:06+00:00",
        "2024-01-01 05:06:07.5+00:00",
        "2024-12-31T23:59:59.999999+00:00",
        "2024-02-30T00:00:00+00:00",
        "2024-01-01T24:00:00+00:00",
    ],
)
def test_utc_datetimes_as_the_record_keeps_them_read_as_pendulum_reads_them(text: str) -> None:
    def read(parse: Any) -> Any:
        try:
            found = parse(text)
        except Exception:  # noqa: BLE001 - both refuse alike
            return "refused"
        return (found, type(found), found.timezone_name)

    assert read(parse_datetime) == read(lambda t: pendulum.parse(t, tz="UTC", strict=True).in_timezone("UTC"))


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("missing", Reprocess.MISSING),
        ("failed", Reprocess.FAILED),
        ("all", Reprocess.ALL),
        ("none", Reprocess.MISSING),
        ("completed", Reprocess.ALL),
    ],
    ids=["missing", "failed", "all", "native alias none", "native alias completed"],
)
def test_reprocess_modes_and_native_aliases(given: str, expected: Reprocess) -> None:
    assert parse({**WINDOW, "reprocess": given}).reprocess is expected


def test_reason_is_stripped_and_may_span_lines() -> None:
    assert parse({**WINDOW, "reason": "  re-run after outage\n\tticket 42 \n"}).reason == (
        "re-run after outage\n\tticket 42"
    )


def test_end_date_in_the_future_is_allowed() -> None:
    """Dates whose interval has not ended are dropped later, when the window is expanded."""
    assert parse({**WINDOW, "end_date": "2030-01-01"}).end_date == utc(2030, 1, 1)


@pytest.mark.parametrize(
    "when",
    [{"start_date": "2999-01-01", "end_date": "2999-01-02"}, {"dates": ["2999-01-01"]}],
    ids=["window", "dates"],
)
def test_without_now_dates_are_not_checked_against_the_clock(when: dict[str, Any]) -> None:
    """A request accepted before is read again with now=None."""
    request = parse_request({"dag_id": "sales", **when}, limits=LIMITS, now=None)

    assert utc(2999, 1, 1) in (request.start_date, *(request.dates or ()))


# --- every way a request can be refused ----------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "field", "problem", "accepted"),
    [
        ({"strat_date": "2024-01-01"}, "strat_date", "did you mean 'start_date'?", "start_date"),
        ({"colour": "red"}, "colour", "unknown key", "dag_id"),
        ({"dag_id": REMOVE}, "dag_id", "is required", "dag_id of an existing DAG"),
        ({"dag_id": ""}, "dag_id", "is required", "dag_id of an existing DAG"),
        ({"dag_id": "sales/daily"}, "dag_id", "not a valid dag_id", "letters, digits, _ . -"),
        ({"dag_id": 42}, "dag_id", "not a valid dag_id", "letters, digits, _ . -"),
        ({"dag_id": "d" * 251}, "dag_id", "not a valid dag_id", "letters, digits, _ . -"),
        ({"dag_id": CONTROLLER_DAG_ID}, "dag_id", "cannot backfill itself", "any other DAG"),
        ({"start_date": "01/02/2024"}, "start_date", "is not a date", "YYYY-MM-DD"),
        ({"start_date": "2023-02-29"}, "start_date", "is not a date", "YYYY-MM-DD"),
        ({"start_date": 20240101}, "start_date", "is not a date", "YYYY-MM-DD"),
        ({"end_date": "yesterday"}, "end_date", "is not a date", "ISO-8601"),
        ({"start_date": "2024-02-01"}, "start_date", "is after end_date", "start <= end"),
        (
            {"start_date": "2024-07-01", "end_date": "2024-07-31"},
            "start_date",
            "is in the future",
            "a past date",
        ),
        (
            {"start_date": REMOVE, "end_date": REMOVE, "dates": ["2024-01-01", "2024-07-01"]},
            "dates",
            "is in the future",
            "past dates only",
        ),
        ({"dates": ["2024-01-01"]}, "dates", "not both", "one of the two"),
        ({"start_date": REMOVE, "end_date": REMOVE}, "start_date", "no dates requested", "dates list"),
        ({"end_date": REMOVE}, "end_date", "missing", "YYYY-MM-DD"),
        ({"start_date": REMOVE}, "start_date", "missing", "YYYY-MM-DD"),
        (
            {"start_date": REMOVE, "end_date": REMOVE, "dates": []},
            "dates",
            "non-empty list",
            "non-empty list",
        ),
        (
            {"start_date": REMOVE, "end_date": REMOVE, "dates": "2024-01-01"},
            "dates",
            "non-empty list",
            "non-empty list",
        ),
        (
            {"start_date": REMOVE, "end_date": REMOVE, "dates": ["2024-01-01", "soon"]},
            "dates",
            "not a date",
            "YYYY-MM-DD",
        ),
        (
            {"start_date": REMOVE, "end_date": REMOVE, "dates": ["2024-01-01", "2024-01-01T00:00:00+00:00"]},
            "dates",
            "the same date twice",
            "distinct dates",
        ),
        (
            {
                "start_date": REMOVE,
                "end_date": REMOVE,
                "dates": ["2024-01-01", "2024-01-02", "2024-01-03", "2024-01-04"],
            },
            "dates",
            "too many dates",
            "at most 3",
        ),
        ({"reprocess": "everything"}, "reprocess", "not a reprocess mode", "missing, failed, all"),
        ({"reprocess": ["failed"]}, "reprocess", "not a reprocess mode", "missing, failed, all"),
        ({"dry_run": "yes"}, "dry_run", "not a boolean", "true or false"),
        ({"run_backwards": 1}, "run_backwards", "not a boolean", "true or false"),
        ({"max_active_runs": 0}, "max_active_runs", "out of range", "from 1 to 20"),
        ({"max_active_runs": 21}, "max_active_runs", "out of range", "from 1 to 20"),
        ({"max_active_runs": True}, "max_active_runs", "out of range", "an integer"),
        ({"max_active_runs": "5"}, "max_active_runs", "out of range", "an integer"),
        ({"max_active_runs": 4, "chunk_size": 5}, "chunk_size", "larger than max_active_runs", "from 1 to 4"),
        ({"chunk_size": 0}, "chunk_size", "out of range", "from 1 to 20"),
        ({"max_failed_dates": 0}, "max_failed_dates", "out of range", "from 1 to 3"),
        ({"conf": ["a", "b"]}, "conf", "not an object", "a JSON object"),
        ({"conf": {"blob": "x" * 70_000}}, "conf", "too large", "at most 65536 bytes"),
        ({"conf": {"when": object()}}, "conf", "not JSON", "a JSON object"),
        ({"reason": "backfill\x00"}, "reason", "control characters", "no control characters"),
        ({"reason": "\x1b[31mred\x1b[0m"}, "reason", "control characters", "no control characters"),
        ({"reason": "x" * 1001}, "reason", "too long", "at most 1000 characters"),
        ({"reason": 42}, "reason", "not text", "text"),
    ],
    ids=[
        "unknown key suggests the close one",
        "unknown key without a close match",
        "missing dag_id",
        "empty dag_id",
        "dag_id with a slash",
        "dag_id not a string",
        "dag_id longer than 250",
        "controller as its own target",
        "bad date format",
        "no such day (2023 is no leap year)",
        "date not a string",
        "bad end_date",
        "start after end",
        "window in the future",
        "future date in list",
        "both dates and window",
        "neither dates nor window",
        "only start",
        "only end",
        "empty dates list",
        "dates not a list",
        "dates list with a non-date",
        "duplicate dates spelled differently",
        "too many dates",
        "bad reprocess",
        "reprocess not a string",
        "non-bool dry_run",
        "non-bool run_backwards",
        "max_active_runs 0",
        "max_active_runs above the deployment limit",
        "max_active_runs bool",
        "max_active_runs as a string",
        "chunk_size larger than max_active_runs",
        "chunk_size 0",
        "max_failed_dates 0",
        "conf not an object",
        "conf too large",
        "conf not JSON-serialisable",
        "reason with NUL",
        "reason with terminal escape codes",
        "reason too long",
        "reason not text",
    ],
)
def test_invalid_request_names_the_field_and_what_is_accepted(
    changes: dict[str, Any], field: str, problem: str, accepted: str
) -> None:
    errors = refused(with_changes(WINDOW, changes))

    assert [e.field for e in errors] == [field]
    assert problem in errors[0].problem
    assert accepted in errors[0].accepted


@pytest.mark.parametrize(
    ("key", "problem"),
    [("strat_date", "unknown key; did you mean 'start_date'?"), ("colour", "unknown key")],
    ids=["typo of a known key", "nothing close"],
)
def test_unknown_key_problem_reads_as_a_sentence(key: str, problem: str) -> None:
    (error,) = refused({**WINDOW, key: "x"})

    assert error.problem == problem


def test_every_problem_is_reported_at_once() -> None:
    conf = {
        "dag_id": "",
        "start_date": "last tuesday",
        "end_date": "2024-01-31",
        "reprocess": "everything",
        "dry_run": "yes",
        "max_active_runs": 0,
    }

    errors = refused(conf)

    assert [e.field for e in errors] == ["dag_id", "start_date", "reprocess", "dry_run", "max_active_runs"]


def test_the_exception_message_lists_every_problem_with_its_value() -> None:
    with pytest.raises(InvalidRequest) as excinfo:
        parse({**WINDOW, "reprocess": "everything", "dry_run": "yes"})

    message = str(excinfo.value)
    assert "(2 problem(s))" in message
    assert "reprocess: is not a reprocess mode (got 'everything'); accepted: one of missing" in message
    assert "dry_run: is not a boolean (got 'yes'); accepted: true or false" in message


def test_a_long_bad_value_is_shortened_in_the_message() -> None:
    error = FieldError("reason", "x" * 500, "is too long", "short text")

    assert len(str(error)) < 200
    assert "..." in str(error)


def test_a_request_that_is_not_an_object_is_refused() -> None:
    errors = refused(["sales", "2024-01-01"])

    assert [e.field for e in errors] == ["request"]


def test_a_large_conf_is_not_echoed_in_the_error() -> None:
    (error,) = refused({**WINDOW, "conf": {"blob": "x" * 70_000}})

    assert len(str(error)) < 300


# --- derived values and round trip ---------------------------------------------------------


@pytest.mark.parametrize(
    "conf",
    [
        WINDOW,
        {
            "dag_id": "sales.eu-west_1",
            "dates": ["2024-03-10T10:00:00Z", "2024-01-01", "2024-02-29T23:59:59.5-05:00"],
            "reprocess": "completed",
            "run_backwards": True,
            "max_active_runs": 6,
            "chunk_size": 3,
            "max_failed_dates": 2,
            "conf": {"full_refresh": True, "regions": ["eu", "us"]},
            "dry_run": True,
            "reason": " outage 2024-03 ",
        },
    ],
    ids=["window with defaults", "explicit dates with every option"],
)
def test_to_dict_round_trips_through_parse_request(conf: dict[str, Any]) -> None:
    request = parse(conf)

    as_conf = json.loads(json.dumps(request.to_dict()))

    assert parse(as_conf) == request


@pytest.mark.parametrize(
    ("conf", "field"),
    [
        ({"task_regex": "(["}, "task_regex"),
        ({"task_regex": 5}, "task_regex"),
        ({"include_upstream": True}, "include_upstream"),
        ({"include_downstream": True}, "include_downstream"),
        ({"task_regex": "b", "missing_runs": "sometimes"}, "missing_runs"),
    ],
    ids=[
        "regex that does not compile",
        "regex not text",
        "include_upstream without a regex",
        "include_downstream without a regex",
        "unknown missing_runs",
    ],
)
def test_task_subset_keys_are_validated(conf, field) -> None:
    errors = refused({**WINDOW, **conf})
    assert [e.field for e in errors] == [field]


def test_a_task_subset_request_round_trips() -> None:
    request = parse({**WINDOW, "task_regex": "^b$", "include_upstream": True, "missing_runs": "trigger"})
    assert request.is_task_subset and request.include_upstream
    assert parse(request.to_dict()) == request


@pytest.mark.parametrize(
    ("allowed", "denied", "dag_id", "refused_because"),
    [
        ((), ("*_pii",), "sales_pii", "[backfill_controller] denied_dags"),
        (("sales_*",), (), "hr_payroll", "[backfill_controller] allowed_dags"),
        (("sales_*",), ("sales_pii",), "sales_pii", "[backfill_controller] denied_dags"),
    ],
    ids=["denied", "not allowed", "denial wins over allowance"],
)
def test_deployment_policy_refuses_targets(allowed, denied, dag_id, refused_because) -> None:
    limits = Limits(allowed_dags=allowed, denied_dags=denied)
    with pytest.raises(InvalidRequest) as refused:
        parse_request({**WINDOW, "dag_id": dag_id}, limits=limits, now=NOW)
    (error,) = refused.value.errors
    assert error.field == "dag_id" and refused_because in str(error)


def test_an_allowed_target_passes_the_policy() -> None:
    limits = Limits(allowed_dags=("sales_*",), denied_dags=("*_pii",))
    assert (
        parse_request({**WINDOW, "dag_id": "sales_daily"}, limits=limits, now=NOW).target_dag_id
        == "sales_daily"
    )


def test_deeply_nested_conf_is_refused() -> None:
    deep: dict = {}
    node = deep
    for _ in range(40):
        node["x"] = {}
        node = node["x"]
    (error,) = refused({**WINDOW, "conf": deep})
    assert error.field == "conf" and "nests deeper" in str(error)


@pytest.mark.parametrize(
    "text",
    ["{{ var.value.secret }}", "{% for x in range(10**9) %}{% endfor %}"],
    ids=["jinja expression", "jinja statement"],
)
def test_template_syntax_is_kept_as_inert_text(text) -> None:
    request = parse({**WINDOW, "reason": text, "conf": {"note": text}})
    assert request.reason == text and request.conf == {"note": text}
