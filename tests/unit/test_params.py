"""Specification of checking a backfill's conf against the target DAG's Params, before any run exists."""

from __future__ import annotations

from typing import Any

import pytest

from backfill_controller.domain.params import conf_errors

#: Shaped as ``GET /api/v2/dags/{dag_id}/details`` lists a DAG's params.
TARGET_PARAMS: dict[str, Any] = {
    "batch_size": {"value": 100, "schema": {"type": "integer", "minimum": 1}, "description": None},
    "mode": {
        "value": "full",
        "schema": {"type": "string", "enum": ["full", "incremental"], "title": "Mode"},
        "description": "How much to reload",
    },
    "customer_id": {"value": None, "schema": {"type": "integer"}, "description": None},
    "note": {"value": None, "schema": {"type": ["null", "string"]}, "description": None},
    "anything": {"value": None, "schema": {}, "description": None},
    "as_of": {"value": "2024-01-01", "schema": {"type": "string", "format": "date"}, "description": None},
}
GOOD = {"customer_id": 7}


def test_a_good_conf_has_no_errors() -> None:
    assert conf_errors({**GOOD, "batch_size": 500, "mode": "incremental", "note": "x"}, TARGET_PARAMS) == []


def test_params_left_out_take_their_valid_defaults() -> None:
    assert conf_errors(GOOD, TARGET_PARAMS) == []


def test_keys_the_target_does_not_declare_pass() -> None:
    assert conf_errors({**GOOD, "extra": [1, 2], "another": None}, TARGET_PARAMS) == []


@pytest.mark.parametrize(
    ("changes", "field", "accepted"),
    [
        ({"batch_size": "ten"}, "conf.batch_size", "type=integer"),
        ({"batch_size": 0}, "conf.batch_size", "minimum=1"),
        ({"mode": "partial"}, "conf.mode", "enum=['full', 'incremental']"),
        ({"as_of": "2024-02-30"}, "conf.as_of", "format=date"),
        ({"customer_id": None}, "conf.customer_id", "type=integer"),
    ],
    ids=["wrong type", "below minimum", "not in enum", "not a date format", "required param given as null"],
)
def test_a_bad_value_names_the_param_and_its_schema(
    changes: dict[str, Any], field: str, accepted: str
) -> None:
    errors = conf_errors({**GOOD, **changes}, TARGET_PARAMS)

    assert [(e.field, e.value) for e in errors] == [(field, *changes.values())]
    assert accepted in errors[0].accepted


def test_the_schema_title_and_description_are_not_part_of_what_is_accepted() -> None:
    (error,) = conf_errors({**GOOD, "mode": "partial"}, TARGET_PARAMS)

    assert error.accepted == "type=string, enum=['full', 'incremental']"


def test_a_required_param_left_out_is_reported() -> None:
    """value None with a schema that does not allow null: the target cannot run without it."""
    (error,) = conf_errors({}, TARGET_PARAMS)

    assert error.field == "conf.customer_id"
    assert error.problem == "the target requires this param"
    assert error.accepted == "type=integer"


def test_every_bad_param_is_reported() -> None:
    errors = conf_errors({"batch_size": 0, "mode": "partial"}, TARGET_PARAMS)

    assert [e.field for e in errors] == ["conf.batch_size", "conf.mode", "conf.customer_id"]


def test_a_target_without_params_accepts_any_conf() -> None:
    assert conf_errors({"whatever": 1}, {}) == []
