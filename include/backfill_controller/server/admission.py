"""How many requests the api-server plans at once, and the answer to one that cannot get a turn.

Planning a request (:func:`backfill_controller.server.planner.plan_request`: the target's
timetable, its runs, a decision per date) is CPU work, and one api-server process does it under
one interpreter lock: forty requests planned at once take as long as forty planned one after the
other, and each holds a database connection all that time, so a burst used to exhaust
SQLAlchemy's pool (5 + 10 connections, 30 s) and end in HTTP 500s. So each process plans at most
``[backfill_controller] plans_at_once`` requests at a time (:func:`turn`); the others wait their
turn holding no database connection, first come first served. A request that waited
``plan_wait_seconds`` without a turn is answered 503 with ``Retry-After``, having changed
nothing; the CLI, the controller's tasks and the page wait that long and ask again.

The planner also gives its connection back while it computes (:func:`release`), so a request
holds one only while it reads.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from fastapi import HTTPException

from backfill_controller.domain.settings import PLAN_WAIT_SECONDS, PLANS_AT_ONCE

_LOCK = threading.Lock()
_TURNS: threading.Semaphore | None = None
#: Seconds the latest plans took, and how many requests wait for a turn now: a refused request's
#: ``Retry-After`` is about the time the queue ahead of it takes.
_recent: list[float] = []
_RECENT = 20
_waiting = 0


def _turns() -> threading.Semaphore:
    global _TURNS
    with _LOCK:
        if _TURNS is None:
            _TURNS = threading.Semaphore(max(1, PLANS_AT_ONCE.value()))
        return _TURNS


@contextmanager
def turn(what: str) -> Iterator[None]:
    """Hold one of the process's planning turns while the block runs; 503 with ``Retry-After``
    when none came within ``plan_wait_seconds`` (nothing was read or changed yet)."""
    global _waiting
    turns = _turns()
    with _LOCK:
        _waiting += 1
    try:
        got = turns.acquire(timeout=max(0.0, PLAN_WAIT_SECONDS.value()))
    finally:
        with _LOCK:
            _waiting -= 1
    if not got:
        raise HTTPException(
            503,
            {"message": f"the api-server is busy planning other requests; {what} was not started: ask again"},
            headers={"Retry-After": str(retry_after())},
        )
    began = time.monotonic()
    try:
        yield
    finally:
        turns.release()
        with _LOCK:
            _recent.append(time.monotonic() - began)
            del _recent[:-_RECENT]


def retry_after() -> int:
    """Seconds a refused request should wait: about the time the requests waiting now take to be
    planned (1 to 60)."""
    with _LOCK:
        typical = sorted(_recent)[len(_recent) // 2] if _recent else 1.0
        ahead = _waiting + 1
    return max(1, min(60, math.ceil(typical * ahead / max(1, PLANS_AT_ONCE.value()))))


def release(session: Any) -> None:
    """End the session's transaction, so its connection goes back to the pool while the caller
    computes; the next query takes one again. Only for a session that has written nothing yet."""
    session.commit()
