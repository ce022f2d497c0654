"""Where Airflow is and who logs in: the flags, the ``BACKFILL_API_*`` variables, or the Airflow
connection the controller's tasks use (:func:`api_settings`); the password asked for on a
terminal; the REST client made from them (:func:`client_for`)."""

from __future__ import annotations

import getpass
import json
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, TextIO
from urllib.parse import quote, unquote, urlsplit

from backfill_controller.cli.common import UsageError

if TYPE_CHECKING:
    from backfill_controller.client.controller_api import ControllerApi

DEFAULT_API_URL = "http://localhost:8080"


@dataclass(frozen=True)
class ApiSettings:
    """Airflow's base URL and the credentials for ``POST /auth/token``. ``repr`` hides the password."""

    url: str
    username: str | None = None
    password: str | None = field(default=None, repr=False)


def _base_url(scheme: str, host: str, port: int | None) -> str:
    host = unquote(host)
    if "://" in host:  # Airflow connections may hold a whole URL as the host
        return host.rstrip("/")
    if ":" in host:  # IPv6
        host = f"[{host}]"
    return f"{scheme}://{host}" + (f":{port}" if port else "")


def parse_connection_uri(uri: str, source: str = "connection") -> ApiSettings:
    """URL and credentials from an Airflow connection, as a URI or in Airflow's JSON form.

    Like Airflow's own REST client here, the scheme is https when the connection type or the
    schema (the URI's path) says https, else http. Errors name ``source`` (where the URI was found)
    and never repeat the URI (it holds a password).

    >>> s = parse_connection_uri("http://admin:p%40ss@localhost:8080")
    >>> s.url, s.username, s.password
    ('http://localhost:8080', 'admin', 'p@ss')
    """
    text = uri.strip()
    if text.startswith("{"):
        try:
            data = json.loads(text)
        except ValueError:
            raise UsageError(f"{source}: not a connection URI or JSON connection") from None
        if not isinstance(data, dict) or not data.get("host"):
            raise UsageError(f"{source}: the JSON connection has no host")
        schema = str(data.get("schema") or "")
        scheme = "https" if "https" in (str(data.get("conn_type") or "").lower(), schema) else "http"
        port = data.get("port")
        return ApiSettings(
            url=_base_url(scheme, str(data["host"]), int(port) if port else None),
            username=data.get("login") or None,
            password=data.get("password") or None,
        )
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError:
        raise UsageError(f"{source}: not a valid URI (bad host or port)") from None
    if not parts.scheme or not parts.hostname:
        raise UsageError(f"{source}: not a URI like http://USER:PASSWORD@HOST:PORT")
    schema = unquote(parts.path.lstrip("/"))
    scheme = "https" if "https" in (parts.scheme.lower(), schema) else "http"
    return ApiSettings(
        url=_base_url(scheme, parts.hostname, port),
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password is not None else None,
    )


def api_settings(
    url: str | None, username: str | None, password: str | None, env: Mapping[str, str]
) -> ApiSettings:
    """Where Airflow is, first found wins: flags, BACKFILL_API_* variables, the connection.

    The connection is ``AIRFLOW_CONN_<BACKFILL_API_CONN_ID or AIRFLOW_API>``, the one the
    controller's tasks use. Credentials found with one URL are never sent to another: a user or
    password from a connection (or from a URL's ``user:password@``) is used only with that URL.
    """
    conn_id = env.get("BACKFILL_API_CONN_ID") or "airflow_api"
    conn_var = f"AIRFLOW_CONN_{conn_id.upper()}"
    candidates: list[ApiSettings] = []
    for text, source in ((url, "--api-url"), (env.get("BACKFILL_API_URL"), "BACKFILL_API_URL")):
        if text:
            candidates.append(parse_connection_uri(text, source))
    if env.get(conn_var):
        candidates.append(parse_connection_uri(env[conn_var], conn_var))
    chosen = candidates[0] if candidates else ApiSettings(DEFAULT_API_URL)
    # a URI's own credentials, then those of any other source naming the same URL
    same_url = [c for c in candidates if c.url == chosen.url]
    user = (
        username
        or env.get("BACKFILL_API_USERNAME")
        or next((c.username for c in same_url if c.username), None)
    )
    secret = (
        password
        or env.get("BACKFILL_API_PASSWORD")
        or next((c.password for c in same_url if c.password), None)
    )
    return ApiSettings(url=chosen.url, username=user, password=secret)


def redact(text: str, secret: str | None) -> str:
    """``text`` with every occurrence of ``secret`` (and its URL-quoted form) replaced by ``***``."""
    if not secret:
        return text
    for form in {secret, quote(secret, safe="")}:
        text = text.replace(form, "***")
    return text


def client_for(
    prog: str, settings: ApiSettings, err: TextIO, *, verbose: bool
) -> tuple[ControllerApi, str] | None:
    """A client for Airflow as the user found, and the password (to redact); None after saying
    which credential is missing. The password is asked for on a terminal; ``verbose``: the client
    prints every REST API call (password redacted) to ``err``."""
    if settings.username is None:
        print(
            f"{prog}: error: no user name for {settings.url}: give --username, or set "
            "BACKFILL_API_USERNAME, or AIRFLOW_CONN_AIRFLOW_API=http://USER:PASSWORD@HOST:PORT "
            "(credentials found with another URL are not sent to this one)",
            file=err,
        )
        return None
    password = settings.password
    if password is None:
        if not sys.stdin.isatty():
            print(
                f"{prog}: error: no password for {settings.url}: give --password or set "
                "BACKFILL_API_PASSWORD",
                file=err,
            )
            return None
        password = getpass.getpass(f"Password for {settings.username} at {settings.url}: ")

    # Imported here: `backfill --help` and command-line errors need no HTTP library.
    from backfill_controller.client.controller_api import ControllerApi

    secret = password
    log = (lambda line: print(redact(line, secret), file=err)) if verbose else None
    return ControllerApi(settings.url, settings.username, password, log=log), password
