"""Specification of the request contract: each key is declared once, and the trigger form, the
request parser and the ``backfill`` command agree with its declaration.

Every test here is parametrized from :data:`backfill_controller.domain.keys.KEYS`, so a new key is
tested by declaring it.
"""

from __future__ import annotations

import dataclasses
import difflib
from typing import Any

import pendulum
import pytest

from backfill_controller.cli import flags
from backfill_controller.cli.conf import to_conf
from backfill_controller.cli.flags import build_parser
from backfill_controller.domain.keys import KEY, KEYS, SECTIONS, Flag, Key, form_params
from backfill_controller.domain.request import (
    CONF_KEYS,
    BackfillRequest,
    FieldError,
    InvalidRequest,
    parse_request,
)
from backfill_controller.domain.settings import Limits

NOW = pendulum.datetime(2024, 6, 1, tz="UTC")
LIMITS = Limits(max_dates_per_request=3, max_active_runs=20, notifiers=("ops", "data-team"))
#: The keys that make up a window of dates; a request gives them or ``dates``.
WINDOW_KEYS = ("start_date", "end_date")
WINDOW = {"dag_id": "sales", "start_date": "2024-01-01", "end_date": "2024-01-03"}
LISTED = {"dag_id": "sales", "dates": ["2024-01-01"]}
#: A value of each JSON type, given where a key of another type is expected.
OTHER_TYPE = {"string": 42, "integer": "5", "boolean": "yes", "array": "2024-01-01", "object": ["a"]}
FLAGGED = [key for key in KEYS if key.flag is not None]


def request_with(name: str, value: Any) -> dict[str, Any]:
    """A valid request (a window when ``name`` is part of one, else a list of dates), ``name`` set."""
    dates = WINDOW if name in WINDOW_KEYS else LISTED
    return {**dates, "max_active_runs": LIMITS.max_active_runs, name: value}


def problems(conf: dict[str, Any]) -> list[FieldError]:
    try:
        parse_request(conf, limits=LIMITS, now=NOW)
    except InvalidRequest as exc:
        return list(exc.errors)
    return []


def sized(key: Key, size: int) -> Any:
    """A value of ``key``'s type whose size (an integer's value, a length) is ``size``."""
    if key.type == "integer":
        return size
    if key.type == "array":
        return [pendulum.datetime(2020, 1, 1).add(days=i).to_date_string() for i in range(size)]
    return "d" * size


def form_accepts(key: Key, value: Any) -> bool:
    from airflow.sdk import Param
    from airflow.sdk.exceptions import ParamValidationError

    try:
        Param(**key.param(LIMITS)).resolve(value)
    except ParamValidationError:
        return False
    return True


def attribute(key: Key) -> str:
    return "target_dag_id" if key.name == "dag_id" else key.name


def ids(keys: list[Key]) -> list[str]:
    return [key.name for key in keys]


# --- one declaration -------------------------------------------------------------------------


def test_the_request_holds_exactly_the_declared_keys_in_their_order() -> None:
    assert tuple(KEY) == CONF_KEYS
    assert [f.name for f in dataclasses.fields(BackfillRequest)] == [attribute(key) for key in KEYS]
    request = parse_request(request_with("dry_run", True), limits=LIMITS, now=NOW)
    assert list(request.to_dict()) == list(CONF_KEYS)


@pytest.mark.parametrize("key", KEYS, ids=ids(list(KEYS)))
def test_each_declaration_is_complete(key: Key) -> None:
    assert key.type in OTHER_TYPE
    assert key.title and key.help and key.section in SECTIONS
    assert set(key.labels) <= set(key.options(LIMITS))
    assert key.upper(LIMITS) is None or isinstance(key.upper(LIMITS), int)


# --- the parser ------------------------------------------------------------------------------


