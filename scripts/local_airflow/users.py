"""Users and roles of a local Airflow, for either auth manager.

``simple``: SimpleAuthManager's users come from the environment (``SIMPLE_AUTH_MANAGER_USERS``) and a
passwords file, read when the processes start; its roles are fixed (:data:`SIMPLE_ROLES`).
``fab``: FabAuthManager's users and roles live in the metadata database; they are created at start
through FAB's security manager, or while running through FAB's REST API.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import requests

from backfill_controller.client.rest import raise_for
from scripts.local_airflow.util import tail

#: SimpleAuthManager's fixed roles, lowest to highest; each grants what the ones before it grant.
SIMPLE_ROLES = ("viewer", "user", "op", "admin")
#: The role of ``LocalAirflow.username`` by auth manager (FAB's builtin roles: Admin, Op, User,
#: Viewer, Public).
ADMIN_ROLE = {"simple": "admin", "fab": "Admin"}
#: FAB's REST API for users and roles (served by the FAB auth manager under /auth).
FAB_API = "/auth/fab/v1"
_FAB_SETUP_MARK = "LOCAL_AIRFLOW_FAB_SETUP="
# Run with the instance's environment and a JSON spec on stdin: creates FAB roles (with their
# permissions; missing actions/resources such as "DAG:<id>" are created) and creates or updates users
# (password and roles). FAB's security manager needs a Flask app: get_application_builder() builds one,
# which also syncs FAB's builtin roles. Prints no password.
_FAB_SETUP_CODE = """\
import json, sys
from airflow.providers.fab.auth_manager.cli_commands.utils import get_application_builder

spec = json.load(sys.stdin)
done = {"roles": [], "users": []}
with get_application_builder() as appbuilder:
    sm = appbuilder.sm
    for role_spec in spec["roles"]:
        role = sm.add_role(role_spec["name"])  # returns the existing role if there is one
        for action, resource in role_spec["permissions"]:
            perm = sm.create_permission(action, resource)
            if perm not in role.permissions:
                sm.add_permission_to_role(role, perm)
        done["roles"].append(role_spec["name"])
    for user_spec in spec["users"]:
        roles = [sm.find_role(name) for name in user_spec["roles"]]
        missing = [name for name, role in zip(user_spec["roles"], roles) if role is None]
        if missing:
            sys.exit(f"user {user_spec['username']!r}: unknown FAB roles {missing}")
        user = sm.find_user(username=user_spec["username"])
        if user is None:
            name = user_spec["username"]
            sm.add_user(name, name, "local", name + "@example.org", roles, user_spec["password"])
        else:
            user.roles = roles
            user.active = True
            user.password = sm._hash_password(user_spec["password"])
            if not sm.update_user(user):
                sys.exit(f"could not update user {user_spec['username']!r}")
        done["users"].append(user_spec["username"])
