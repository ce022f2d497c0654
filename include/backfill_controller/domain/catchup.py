"""Scheduled catch-up: which dates of which DAGs the ``backfill_catchup`` DAG hands to the controller.

The deployment lists the DAGs to keep whole in a checked-in YAML file (``include/catchup.yaml``,
or the file named by the Airflow option ``[backfill_controller] catchup_config``)::

    dags:
      - dag_id: sales_pipeline
        lookback: P14D          # ISO-8601 duration: look at logical dates of the last 14 days
        reprocess: failed       # missing (default): dates with no run; failed: also failed runs
        max_dates_per_run: 30   # at most this many dates per catch-up run; the rest next time

Everything here is pure: the DAG reads the file, asks the REST API for the target's dates and runs,
and calls :func:`find_gaps` and :func:`controller_conf`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pendulum
import yaml
from pendulum import DateTime, Duration

from backfill_controller.contract import CATCHUP_DAG_ID, CATCHUP_PREFIX
from backfill_controller.domain.request import FieldError, Reprocess
from backfill_controller.domain.settings import CATCHUP_CONFIG, DEFAULT_CATCHUP_CONFIG, resolve_beside_dags

DEFAULT_CONFIG = DEFAULT_CATCHUP_CONFIG
ENTRY_KEYS = ("dag_id", "lookback", "reprocess", "max_dates_per_run", "max_active_runs")
DEFAULT_LOOKBACK = "P7D"
DEFAULT_MAX_DATES = 100
_DAG_ID = re.compile(r"^[A-Za-z0-9_.\-]+$")


class InvalidConfig(ValueError):
    """The catch-up file is wrong; every error names the entry and the field."""

    def __init__(self, source: str, errors: Sequence[FieldError]):
        self.errors = tuple(errors)
        super().__init__(f"{source}:\n" + "\n".join(f"  - {e}" for e in self.errors))


@dataclass(frozen=True)
class CatchupEntry:
    dag_id: str
    lookback: Duration
    reprocess: Reprocess = Reprocess.MISSING
    max_dates_per_run: int = DEFAULT_MAX_DATES
    max_active_runs: int | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (XCom), the inverse of :meth:`from_dict`."""
        return {
            "dag_id": self.dag_id,
            "lookback_seconds": self.lookback.total_seconds(),
            "reprocess": self.reprocess.value,
            "max_dates_per_run": self.max_dates_per_run,
            "max_active_runs": self.max_active_runs,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> CatchupEntry:
        """
        >>> e = CatchupEntry("d", pendulum.duration(days=3), Reprocess.FAILED, 5, 2)
        >>> CatchupEntry.from_dict(e.to_dict()) == e
        True
        """
        return cls(
            dag_id=data["dag_id"],
            lookback=pendulum.duration(seconds=data["lookback_seconds"]),
            reprocess=Reprocess(data["reprocess"]),
            max_dates_per_run=data["max_dates_per_run"],
            max_active_runs=data["max_active_runs"],
        )

    def window(self, now: DateTime) -> tuple[DateTime, DateTime]:
        """Logical dates looked at: the lookback up to now.

        >>> e = CatchupEntry("d", pendulum.duration(days=3))
        >>> [d.isoformat() for d in e.window(pendulum.datetime(2024, 5, 10, 6))]
        ['2024-05-07T06:00:00+00:00', '2024-05-10T06:00:00+00:00']
        """
        return now - self.lookback, now


def config_path() -> Path:
    """The catch-up file the deployment names (``[backfill_controller] catchup_config``); a relative
    path is read beside the DAGs folder."""
    return resolve_beside_dags(CATCHUP_CONFIG.value())


def load_config(
    text: str, source: str = "catch-up config", max_dates: int = 10_000
) -> tuple[CatchupEntry, ...]:
    """Parse the YAML file; raise :class:`InvalidConfig` naming every wrong field.

    >>> load_config("dags: [{dag_id: sales, lookback: P2D, reprocess: failed}]")[0].reprocess
    <Reprocess.FAILED: 'failed'>
    >>> try:
    ...     load_config("dags: [{dag_id: sales, lookbak: P2D}]")
    ... except InvalidConfig as exc:
    ...     print(exc.errors[0])
    dags[0].lookbak: unknown key (got 'P2D'); accepted: dag_id, lookback, reprocess, ...
    """
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise InvalidConfig(
            source, [FieldError("(file)", text[:80], f"is not valid YAML ({exc})", "a YAML mapping")]
        ) from None
    if data is None:
        return ()
    if not isinstance(data, dict) or set(data) - {"dags"}:
        raise InvalidConfig(
            source,
            [
                FieldError(
                    "(file)", data, "has the wrong shape", "a mapping with one key, dags (a list of entries)"
                )
            ],
        )
    items = data.get("dags") or []
    if not isinstance(items, list):
        raise InvalidConfig(
            source,
            [FieldError("dags", items, "is not a list", "a list of entries, each with at least dag_id")],
        )
    errors: list[FieldError] = []
    entries = [_entry(item, f"dags[{i}]", max_dates, errors) for i, item in enumerate(items)]
    seen: set[str] = set()
    for i, entry in enumerate(entries):
        if entry is not None and entry.dag_id in seen:
            errors.append(FieldError(f"dags[{i}].dag_id", entry.dag_id, "is listed twice", "each DAG once"))
        if entry is not None:
            seen.add(entry.dag_id)
    if errors:
        raise InvalidConfig(source, errors)
    return tuple(e for e in entries if e is not None)


def read_config(path: Path, max_dates: int = 10_000) -> tuple[CatchupEntry, ...]:
    return load_config(path.read_text(encoding="utf-8"), source=str(path.name), max_dates=max_dates)


def find_gaps(
    expected: Iterable[DateTime], runs: Mapping[DateTime, str], reprocess: Reprocess, limit: int
) -> tuple[list[DateTime], int]:
    """The dates to hand to the controller (oldest first, at most ``limit``) and how many gaps exist.

    A date is a gap when it has no run, or (``reprocess=failed``) its run failed. A run queued or
    running is never a gap.

    >>> d = [pendulum.datetime(2024, 1, day) for day in (1, 2, 3, 4)]
    >>> runs = {d[0]: "success", d[1]: "failed", d[3]: "running"}
    >>> [g.day for g in find_gaps(d, runs, Reprocess.MISSING, 10)[0]]
    [3]
    >>> gaps, total = find_gaps(d, runs, Reprocess.FAILED, 1)
    >>> [g.day for g in gaps], total
    ([2], 2)
    """
    gaps = []
    for date in sorted(expected):
        state = runs.get(date)
        if state is None or (reprocess is Reprocess.FAILED and state == "failed"):
            gaps.append(date)
    return gaps[:limit], len(gaps)


def controller_conf(entry: CatchupEntry, dates: Sequence[DateTime], catchup_run_id: str) -> dict[str, Any]:
    """The controller request that heals ``dates`` of ``entry``'s DAG."""
    conf: dict[str, Any] = {
        "dag_id": entry.dag_id,
        "dates": [d.isoformat() for d in dates],
        "reprocess": entry.reprocess.value,
        "reason": f"scheduled catch-up ({CATCHUP_DAG_ID} run {catchup_run_id})",
    }
    if entry.max_active_runs is not None:
        conf["max_active_runs"] = entry.max_active_runs
    return conf


def controller_run_id(dag_id: str, catchup_run_id: str) -> str:
    """One controller run per target and catch-up run, so a retried catch-up triggers nothing twice.

    >>> controller_run_id("sales", "scheduled__2024-05-10T00:00:00+00:00")
    'catchup__sales__scheduled__2024-05-10T00:00:00+00:00'
    """
    return f"{CATCHUP_PREFIX}{dag_id}__{catchup_run_id}"[:250]


def _entry(item: Any, where: str, max_dates: int, errors: list[FieldError]) -> CatchupEntry | None:
    if not isinstance(item, dict):
        errors.append(FieldError(where, item, "is not a mapping", "a mapping with at least dag_id"))
        return None
    before = len(errors)
    for key in item:
        if key not in ENTRY_KEYS:
            errors.append(FieldError(f"{where}.{key}", item[key], "unknown key", ", ".join(ENTRY_KEYS)))
    dag_id = item.get("dag_id")
    if not isinstance(dag_id, str) or not _DAG_ID.match(dag_id):
        errors.append(
            FieldError(f"{where}.dag_id", dag_id, "missing or not a dag_id", "letters, digits, _ . -")
        )
    lookback = _duration(item.get("lookback", DEFAULT_LOOKBACK), f"{where}.lookback", errors)
    reprocess = Reprocess.MISSING
    try:
        reprocess = Reprocess.parse(item.get("reprocess", "missing"))
    except (ValueError, TypeError):
        errors.append(
            FieldError(f"{where}.reprocess", item.get("reprocess"), "unknown mode", "missing or failed")
        )
    if reprocess is Reprocess.ALL:
        errors.append(
            FieldError(
                f"{where}.reprocess",
                "all",
                "would re-run every date on every catch-up run",
                "missing or failed",
            )
        )
    max_per_run = _count(
        item.get("max_dates_per_run", DEFAULT_MAX_DATES), f"{where}.max_dates_per_run", max_dates, errors
    )
    max_active = item.get("max_active_runs")
    if max_active is not None:
        max_active = _count(max_active, f"{where}.max_active_runs", 10_000, errors)
    if len(errors) > before or lookback is None:
        return None
    return CatchupEntry(str(dag_id), lookback, reprocess, max_per_run, max_active)


def _duration(value: Any, field: str, errors: list[FieldError]) -> Duration | None:
    try:
        parsed = pendulum.parse(str(value))
    except (ValueError, TypeError, pendulum.parsing.exceptions.ParserError):
        parsed = None
    if not isinstance(parsed, Duration) or parsed.total_seconds() <= 0:
        errors.append(
            FieldError(field, value, "is not a positive duration", "ISO-8601, such as P7D or PT36H")
        )
        return None
    return parsed


def _count(value: Any, field: str, maximum: int, errors: list[FieldError]) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= maximum:
        errors.append(FieldError(field, value, "is out of range", f"a whole number from 1 to {maximum}"))
        return 1
    return value
