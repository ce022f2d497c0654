"""Notifications at a backfill's end: which notifiers, on which event, with what summary.

The deployment names its notifiers in the Airflow option ``[backfill_controller] notifiers``
(JSON), each an Airflow notifier class (any ``BaseNotifier``: ``SmtpNotifier``, ``SlackNotifier``,
your own) with its arguments and the events it wants::

    [backfill_controller]
    notifiers = {"data-team": {
        "class": "airflow.providers.smtp.notifications.smtp.SmtpNotifier",
        "kwargs": {"to": "data-team@example.com",
                   "subject": "{{ backfill.headline }}", "html_content": "{{ backfill.html }}"},
        "on": ["failure", "budget_exhausted"]}}
    notify = data-team               # notified when a request says nothing (default: nobody)

A request picks by name with ``"notify": ["data-team"]`` (``[]``: nobody); it can never name a
class, so conf cannot make a worker import or call anything. Templates are the deployment's; the
summary (which holds user text such as the reason) reaches them as values, never as templates;
``backfill.text`` is plain text, ``backfill.html`` the same text escaped for HTML (Airflow renders
templates without autoescaping: an e-mail body must use ``html``).

The option itself is read where every option is, in :mod:`backfill_controller.domain.settings`
(:func:`~backfill_controller.domain.settings.parse_notifiers`, which the request parser's list of
names also comes from); this module decides who is told of what.
"""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from typing import Any

from backfill_controller.domain.settings import NOTIFY, NotifierSpec

LISTED_DATES = 20


def default_notify() -> tuple[str, ...]:
    """Who is told when a request says nothing (``[backfill_controller] notify``)."""
    return NOTIFY.value()


def event_of(report: Mapping[str, Any]) -> str:
    """``success``, ``budget_exhausted`` (dates cancelled by ``max_failed_dates``) or ``failure``.

    >>> event_of({"success": False, "counts": {"cancelled": 3}})
    'budget_exhausted'
    """
    if report.get("success"):
        return "success"
    return "budget_exhausted" if report.get("counts", {}).get("cancelled") else "failure"


def chosen(
    requested: Sequence[str] | None,
    default: Sequence[str],
    specs: Mapping[str, NotifierSpec],
    event: str,
) -> list[NotifierSpec]:
    """The notifiers to call for ``event``: the request's names, else the deployment default.

    >>> specs = {"a": NotifierSpec("a", "x.A", on=("failure",)), "b": NotifierSpec("b", "x.B")}
    >>> [s.name for s in chosen(None, ["a", "b"], specs, "success")]
    ['b']
    >>> chosen([], ["a", "b"], specs, "failure")
    []
    """
    names = default if requested is None else requested
    return [specs[n] for n in names if n in specs and event in specs[n].on]


def summary(report: Mapping[str, Any], link: str | None) -> dict[str, Any]:
    """What a notifier gets as ``backfill`` in its context: counts, failed dates, link, text.

    >>> s = summary({"dag_id": "sales", "success": False, "reason": "fix", "triggered_by": "ann",
    ...              "counts": {"dates": 3, "succeeded": 2, "failed": 1, "cancelled": 0},
    ...              "failed_dates": ["2024-01-02T00:00:00+00:00"], "controller_run_id": "r1"}, "http://x/r1")
    >>> s["headline"]
    'Backfill of sales failed: 1 of 3 dates failed'
    >>> print(s["text"])
    Backfill of sales failed: 1 of 3 dates failed
    succeeded 2, failed 1
    Failed dates: 2024-01-02T00:00:00+00:00
    Reason: fix
    Requested by: ann
    Controller run: r1 http://x/r1
    >>> "Reason: &lt;b&gt;x&lt;/b&gt;<br>" in summary({"dag_id": "d", "reason": "<b>x</b>"}, None)["html"]
    True
    """
    event = event_of(report)
    counts = dict(report.get("counts") or {})
    failed = list(report.get("failed_dates") or [])
    total = counts.get("dates", 0)
    if report.get("error"):
        headline = f"Backfill of {report.get('dag_id')} refused: {str(report['error']).splitlines()[0]}"
    elif event == "success":
        headline = f"Backfill of {report.get('dag_id')} succeeded: {total} dates"
    elif event == "budget_exhausted":
        headline = (
            f"Backfill of {report.get('dag_id')} stopped: {len(failed)} dates failed, "
            f"{counts.get('cancelled', 0)} not started (max_failed_dates)"
        )
    else:
        headline = f"Backfill of {report.get('dag_id')} failed: {len(failed)} of {total} dates failed"
    shown = ", ".join(failed[:LISTED_DATES]) + (
        f" and {len(failed) - LISTED_DATES} more" if len(failed) > LISTED_DATES else ""
    )
    lines = [
        headline,
        ", ".join(f"{k} {v}" for k, v in counts.items() if k != "dates" and v),
        *([f"Failed dates: {shown}"] if failed else []),
        *([f"Reason: {report['reason']}"] if report.get("reason") else []),
        *([f"Requested by: {report['triggered_by']}"] if report.get("triggered_by") else []),
        f"Controller run: {report.get('controller_run_id')}" + (f" {link}" if link else ""),
    ]
    return {
        "event": event,
        "headline": headline,
        "text": "\n".join(lines),
        "html": "<br>\n".join(html.escape(line) for line in lines),
        "dag_id": report.get("dag_id"),
        "success": bool(report.get("success")),
        "counts": counts,
        "failed_dates": failed,
        "reason": report.get("reason"),
        "triggered_by": report.get("triggered_by"),
        "controller_run_id": report.get("controller_run_id"),
        "link": link,
    }
