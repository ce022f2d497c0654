"""Who may backfill what: the requester's rights on the target, asked of the deployment's auth manager.

Runs in the api-server (the plugin's endpoints and the cancel listener), never in a task: a
task's own identity is the controller's, not the requester's. The rights a request needs are
:func:`backfill_controller.domain.rights.rights_needed`; this module asks the auth manager whether a user
has them, exactly as Airflow's own endpoints do (``is_authorized_dag`` with a ``DagAccessEntity``
and ``DagDetails``).

A controller run created through the UI or the REST API records its authenticated requester as
``triggering_user_name`` (a run triggered by another DAG's task inherits that DAG run's); nobody
can change it afterwards. :func:`user_named` turns that name back into a user the auth manager can
be asked about, where the auth manager can do that: SimpleAuthManager (its configured users and
roles) and FAB (its user table). Any other auth manager fails closed: such a request must come
through the front door (``POST /backfill-controller/api/backfills``), where the caller's own
token identifies them.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

from fastapi import HTTPException, Request

from backfill_controller.contract import URL_PREFIX
from backfill_controller.domain.rights import Right
from backfill_controller.domain.settings import api_conn_id

log = logging.getLogger(__name__)

FRONT_DOOR = f"POST {URL_PREFIX}/api/backfills"


class Forbidden(Exception):
    """The requester lacks a right; the message names the missing rights and nothing of the target."""

    def __init__(self, message: str, missing: Iterable[Right] = ()):
        super().__init__(message)
        self.missing = tuple(missing)


def missing_rights(user: Any, dag_id: str, rights: Iterable[Right]) -> list[Right]:
    """The ``rights`` on ``dag_id`` that ``user`` does not have, in the order given."""
    from airflow.api_fastapi.app import get_auth_manager
    from airflow.api_fastapi.auth.managers.models.resource_details import DagAccessEntity, DagDetails

    manager = get_auth_manager()
    details = DagDetails(id=dag_id, team_name=_team_name(dag_id))
    missing = []
    for right in rights:
        entity = DagAccessEntity[right.entity] if right.entity else None
        if not manager.is_authorized_dag(
            method=right.method,  # type: ignore[arg-type]
            access_entity=entity,
            details=details,
            user=user,
        ):
            missing.append(right)
    return missing


def require(user: Any, dag_id: str, rights: Iterable[Right]) -> None:
    """Raise :class:`Forbidden` unless ``user`` has every right in ``rights`` on ``dag_id``."""
    if missing := missing_rights(user, dag_id, rights):
        raise Forbidden(refusal(user_name(user), dag_id, missing), missing)


def refusal(name: str | None, dag_id: str, missing: Iterable[Right], doing: str = "backfill DAG") -> str:
    """
    >>> refusal("ana", "sales", [Right.CREATE_RUNS])
    "ana may not backfill DAG 'sales': missing right POST on its DAG runs"
    >>> refusal("ana", "sales", [Right.CLEAR_RUNS], doing="operate a backfill of")
    "ana may not operate a backfill of 'sales': missing right PUT on its DAG runs"
    """
    rights = ", ".join(r.describe() for r in missing)
    return f"{name or 'the requester'} may not {doing} {dag_id!r}: missing right {rights}"


def service_account() -> str | None:
    """The login of the deployment's own account (the ``airflow_api`` connection's)."""
    from airflow.models.connection import Connection

    try:
        return Connection.get_connection_from_secrets(api_conn_id()).login
    except Exception:  # no such connection: nobody is the deployment
        return None


def require_service_account(user: Any) -> None:
    """403 unless ``user`` is the deployment's own account: the endpoints that serve the
    controller's tasks answer nobody else, and say nothing of the run asked about."""
    account = service_account()
    if account is None or user_name(user) != account:
        raise HTTPException(
            403, {"message": "only the controller's own account (the airflow_api connection) may call this"}
        )


def user_name(user: Any) -> str | None:
    try:
        return str(user.get_name())
    except Exception:  # a user object without a name still gets a refusal message
        return None


def user_named(name: str) -> Any | None:
    """The user called ``name`` as the deployment's auth manager knows it; None if it cannot say.

    SimpleAuthManager: the configured user and its role (``[core] simple_auth_manager_users``);
    with ``simple_auth_manager_all_admins`` every name is an admin, as Airflow treats them.
    FAB: the user of that name in FAB's user table, inactive users excluded (``deserialize_user``
    refuses them, as it does for their tokens).
    """
    from airflow.api_fastapi.app import get_auth_manager

    manager = get_auth_manager()
    kind = type(manager).__name__
    if kind == "SimpleAuthManager":
        return _simple_user(manager, name)
    if kind == "FabAuthManager":
        return _fab_user(manager, name)
    log.warning("auth manager %s cannot be asked about user %r by name", kind, name)
    return None


def _simple_user(manager: Any, name: str) -> Any | None:
    from airflow.configuration import conf

    if conf.getboolean("core", "simple_auth_manager_all_admins", fallback=False):
        return manager.deserialize_user({"sub": name, "role": "ADMIN"})
    for user in manager.get_users():
        if user.username == name:
            return user
    return None


def _fab_user(manager: Any, name: str) -> Any | None:
    """FAB's user of that name, as its tokens deserialize it.

    The user of exactly that name, else FAB's own rule: its ``find_user`` compares names
    case-insensitively and finds nobody where two match (FAB's user table refuses a second case
    variant of a name, so one name is one user; the rule holds should a database not refuse it).
    """
    from airflow.providers.fab.auth_manager.models import User
    from airflow.utils.session import create_session
    from sqlalchemy import func, select

    with create_session() as session:
        rows = session.execute(
            select(User.id, User.username).where(func.lower(User.username) == name.lower()).limit(10)
        ).all()
    exact = [row.id for row in rows if row.username == name]
    user_id = exact[0] if len(exact) == 1 else rows[0].id if len(rows) == 1 else None
    if user_id is None:
        return None
    try:
        return manager.deserialize_user({"sub": str(user_id)})
    except Exception:  # inactive or gone meanwhile: nobody to act for
        return None


def _team_name(dag_id: str) -> str | None:
    """The DAG's team where Airflow runs in multi-team mode (as ``requires_access_dag`` passes it)."""
    from airflow.configuration import conf

    if not conf.getboolean("core", "multi_team", fallback=False):
        return None
    from airflow.models.dag import DagModel

    return DagModel.get_team_name(dag_id)


def json_only(request: Request) -> None:
    """Cross-site request protection for the UI's cookie, on every endpoint that changes something:
    a page of another site cannot send a JSON body (a form cannot, and a script would need CORS,
    which the api-server denies)."""
    if request.headers.get("content-type", "").split(";")[0].strip().lower() != "application/json":
        raise HTTPException(415, {"message": "send the request as JSON (Content-Type: application/json)"})