def test_every_key_may_be_null_except_the_required_ones() -> None:
    """The trigger form sends every key, the ones left empty as null."""
    conf = {key.name: None for key in KEYS} | LISTED

    assert parse_request(conf, limits=LIMITS, now=NOW) == BackfillRequest(
        "sales", dates=(pendulum.datetime(2024, 1, 1, tz="UTC"),)
    )


@pytest.mark.parametrize(
    "key", [k for k in KEYS if not k.required], ids=ids([k for k in KEYS if not k.required])
)
def test_null_means_the_declared_default(key: Key) -> None:
    conf = {**(WINDOW if key.name == "dates" else LISTED), key.name: None}

    request = parse_request(conf, limits=LIMITS, now=NOW)

    if key.default is not None:
        assert getattr(request, attribute(key)) == key.default


@pytest.mark.parametrize("key", KEYS, ids=ids(list(KEYS)))
def test_a_value_of_another_type_is_refused_naming_the_key(key: Key) -> None:
    errors = problems(request_with(key.name, OTHER_TYPE[key.type]))

    assert [e.field for e in errors] == [key.name]


@pytest.mark.parametrize(
    "key", [k for k in KEYS if k.type == "integer"], ids=ids([k for k in KEYS if k.type == "integer"])
)
def test_a_boolean_is_no_integer(key: Key) -> None:
    assert [e.field for e in problems(request_with(key.name, True))] == [key.name]


#: The JSON Schema word of each bound, by type.
BOUND_WORDS = {
    "integer": {"minimum": "minimum", "maximum": "maximum"},
    "string": {"minimum": "minLength", "maximum": "maxLength"},
    "array": {"minimum": "minItems", "maximum": "maxItems"},
}
BOUNDS = [
    (key, bound, size, fits)
    for key in KEYS
    for bound, limit, past in (("minimum", key.minimum, -1), ("maximum", key.upper(LIMITS), 1))
    if limit is not None
    for size, fits in ((limit, True), (limit + past, False))
]


@pytest.mark.parametrize(
    ("key", "bound", "size", "fits"),
    BOUNDS,
    ids=[f"{key.name} {size} {'fits' if fits else 'refused'}" for key, _, size, fits in BOUNDS],
)
def test_each_limit_holds_in_the_parser_and_the_form(key: Key, bound: str, size: int, fits: bool) -> None:
    value = sized(key, size)

    assert [e.field for e in problems(request_with(key.name, value))] == ([] if fits else [key.name])
    if BOUND_WORDS[key.type][bound] not in key.form_omits:
        assert form_accepts(key, value) is fits


CHOICES = [(key, choice) for key in KEYS for choice in key.options(LIMITS)]


def given(key: Key, choice: str) -> Any:
    return [choice] if key.type == "array" else choice


@pytest.mark.parametrize(("key", "choice"), CHOICES, ids=[f"{key.name}={choice}" for key, choice in CHOICES])
def test_every_choice_is_accepted_by_the_parser_and_the_form(key: Key, choice: str) -> None:
    assert problems(request_with(key.name, given(key, choice))) == []
    assert form_accepts(key, given(key, choice))


WITH_CHOICES = [key for key in KEYS if key.options(LIMITS)]


@pytest.mark.parametrize("key", WITH_CHOICES, ids=ids(WITH_CHOICES))
def test_a_value_outside_the_choices_is_refused_naming_each_choice(key: Key) -> None:
    errors = problems(request_with(key.name, given(key, "sometimes")))

    assert [e.field for e in errors] == [key.name]
    assert all(choice in errors[0].accepted for choice in key.options(LIMITS))
    assert not form_accepts(key, given(key, "sometimes"))


@pytest.mark.parametrize("key", KEYS, ids=ids(list(KEYS)))
def test_a_misspelt_key_is_refused_naming_the_key_meant(key: Key) -> None:
    typo = key.name[:-1]
    assert difflib.get_close_matches(typo, CONF_KEYS, n=1) == [key.name], "pick another typo"

    (error,) = problems(request_with("dry_run", False) | {typo: 1})

    assert (error.field, error.problem) == (typo, f"unknown key; did you mean {key.name!r}?")


