"""The front door's answers, next to native's: the latency of one call, and a burst of calls at once.

* Latency (``--front-door``): median seconds of the front door's dry run and of a refusal that
  checks every date, and of native's ``POST /api/v2/backfills/dry_run``, for N hourly dates.
* Burst (``--burst``): ``calls`` dry runs of ``dates`` hourly dates sent together (one thread each,
  released by a barrier), the front door's then native's. A 503 with ``Retry-After`` is retried
  after that many seconds (counted; the call's time includes the wait); a 500 is a failure. Each
  side is compared with its serial time: the same ``calls`` sent one after another, measured
  (the time the work takes serially, on the same warm api-server; one call's median beside it).

Run through ``python -m scripts.bench [--front-door 10,365,10000] [--burst] [--burst-calls 40]
[--burst-dates 720]``.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import pendulum
import requests

from scripts.bench_common import FRONT_DOOR, NATIVE, fmt, median, percentile
from scripts.local_airflow import LocalAirflow

HOURLY = "bench_hourly"
FIRST_HOUR = pendulum.datetime(2016, 1, 1, tz="UTC")


def _window(n: int) -> dict[str, Any]:
    last = FIRST_HOUR.add(hours=n - 1)
    return {"dag_id": HOURLY, "start_date": FIRST_HOUR.isoformat(), "end_date": last.isoformat()}


def _native_body(n: int) -> dict[str, Any]:
    return {
        "dag_id": HOURLY,
        "from_date": FIRST_HOUR.isoformat(),
        "to_date": FIRST_HOUR.add(hours=n - 1).isoformat(),
        "reprocess_behavior": "none",
        "max_active_runs": 16,
        "run_backwards": False,
        "dag_run_conf": {},
    }


def latency(airflow: LocalAirflow, sizes: list[int], repeat: int = 5) -> list[tuple[int, str, float]]:
    """Median seconds of ``repeat`` calls each: the front door's dry run and refusal, native's dry
    run, for ``n`` hourly dates (the refusal: the same dates with the last one off the schedule,
    found after every date is checked)."""
    found = []
    for n in sizes:
        last = FIRST_HOUR.add(hours=n - 1)
        dates = [FIRST_HOUR.add(hours=h).isoformat() for h in range(n - 1)] + [
            last.add(minutes=30).isoformat()
        ]
        calls = (
            ("front door: dry run", f"{FRONT_DOOR}/dry_run", _window(n), 200),
            (
                "front door: refusal (last date off the schedule)",
                FRONT_DOOR,
                {"dag_id": HOURLY, "dates": dates},
                422,
            ),
            (f"native: POST {NATIVE}/dry_run", f"{NATIVE}/dry_run", _native_body(n), 200),
        )
        for what, path, body, expected in calls:
            seconds = []
            for _ in range(repeat):
                began = time.monotonic()
                resp = airflow.api("POST", path, json=body, timeout=300)
                seconds.append(time.monotonic() - began)
                if resp.status_code != expected:
                    raise RuntimeError(f"{what}: HTTP {resp.status_code}: {resp.text[:300]}")
            found.append((n, what, sorted(seconds)[len(seconds) // 2]))
    return found


def latency_table(found: list[tuple[int, str, float]], repeat: int = 5) -> str:
    lines = [f"| dates | call | median of {repeat} |", "|---|---|---|"]
    lines += [f"| {n:,} | {what} | {seconds:.3f} s |" for n, what, seconds in found]
    return "\n".join(lines)


@dataclass
class Burst:
    """One side of the burst: every answer's status, and each call's seconds to its final answer."""

    side: str
    calls: int
    dates: int
    alone: float  # median seconds of one call alone
    serial: float  # seconds of the ``calls`` calls sent one after another
    alone_statuses: list[str] = field(default_factory=list)
    statuses: Counter[str] = field(default_factory=Counter)
    retried: int = 0  # 503 answers with Retry-After, retried
    seconds: list[float] = field(default_factory=list)
    final: Counter[str] = field(default_factory=Counter)

    def as_dict(self) -> dict[str, Any]:
        return {
            "side": self.side,
            "calls": self.calls,
            "dates": self.dates,
            "alone_s": round(self.alone, 3),
            "alone_statuses": self.alone_statuses,
            "serial_s": round(self.serial, 2),
            "answers": dict(self.statuses),
            "final": dict(self.final),
            "retried_503": self.retried,
            "p50_s": percentile(self.seconds, 50),
            "p95_s": percentile(self.seconds, 95),
            "seconds": [round(s, 3) for s in self.seconds],
        }


def burst(airflow: LocalAirflow, calls: int = 40, dates: int = 720, timeout: float = 600) -> list[Burst]:
    """The front door's dry run, then native's: ``calls`` calls one after another (the serial
    time; their median is one call's time), then ``calls`` at once."""
    sides = (
        ("front door", f"{airflow.url}{FRONT_DOOR}/dry_run", _window(dates)),
        ("native", f"{airflow.url}{NATIVE}/dry_run", _native_body(dates)),
    )
    headers = {"Authorization": f"Bearer {airflow.token()}"}
    found = []
    for side, url, body in sides:
        began = time.monotonic()
        alone = [_one(url, body, headers, timeout) for _ in range(calls)]
        serial = time.monotonic() - began
        seconds = median([s for _, _, s in alone]) or 0.0
        finals = sorted({answers[-1] for answers, _, _ in alone})
        result = Burst(side, calls, dates, seconds, serial, finals)
        _together(result, url, body, headers, timeout)
        found.append(result)
    return found


def _together(result: Burst, url: str, body: dict[str, Any], headers: dict[str, str], timeout: float) -> None:
    """``result.calls`` calls, one thread each, released together by a barrier; into ``result``."""
    barrier = threading.Barrier(result.calls)
    lock = threading.Lock()

    def send() -> None:
        barrier.wait()
        statuses, retried, seconds = _one(url, body, headers, timeout)
        with lock:
            result.statuses.update(statuses)
            result.final[statuses[-1]] += 1
            result.retried += retried
            result.seconds.append(seconds)

    threads = [threading.Thread(target=send) for _ in range(result.calls)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def _one(
    url: str, body: dict[str, Any], headers: dict[str, str], timeout: float
) -> tuple[list[str], int, float]:
    """One dry run until its final answer: every status it got, the retries, and its seconds."""
    statuses: list[str] = []
    retried = 0
    with requests.Session() as session:
        began = time.monotonic()
        while True:
            try:
                resp = session.post(url, json=body, headers=headers, timeout=timeout)
            except requests.Timeout:
                statuses.append("timeout")
                break
            except requests.RequestException:
                statuses.append("connection error")
                break
            statuses.append(str(resp.status_code))
            wait = resp.headers.get("Retry-After")
            if resp.status_code != 503 or wait is None:
                break
            retried += 1
            time.sleep(_retry_after(wait))
        return statuses, retried, time.monotonic() - began


def _retry_after(value: str) -> float:
    """``Retry-After`` in seconds (a number of seconds, or an HTTP date)."""
    try:
        return max(0.0, float(value))
    except ValueError:
        from email.utils import parsedate_to_datetime

        return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())


def burst_table(found: list[Burst]) -> str:
    lines = [
        "| side | calls × dates | 200 | 503 (retried) | 500 | other | p50 | p95 | serial time of the "
        f"{found[0].calls if found else 0} | one call alone |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for b in found:
        other = sum(n for status, n in b.statuses.items() if status not in ("200", "503", "500"))
        lines.append(
            f"| {b.side} | {b.calls} × {b.dates} | {b.statuses['200']} | {b.statuses['503']} ({b.retried}) "
            f"| {b.statuses['500']} | {other} | {fmt(percentile(b.seconds, 50), ' s', 2)} "
            f"| {fmt(percentile(b.seconds, 95), ' s', 2)} | {fmt(b.serial, ' s', 2)} "
            f"| {fmt(b.alone, ' s', 3)} |"
        )
    failed = [f"{b.side}: final answers {dict(b.final)}" for b in found if set(b.final) - {"200"}]
    failed += [f"{b.side}: alone {b.alone_statuses}" for b in found if set(b.alone_statuses) - {"200"}]
    return "\n".join(lines + [f"failed calls: {'; '.join(failed)}"] if failed else lines)
