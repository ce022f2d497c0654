"""What a user may do to a running backfill, and what its history of actions means.

A backfill is operated with four controls: **pause** (no new date starts; runs already queued or
running finish), **resume** (dates start again where it stopped), **cancel** (nothing new starts,
nothing is left queued, in every segment) and **re-run failed** (a new backfill of exactly the dates
that ended failed). Each control a user applies is kept, with who and when, in the backfill's
history; whether it is paused, and for how long it has been, are read from that history.

The time a backfill spends paused does not count against its ``timeout_minutes``: its deadline
moves by :func:`paused_seconds`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from backfill_controller.domain.state import Phase


class Control(StrEnum):
    PAUSE = "pause"
    RESUME = "resume"
    CANCEL = "cancel"
    RERUN_FAILED = "rerun_failed"


#: Phases in which dates may still start: the backfill can be paused, resumed or cancelled.
LIVE_PHASES = frozenset({Phase.QUEUED, Phase.PLANNING, Phase.RUNNING, Phase.PAUSED})
#: Phases after which a backfill's failed dates can be run again.
ENDED_PHASES = frozenset({Phase.SUCCEEDED, Phase.FAILED, Phase.CANCELLED})


@dataclass(frozen=True)
class Applied:
    """One control applied to a backfill: which, by whom, when, and what came of it."""

    control: Control
    by: str | None
    at: datetime
    detail: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"action": self.control.value, "by": self.by, "at": self.at.isoformat(), "detail": self.detail}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Applied:
        return cls(
            Control(data["action"]), data.get("by"), datetime.fromisoformat(data["at"]), data.get("detail")
        )


def paused(history: Sequence[Applied]) -> bool:
    """Whether the last pause or resume of ``history`` (oldest first) is a pause.

    >>> from datetime import UTC
    >>> t = datetime(2024, 1, 1, tzinfo=UTC)
    >>> paused([Applied(Control.PAUSE, "ann", t)])
    True
    >>> paused([Applied(Control.PAUSE, "ann", t), Applied(Control.RESUME, "bo", t)])
    False
    """
    switches = [a.control for a in history if a.control in (Control.PAUSE, Control.RESUME)]
    return bool(switches) and switches[-1] is Control.PAUSE


def paused_seconds(history: Iterable[Applied], now: datetime) -> float:
    """How long the backfill has been paused in all, up to ``now`` (a pause still on counts to ``now``).

    >>> from datetime import UTC, timedelta
    >>> t = datetime(2024, 1, 1, tzinfo=UTC)
    >>> h = [Applied(Control.PAUSE, "a", t), Applied(Control.RESUME, "a", t + timedelta(seconds=30)),
    ...      Applied(Control.PAUSE, "a", t + timedelta(seconds=100))]
    >>> paused_seconds(h, t + timedelta(seconds=110))
    40.0
    """
    total, since = 0.0, None
    for applied in history:
        if applied.control is Control.PAUSE and since is None:
            since = applied.at
        elif applied.control is Control.RESUME and since is not None:
            total += (applied.at - since).total_seconds()
            since = None
    if since is not None:
        total += max(0.0, (now - since).total_seconds())
    return total


def refusal(control: Control, where: Phase, is_paused: bool, failed_dates: int = 0) -> str | None:
    """Why ``control`` does not fit a backfill in phase ``where`` (HTTP 409), or None if it does.

    >>> refusal(Control.PAUSE, Phase.RUNNING, False) is None
    True
    >>> refusal(Control.RESUME, Phase.RUNNING, False)
    'the backfill is running, not paused: there is nothing to resume'
    >>> refusal(Control.PAUSE, Phase.SUCCEEDED, False)
    'the backfill is succeeded: only a queued, planning, running or paused backfill can be paused'
    >>> refusal(Control.RERUN_FAILED, Phase.FAILED, False, failed_dates=0)
    'the backfill is failed but no date of it ended failed'
    """
    if control is Control.RERUN_FAILED:
        if where not in ENDED_PHASES:
            return f"the backfill is {where.value}: its failed dates can be re-run once it has ended"
        return None if failed_dates else f"the backfill is {where.value} but no date of it ended failed"
    if where not in LIVE_PHASES:
        live = ", ".join(p.value for p in sorted(LIVE_PHASES, key=_ORDER.index)[:-1])
        verb = {Control.PAUSE: "paused", Control.RESUME: "resumed", Control.CANCEL: "cancelled"}[control]
        return f"the backfill is {where.value}: only a {live} or paused backfill can be {verb}"
    if control is Control.PAUSE and is_paused:
        return "the backfill is paused already"
    if control is Control.RESUME and not is_paused:
        return f"the backfill is {where.value}, not paused: there is nothing to resume"
    return None


_ORDER = list(Phase)


def rerun_conf(conf: Mapping[str, Any], failed: Sequence[str], run_id: str) -> dict[str, Any]:
    """The conf of a backfill of exactly ``failed`` (ISO logical dates) of the backfill ``conf``:
    same target, task selection and target conf, existing failed runs re-run.

    >>> rerun_conf({"dag_id": "d", "start_date": "2024-01-01", "end_date": "2024-01-31",
    ...             "task_regex": "^load", "reason": "fix"}, ["2024-01-03T00:00:00+00:00"], "manual__1")
    ... # doctest: +NORMALIZE_WHITESPACE
    {'dag_id': 'd', 'task_regex': '^load', 'dates': ['2024-01-03T00:00:00+00:00'], 'reprocess': 'failed',
     'reason': 're-run of failed dates of manual__1'}
    """
    kept = {k: v for k, v in conf.items() if k not in _NOT_KEPT}
    return {
        **kept,
        "dates": list(failed),
        "reprocess": "failed",
        "reason": f"re-run of failed dates of {run_id}",
    }


#: Keys of the original request a re-run does not carry over: its own dates, reprocess and reason;
#: and the dry run (a re-run acts).
_NOT_KEPT = frozenset({"start_date", "end_date", "dates", "reprocess", "reason", "dry_run"})
