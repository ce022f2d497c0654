"""Notifications: the deployment names its notifiers, a request picks by name, each event its own."""

from __future__ import annotations

import json
import re

import pendulum
import pytest

from backfill_controller.domain.notify import chosen, default_notify, event_of, summary
from backfill_controller.domain.request import InvalidRequest, parse_request
from backfill_controller.domain.settings import Limits, NotifierSpec, notifier_names, parse_notifiers

NOW = pendulum.datetime(2024, 6, 1, tz="UTC")
SMTP = "airflow.providers.smtp.notifications.smtp.SmtpNotifier"
DEPLOYMENT = json.dumps(
    {
        "data-team": {
            "class": SMTP,
            "kwargs": {"to": "data@example.com"},
            "on": ["failure", "budget_exhausted"],
        },
        "audit-log": {"class": "my.AuditNotifier"},
    }
)


def report(**over):
    base = {
        "dag_id": "sales",
        "success": True,
        "counts": {"dates": 3, "succeeded": 3, "failed": 0, "cancelled": 0},
        "failed_dates": [],
        "controller_run_id": "r1",
    }
    return {**base, **over}


def test_the_deployment_setting_defines_named_notifiers_with_their_events() -> None:
    specs = parse_notifiers(DEPLOYMENT)
    assert specs["data-team"] == NotifierSpec(
        "data-team", SMTP, {"to": "data@example.com"}, ("failure", "budget_exhausted")
    )
    assert specs["audit-log"].on == ("success", "failure", "budget_exhausted")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("not json", "not valid JSON"),
        ("[]", "must be a JSON object"),
        ('{"a": {"kwargs": {}}}', "[backfill_controller] notifiers.a: needs a 'class'"),
        ('{"a": {"class": "x.Y", "to": 1}}', "unknown key(s) to"),
        ('{"a": {"class": "x.Y", "kwargs": []}}', "[backfill_controller] notifiers.a.kwargs"),
    ],
)
def test_a_wrong_deployment_setting_names_what_is_wrong(text: str, expected: str) -> None:
    with pytest.raises(ValueError, match=re.escape(expected)):
        parse_notifiers(text)


def test_a_wrong_setting_offers_no_names_rather_than_breaking_the_controller(monkeypatch) -> None:
    monkeypatch.setenv("AIRFLOW__BACKFILL_CONTROLLER__NOTIFIERS", "not json")
    assert notifier_names() == ()
    monkeypatch.setenv("AIRFLOW__BACKFILL_CONTROLLER__NOTIFIERS", DEPLOYMENT)
    assert notifier_names() == ("data-team", "audit-log")
    assert Limits.from_config().notifiers == ("data-team", "audit-log")
    monkeypatch.setenv("AIRFLOW__BACKFILL_CONTROLLER__NOTIFY", " data-team, ,audit-log")
    assert default_notify() == ("data-team", "audit-log")


def test_success_failure_and_an_exhausted_budget_are_told_apart() -> None:
    assert event_of(report()) == "success"
    assert event_of(report(success=False, counts={"dates": 3, "failed": 1, "cancelled": 0})) == "failure"
    assert (
        event_of(report(success=False, counts={"dates": 3, "failed": 2, "cancelled": 1}))
        == "budget_exhausted"
    )


def test_a_request_picks_notifiers_by_name_else_the_deployment_default_applies() -> None:
    specs = parse_notifiers(DEPLOYMENT)
    assert [s.name for s in chosen(None, ["data-team", "audit-log"], specs, "failure")] == [
        "data-team",
        "audit-log",
    ]
    assert [s.name for s in chosen(None, ["data-team", "audit-log"], specs, "success")] == ["audit-log"]
    assert [s.name for s in chosen(["data-team"], ["audit-log"], specs, "failure")] == ["data-team"]
    assert chosen([], ["audit-log"], specs, "failure") == []


def test_a_request_may_name_only_the_deployments_notifiers() -> None:
    limits = Limits(notifiers=("data-team",))
    ok = parse_request(
        {"dag_id": "d", "dates": ["2024-01-01"], "notify": ["data-team"]}, limits=limits, now=NOW
    )
    assert ok.notify == ("data-team",) and ok.to_dict()["notify"] == ["data-team"]
    for bad in (["my.module.Evil"], "data-team", [{"class": "x"}]):
        with pytest.raises(InvalidRequest, match="notify: .*accepted: null .*data-team"):
            parse_request({"dag_id": "d", "dates": ["2024-01-01"], "notify": bad}, limits=limits, now=NOW)


def test_the_summary_has_counts_failed_dates_link_and_readable_text() -> None:
    failed = [f"2024-01-{d:02d}" for d in range(1, 26)]
    s = summary(
        report(
            success=False,
            counts={"dates": 30, "failed": 25, "cancelled": 5},
            failed_dates=failed,
            reason="{{ 7*7 }}",
        ),
        "http://airflow/dags/backfill_controller/runs/r1",
    )
    assert s["event"] == "budget_exhausted"
    assert s["headline"] == "Backfill of sales stopped: 25 dates failed, 5 not started (max_failed_dates)"
    assert "and 5 more" in s["text"] and "http://airflow/dags/backfill_controller/runs/r1" in s["text"]
    assert "Reason: {{ 7*7 }}" in s["text"]  # user text stays a value; only the deployment's templates render


def test_a_refused_request_is_summarised_with_its_error() -> None:
    s = summary(report(success=False, error="dag_id: no DAG 'x'\nmore", counts={"dates": 0}), None)
    assert s["headline"] == "Backfill of sales refused: dag_id: no DAG 'x'" and s["event"] == "failure"


def test_user_text_reaches_an_html_body_escaped() -> None:
    s = summary(
        {"dag_id": "sales", "success": False, "reason": "<script>alert(1)</script>", "triggered_by": "<i>x"},
        None,
    )
    assert "<script>" not in s["html"] and "&lt;script&gt;alert(1)&lt;/script&gt;" in s["html"]
    assert "Requested by: &lt;i&gt;x" in s["html"]
    assert s["text"].split("\n") == s["html"].replace("&lt;", "<").replace("&gt;", ">").split("<br>\n")
