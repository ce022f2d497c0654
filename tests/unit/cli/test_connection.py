"""Specification of :mod:`backfill_controller.cli.connection`: where Airflow is and who logs in."""

from __future__ import annotations

import pytest

from backfill_controller.cli.common import UsageError
from backfill_controller.cli.connection import (
    DEFAULT_API_URL,
    ApiSettings,
    api_settings,
    parse_connection_uri,
    redact,
)

URIS = {
    "plain": ("http://admin:secret@localhost:8080", ("http://localhost:8080", "admin", "secret")),
    "quoted password": (
        "http://ada:p%40ss%3Aw%2Fd@af.example.com:8080",
        ("http://af.example.com:8080", "ada", "p@ss:w/d"),
    ),
    "https scheme": ("https://u:p@af.example.com", ("https://af.example.com", "u", "p")),
    "https as the schema (path)": (
        "http://u:p@af.example.com:443/https",
        ("https://af.example.com:443", "u", "p"),
    ),
    "no credentials": ("http://localhost:8080", ("http://localhost:8080", None, None)),
    "a whole URL as the host": (
        "http://u:p@https%3A%2F%2Faf.example.com%2F",
        ("https://af.example.com", "u", "p"),
    ),
    "IPv6": ("http://u:p@[::1]:8080", ("http://[::1]:8080", "u", "p")),
    "JSON form": (
        '{"conn_type": "http", "host": "localhost", "port": 8080, "login": "u", "password": "p"}',
        ("http://localhost:8080", "u", "p"),
    ),
}


@pytest.mark.parametrize("name", list(URIS), ids=list(URIS))
def test_connection_uri_gives_url_and_credentials(name):
    uri, (url, username, password) = URIS[name]
    settings = parse_connection_uri(uri)
    assert (settings.url, settings.username, settings.password) == (url, username, password)


@pytest.mark.parametrize(
    "uri",
    [
        "admin:s3cr3t-pw@localhost",
        "http://admin:s3cr3t-pw@localhost:port",
        '{"login": "a", "password": "s3cr3t-pw"}',
    ],
    ids=["no scheme", "bad port", "JSON without host"],
)
def test_a_bad_connection_is_refused_without_repeating_it(uri):
    with pytest.raises(UsageError) as info:
        parse_connection_uri(uri, "AIRFLOW_CONN_AIRFLOW_API")
    assert "AIRFLOW_CONN_AIRFLOW_API" in str(info.value)
    assert "s3cr3t-pw" not in str(info.value)


CONN = {"AIRFLOW_CONN_AIRFLOW_API": "http://conn-user:conn-pw@conn-host:8080"}
SOURCES = {
    "nothing: the default URL": ({}, {}, (DEFAULT_API_URL, None, None)),
    "the connection": ({}, CONN, ("http://conn-host:8080", "conn-user", "conn-pw")),
    "BACKFILL_API_* over the connection": (
        {},
        {
            **CONN,
            "BACKFILL_API_URL": "http://env-host:9090",
            "BACKFILL_API_USERNAME": "env-user",
            "BACKFILL_API_PASSWORD": "env-pw",
        },
        ("http://env-host:9090", "env-user", "env-pw"),
    ),
    "flags over everything": (
        {"url": "http://flag-host:1", "username": "flag-user", "password": "flag-pw"},
        {**CONN, "BACKFILL_API_URL": "http://env-host:9090", "BACKFILL_API_PASSWORD": "env-pw"},
        ("http://flag-host:1", "flag-user", "flag-pw"),
    ),
    "the connection's credentials never go to another URL": (
        {"url": "http://elsewhere:8080"},
        CONN,
        ("http://elsewhere:8080", None, None),
    ),
    "the connection's credentials with the same URL given as a flag": (
        {"url": "http://conn-host:8080"},
        CONN,
        ("http://conn-host:8080", "conn-user", "conn-pw"),
    ),
    "a flag overrides only the password": (
        {"password": "flag-pw"},
        CONN,
        ("http://conn-host:8080", "conn-user", "flag-pw"),
    ),
    "credentials in --api-url": ({"url": "http://u:p@flag-host:1"}, CONN, ("http://flag-host:1", "u", "p")),
    "BACKFILL_API_CONN_ID names another connection": (
        {},
        {**CONN, "BACKFILL_API_CONN_ID": "other_api", "AIRFLOW_CONN_OTHER_API": "http://o:opw@other:1"},
        ("http://other:1", "o", "opw"),
    ),
}


@pytest.mark.parametrize("name", list(SOURCES), ids=list(SOURCES))
def test_where_airflow_is_first_found_wins(name):
    flags, env, (url, username, password) = SOURCES[name]
    settings = api_settings(flags.get("url"), flags.get("username"), flags.get("password"), env)
    assert (settings.url, settings.username, settings.password) == (url, username, password)


def test_settings_repr_hides_the_password():
    text = repr(ApiSettings("http://h:1", "ada", "s3cr3t-pw"))
    assert "ada" in text and "s3cr3t-pw" not in text


def test_redact_hides_plain_and_url_quoted_passwords():
    assert redact("login p@ss failed, url ...p%40ss...", "p@ss") == "login *** failed, url ...***..."
    assert redact("nothing to hide", None) == "nothing to hide"