print("\\n" + MARK + json.dumps(done))
"""


def _role_names(roles: Sequence[str]) -> tuple[str, ...]:
    if isinstance(roles, str):
        raise TypeError("roles must be a sequence of role names, not a string")
    return tuple(roles)


class UsersMixin:
    """The admin and other users of an instance (``users``), and FAB roles."""

    auth_manager: str
    logs_dir: Path
    passwords_file: Path
    #: {username: (roles, password)} of every user created at start, the admin first
    users: dict[str, tuple[tuple[str, ...], str]]
    #: FAB roles to create at start: {name: [(action, resource), ...]}
    _pending_roles: dict[str, list[tuple[str, str]]]
    _running: bool

    if TYPE_CHECKING:  # from the other parts of LocalAirflow

        def _configure(self) -> None: ...

        def api(
            self, method: str, path: str, *, token: str | None = None, **kwargs: Any
        ) -> requests.Response: ...

        def _python(self, code: str, timeout: float, stdin: str | None = None) -> Any: ...

    def _add_user(self, username: str, roles: Sequence[str], password: str) -> None:
        roles = _role_names(roles)
        if not username or not roles:
            raise ValueError("a user needs a name and a role")
        if self.auth_manager == "simple":
            if len(roles) != 1 or roles[0].lower() not in SIMPLE_ROLES:
                raise ValueError(
                    f"SimpleAuthManager gives each user exactly one of {SIMPLE_ROLES}, not {list(roles)}"
                )
            if set(username) & set(":,") or username != username.strip():
                raise ValueError(f"SimpleAuthManager user names cannot hold ':' or ',': {username!r}")
            roles = (roles[0].lower(),)
        self.users[username] = (roles, password)

    def _write_passwords(self) -> None:
        """SimpleAuthManager's passwords file: {username: password} of ``users``."""
        passwords = {name: password for name, (_, password) in self.users.items()}
        self.passwords_file.write_text(json.dumps(passwords) + "\n")
        self.passwords_file.chmod(0o600)

    def create_role(self, name: str, permissions: Iterable[tuple[str, str]]) -> None:
        """FAB only: create a role with these ``(action, resource)`` permissions, or replace the
        permissions of the role of that name, e.g. ``[("can_read", "DAG:x"), ("can_edit", "DAG:x"),
        ("can_create", "DAG Runs")]``.

        Before ``start()``: created at start (missing resources such as ``DAG:x`` are created).
        While running: through FAB's REST API, which refuses an unknown action or resource (HTTP
        400): a ``DAG:<dag_id>`` resource exists once the dag-processor has stored that DAG
        (``wait_for_dags``). Users already logged in see a changed role within FAB's cache TTL
        (``[fab] cache_ttl``, 30 s)."""
        if self.auth_manager != "fab":
            raise NotImplementedError(f"SimpleAuthManager has only its fixed roles {SIMPLE_ROLES}")
        perms = [(str(action), str(resource)) for action, resource in permissions]
        if not self._running:
            self._pending_roles[name] = perms
            return
        body = {
            "name": name,
            "actions": [{"action": {"name": a}, "resource": {"name": r}} for a, r in perms],
        }
        resp = self.api("POST", f"{FAB_API}/roles", json=body)
        if resp.status_code == 409:  # exists: replace its permissions
            resp = self.api(
                "PATCH",
                f"{FAB_API}/roles/{quote(name, safe='')}",
                params={"update_mask": "actions"},
                json=body,
            )
        raise_for(resp, f"create role {name!r}")

    def create_user(self, username: str, password: str, roles: Sequence[str]) -> None:
        """Create a user (or update the password and roles of an existing one).

        ``"simple"``: before ``start()`` only (SimpleAuthManager reads its users when its processes
        start), with exactly one role of :data:`SIMPLE_ROLES`. ``"fab"``: FAB role names, before
        ``start()`` (created at start) or while running (FAB's REST API)."""
        if self.auth_manager == "simple":
            if self._running:
                raise RuntimeError("SimpleAuthManager reads its users at start: create them before start()")
            self._add_user(username, roles, password)
            self._configure()
            return
        if not self._running:
            self._add_user(username, roles, password)
            return
        roles = _role_names(roles)
        body = {
            "username": username,
            "email": f"{username}@example.org",
            "first_name": username,
            "last_name": "local",
            "roles": [{"name": role} for role in roles],
            "password": password,
        }
        resp = self.api("POST", f"{FAB_API}/users", json=body)
        if resp.status_code == 409:  # exists: new password and roles
            patch = {"roles": body["roles"], "password": password}
            resp = self.api("PATCH", f"{FAB_API}/users/{quote(username, safe='')}", json=patch)
        raise_for(resp, f"create user {username!r}")
        self.users[username] = (roles, password)

    def _fab_setup(
        self,
        roles: Mapping[str, Iterable[tuple[str, str]]],
        users: Mapping[str, tuple[Sequence[str], str]],
        deadline: float | None = None,
    ) -> None:
        """Create FAB roles and create or update users in one Python process (FAB's security
        manager; works with or without the services running). Output in logs/fab-setup.log."""
        spec = {
            "roles": [
                {"name": name, "permissions": [list(p) for p in perms]} for name, perms in roles.items()
            ],
            "users": [
                {"username": name, "roles": list(user_roles), "password": password}
                for name, (user_roles, password) in users.items()
            ],
        }
        log = self.logs_dir / "fab-setup.log"
        timeout = max(deadline - time.monotonic(), 1) if deadline is not None else 300
        res = self._python(
            _FAB_SETUP_CODE.replace("MARK", repr(_FAB_SETUP_MARK)), timeout, stdin=json.dumps(spec)
        )
        with open(log, "a") as out:
            out.write(res.stdout + res.stderr)
        if res.returncode != 0 or _FAB_SETUP_MARK not in res.stdout:
            raise RuntimeError(f"creating FAB roles/users failed ({res.returncode}):\n{tail(log, 40)}")
