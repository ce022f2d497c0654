"""The front door's checks that need no live target: run ids, and rights before anything is parsed."""

from __future__ import annotations

from unittest import mock

import pytest
from fastapi import HTTPException

from backfill_controller.server import access, front_door


@pytest.fixture
def may_trigger():
    with mock.patch.object(access, "missing_rights", return_value=[]):
        yield


@pytest.mark.parametrize("run_id", [".", "..", "..."], ids=["dot", "two dots", "three dots"])
def test_a_run_id_of_dots_only_is_refused_naming_the_field(may_trigger, run_id):
    with pytest.raises(HTTPException) as refused:
        front_door.start_backfill({"dag_id": "sales"}, "ann", mock.Mock(), mock.Mock(), run_id=run_id)
    assert refused.value.status_code == 422
    (error,) = refused.value.detail["errors"]
    assert (error["field"], error["value"], error["problem"]) == ("run_id", run_id, "is only dots")


def test_a_caller_who_may_not_read_the_target_is_refused_before_the_request_is_parsed():
    forbidden = access.Forbidden("ann may not backfill DAG 'secret': missing right GET on the DAG", ())
    conf = {"dag_id": "secret", "dates": ["not a date"] * 10_000}
    with (
        mock.patch.object(access, "require", side_effect=forbidden) as require,
        mock.patch.object(front_door, "parse") as parse,
        pytest.raises(HTTPException) as refused,
    ):
        front_door.plan(conf, "ann", mock.Mock(), read_first=True)
    assert refused.value.status_code == 403
    require.assert_called_once()
    parse.assert_not_called()
