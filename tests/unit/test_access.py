"""Who may backfill what: the questions :mod:`backfill_controller.server.access` asks the auth manager."""

from __future__ import annotations

from unittest import mock

import pytest

from backfill_controller.domain.rights import Right
from backfill_controller.server import access


class Manager:
    """An auth manager that grants what ``allowed`` lists, as ``(method, entity name or None)``."""

    def __init__(self, allowed):
        self.allowed = set(allowed)
        self.asked = []

    def is_authorized_dag(self, *, method, access_entity, details, user):
        self.asked.append((method, access_entity.name if access_entity else None, details.id, user))
        return (method, access_entity.name if access_entity else None) in self.allowed


@pytest.fixture
def manager(request):
    fake = Manager(request.param)
    with mock.patch("airflow.api_fastapi.app.get_auth_manager", return_value=fake):
        yield fake


@pytest.mark.parametrize("manager", [[("GET", None), ("GET", "RUN")]], indirect=True)
def test_each_right_is_asked_about_the_target_for_that_user(manager):
    missing = access.missing_rights("ana", "sales", [Right.READ_DAG, Right.READ_RUNS, Right.CREATE_RUNS])
    assert missing == [Right.CREATE_RUNS]
    assert manager.asked == [
        ("GET", None, "sales", "ana"),
        ("GET", "RUN", "sales", "ana"),
        ("POST", "RUN", "sales", "ana"),
    ]


@pytest.mark.parametrize("manager", [[("GET", None)]], indirect=True)
def test_a_refusal_names_the_user_the_dag_and_every_missing_right_only(manager):
    user = mock.Mock(**{"get_name.return_value": "ana"})
    with pytest.raises(access.Forbidden) as refused:
        access.require(user, "sales", [Right.READ_DAG, Right.CREATE_RUNS, Right.CLEAR_RUNS])
    assert str(refused.value) == (
        "ana may not backfill DAG 'sales': missing right POST on its DAG runs, PUT on its DAG runs"
    )
    assert refused.value.missing == (Right.CREATE_RUNS, Right.CLEAR_RUNS)


@pytest.mark.parametrize("manager", [[]], indirect=True)
def test_nothing_granted_means_every_right_missing(manager):
    assert access.missing_rights(None, "x", list(Right)) == list(Right)
