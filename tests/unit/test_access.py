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


@pytest.fixture
def fab_users():
    """FAB's user table on an in-memory SQLite: ``add(name)`` stores a user and returns its id."""
    from contextlib import contextmanager

    from airflow.providers.fab.auth_manager.models import User
    from sqlalchemy import create_engine
    from sqlalchemy.orm import Session

    engine = create_engine("sqlite://")
    User.metadata.create_all(engine)

    @contextmanager
    def create_session():
        with Session(engine) as session:
            yield session

    def add(name: str) -> int:
        with Session(engine) as session:
            user = User(username=name, first_name=name, last_name=name, email=f"{name}@x", active=True)
            session.add(user)
            session.commit()
            return int(user.id)

    with mock.patch("airflow.utils.session.create_session", create_session):
        yield add


def test_fab_holds_no_two_case_variants_of_a_name(fab_users):
    from sqlalchemy.exc import IntegrityError

    fab_users("bea")
    with pytest.raises(IntegrityError):
        fab_users("Bea")


@pytest.mark.parametrize(
    "stored, asked, found",
    [(["bea"], "bea", "bea"), (["Bea"], "bea", "Bea"), (["bea"], "rita", None)],
    ids=["exact name", "a case variant: that user, as FAB finds it", "no such user"],
)
def test_a_fab_user_is_the_one_fab_finds_by_that_name(fab_users, stored, asked, found):
    ids = {name: fab_users(name) for name in stored}
    manager = mock.Mock(**{"deserialize_user.side_effect": lambda claims: claims["sub"]})
    expected = str(ids[found]) if found else None
    assert access._fab_user(manager, asked) == expected