# --- the trigger form ------------------------------------------------------------------------


def test_the_form_shows_every_key_once_section_by_section() -> None:
    params = form_params(LIMITS)

    assert set(params) == set(CONF_KEYS)
    sections = [params[name]["section"] for name in params]
    assert sections == sorted(sections, key=SECTIONS.index)


@pytest.mark.parametrize("key", KEYS, ids=ids(list(KEYS)))
def test_the_form_field_of_each_key(key: Key) -> None:
    param = form_params(LIMITS)[key.name]

    assert (param["title"], param["section"], param["description"]) == (
        key.title,
        key.section,
        key.describe(LIMITS),
    )
    assert ("default" not in param) is key.required
    assert ("null" in param["type"]) is key.nullable
    if not key.required:
        assert form_accepts(key, key.default)


# --- the backfill command --------------------------------------------------------------------

COMMAND = ("sales", "-s", "2024-01-01", "-t", "^load")


def flag_value(key: Key) -> tuple[list[str], Any]:
    """Command-line words giving ``key`` a value, and that value."""
    if key.type == "boolean":
        return [], True
    if key.type == "integer":
        return ["3"], 3
    options = key.options(LIMITS)
    return ([options[-1]], options[-1]) if options else (["x"], "x")


@pytest.mark.parametrize("key", FLAGGED, ids=ids(FLAGGED))
@pytest.mark.parametrize("spelling", ["hyphens", "underscores"])
def test_each_key_flag_sets_its_key_to_the_value_given(key: Key, spelling: str) -> None:
    assert key.flag is not None
    words, value = flag_value(key)
    flag = key.flag.names[-1]
    if spelling == "underscores":
        flag = "--" + flag[2:].replace("-", "_")

    conf = to_conf(build_parser().parse_args([*COMMAND, flag, *words]))

    assert conf[key.name] == value


@pytest.mark.parametrize("key", FLAGGED, ids=ids(FLAGGED))
def test_each_key_flag_is_documented_in_the_help(key: Key, monkeypatch: pytest.MonkeyPatch) -> None:
    assert key.flag is not None
    monkeypatch.setenv("COLUMNS", "1000")  # one line per option: help text is not wrapped

    text = " ".join(build_parser().format_help().split())

    assert all(f" {name}" in text for name in key.flag.names)
    assert " ".join(key.flag.help.split()) in text


REFUSED_BY_THE_FLAG = [key for key in FLAGGED if key.type == "integer" or key.options(LIMITS)]


@pytest.mark.parametrize("key", REFUSED_BY_THE_FLAG, ids=ids(REFUSED_BY_THE_FLAG))
def test_a_flag_refuses_a_value_its_key_never_takes(key: Key, capsys: pytest.CaptureFixture[str]) -> None:
    assert key.flag is not None
    bad = "0" if key.type == "integer" else "sometimes"

    with pytest.raises(SystemExit) as exit_info:
        build_parser().parse_args([*COMMAND, key.flag.names[-1], bad])

    assert exit_info.value.code == 2
    assert key.flag.names[-1] in capsys.readouterr().err


def test_a_new_key_with_a_flag_is_on_the_command_line_by_its_declaration(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    new = Key("priority", "integer", "Priority", "How urgent.", "How", minimum=1, maximum=5)
    new = dataclasses.replace(new, flag=Flag(("--priority",), "how urgent", "N"))
    monkeypatch.setattr(flags, "KEYS", (*KEYS, new))
    monkeypatch.setattr(flags, "KEY", {**KEY, new.name: new})

    assert to_conf(build_parser().parse_args([*COMMAND, "--priority", "2"]))["priority"] == 2
    assert "--priority N how urgent" in " ".join(build_parser().format_help().split())
