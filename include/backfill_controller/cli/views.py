"""How ``backfill status``, ``backfill list`` and the controls print backfills, as the
Backfills page answers them (``GET /backfill-controller/api/backfills[/{run_id}]``)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from backfill_controller.cli.progress import format_elapsed
from backfill_controller.domain.report import aligned, date_table


def _day(iso: str | None) -> str:
    """An ISO-8601 date as short as it reads: the day alone when it is midnight UTC.

    >>> _day("2024-01-05T00:00:00+00:00"), _day("2024-01-05"), _day("2024-01-05T06:00:00+00:00")
    ('2024-01-05', '2024-01-05', '2024-01-05T06:00:00+00:00')
    """
    if not iso:
        return "?"
    return iso[:10] if iso[10:] in ("", "T00:00:00+00:00", "T00:00:00Z", "T00:00:00") else iso


def window_text(backfill: Mapping[str, Any]) -> str:
    """The dates a backfill asked for: its window, or how many explicit dates (first..last).

    >>> window_text({"window": {"start_date": "2024-01-01", "end_date": "2024-01-31T00:00:00+00:00"}})
    '2024-01-01..2024-01-31'
    >>> day = "2024-06-05T00:00:00+00:00"
    >>> window_text({"window": {"dates": 1, "first_date": day, "last_date": day}})
    '1 date (2024-06-05)'
    """
    window = backfill.get("window") or {}
    if window.get("dates"):
        count = int(window["dates"])
        span = ""
        if window.get("first_date"):
            first, last = _day(window["first_date"]), _day(window.get("last_date"))
            span = f" ({first})" if first == last else f" ({first}..{last})"
        return f"{count} date{'' if count == 1 else 's'}{span}"
    if window.get("start_date") or window.get("end_date"):
        return f"{_day(window.get('start_date'))}..{_day(window.get('end_date'))}"
    return "-"


def finished_text(backfill: Mapping[str, Any]) -> str:
    """Dates finished / to run (``N planned`` for a dry run; ``-`` before the plan, or when the
    target's runs are not for this reader).

    >>> finished_text({"planned": True, "visible": True, "progress": {"finished": 3, "acting": 5}})
    '3/5'
    """
    progress = backfill.get("progress") or {}
    if not backfill.get("planned") or not backfill.get("visible"):
        return "-"
    if backfill.get("dry_run"):
        return f"{progress.get('dates', 0)} planned"
    return f"{progress.get('finished', 0)}/{progress.get('acting', 0)}"


def counts_text(backfill: Mapping[str, Any]) -> str:
    """A backfill's dates in one line: how many, finished / to run, then each state's count.

    >>> from backfill_controller.domain.state import Counts
    >>> tally = Counts(dates=4, acting=3, succeeded=2, running=1, skipped=1).to_dict()
    >>> counts_text({"planned": True, "visible": True, "progress": {"finished": 2, "acting": 3,
    ...              "dates": 4, "tally": tally}})
    '4 dates, 2/3 finished: succeeded 2, running 1, skipped 1'
    """
    progress = backfill.get("progress") or {}
    finished = finished_text(backfill)
    if finished == "-":
        return "-"
    tally = progress.get("tally") or {}
    states = ("succeeded", "failed", "cancelled", "running", "queued", "pending", "skipped")
    shown = ", ".join(f"{state} {tally[state]}" for state in states if tally.get(state))
    dates = f"{progress.get('dates', 0)} dates"
    if backfill.get("dry_run"):
        return f"{dates}: dry run, {tally.get('planned', 0)} to run" + (f", {shown}" if shown else "")
    return f"{dates}, {finished} finished" + (f": {shown}" if shown else "")


def format_status(backfill: Mapping[str, Any]) -> str:
    """``backfill status``: a backfill's phase, request and counts, then one line per date."""
    fields = [
        ("target", backfill.get("target_dag_id") or "?"),
        ("window", window_text(backfill)),
        ("reprocess", backfill.get("reprocess") or ""),
        ("reason", backfill.get("reason") or ""),
        ("triggered by", backfill.get("triggered_by") or ""),
        ("started", backfill.get("start_date") or backfill.get("queued_at") or ""),
        ("ended", backfill.get("end_date") or ""),
        ("dates", counts_text(backfill)),
        ("ETA", eta_text(backfill.get("eta"))),
        ("error", backfill.get("error") or ""),
    ]
    dry_run = " (dry run)" if backfill.get("dry_run") else ""
    lines = [f"backfill {backfill.get('run_id')}: {backfill.get('phase')}{dry_run}"]
    lines += ["  " + line for line in aligned([(k, str(v)) for k, v in fields if v not in ("", "-")])]
    if not backfill.get("visible", True):
        lines.append("  (no read access to the target DAG: its dates are not shown)")
    for applied in backfill.get("history") or []:
        came = f" -> {applied['detail']}" if applied.get("detail") else ""
        lines.append(
            f"  {applied['at'][:19].replace('T', ' ')}  {applied['action']} by {applied['by']}{came}"
        )
    cells = backfill.get("cells") or []
    if cells:
        lines += ["", *date_table(cells)]
    total = int(backfill.get("cells_total") or len(cells))
    if total > len(cells):
        lines.append(f"(the first {len(cells):,} of {total:,} dates)")
    return "\n".join(lines)


def eta_text(eta: Mapping[str, Any] | None) -> str:
    """A running backfill's estimated end, as ``backfill status`` prints it ("" when it has none).

    >>> eta_text({"end": "2024-01-01T12:30:00+00:00", "remaining_seconds": 750.0, "basis": "finished_runs"})
    '2024-01-01 12:30:00 UTC (0:12:30 left)'
    >>> eta_text(None)
    ''
    """
    if not eta or not eta.get("end"):
        return ""
    return f"{eta['end'][:19].replace('T', ' ')} UTC ({format_elapsed(float(eta['remaining_seconds']))} left)"


def format_list(page: Mapping[str, Any]) -> str:
    """``backfill list``: a header and one line per backfill (empty when there is none)."""
    backfills = page.get("backfills") or []
    if not backfills:
        return ""
    rows = [("run_id", "phase", "target", "window", "finished", "triggered_by")]
    for b in backfills:
        rows.append(
            (
                str(b.get("run_id")),
                str(b.get("phase")),
                str(b.get("target_dag_id") or "?"),
                window_text(b),
                finished_text(b),
                str(b.get("triggered_by") or "-"),
            )
        )
    return "\n".join(aligned(rows))


def list_footer(page: Mapping[str, Any]) -> str:
    """Which backfills a page shows of how many, and the flag for the next page.

    >>> list_footer({"total": 45, "offset": 20, "backfills": [{}] * 20})
    'backfills 21-40 of 45; next: --offset 40'
    >>> list_footer({"total": 0, "offset": 0, "backfills": []})
    'no backfills'
    """
    total, offset, shown = int(page.get("total") or 0), int(page.get("offset") or 0), len(page["backfills"])
    if not shown:
        return f"no backfills at --offset {offset}, of {total}" if total else "no backfills"
    text = f"backfills {offset + 1}-{offset + shown} of {total}"
    return text + (f"; next: --offset {offset + shown}" if offset + shown < total else "")


def format_controlled(control: str, answer: Mapping[str, Any]) -> str:
    """What a control did: the new backfill's run id (``rerun_failed``), else the backfill's phase.

    >>> format_controlled("pause", {"run_id": "manual__1", "phase": "paused", "paused": True})
    'backfill manual__1: paused'
    >>> format_controlled("rerun_failed", {"dag_run_id": "manual__2", "dates": 3})
    'started manual__2: a backfill of the 3 failed dates'
    """
    if control == "rerun_failed":
        return f"started {answer.get('dag_run_id')}: a backfill of the {answer.get('dates')} failed dates"
    return f"backfill {answer.get('run_id')}: {answer.get('phase')}"
