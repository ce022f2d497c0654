"""How many planning requests the api-server serves at once, and the answer to one that cannot get a turn.

Planning a request (:func:`backfill_controller.server.planner.plan_request`: the target's
timetable, its runs, a decision per date) is CPU work, and one api-server process does it under
one interpreter lock: forty requests served at once take at least as long as forty served one
after the other, and each used to hold a database connection all that time, so a burst exhausted
SQLAlchemy's pool (5 + 10 connections, 30 s) and ended in HTTP 500s. So each process serves at
most ``[backfill_controller] plans_at_once`` planning requests at a time (:func:`planning_turn`,
the first dependency of every route that plans: the front door, its dry run, re-running failed
dates and the controller's own ``plan`` call); the others wait their turn in the event loop,
first come first served, before anything of them runs: no thread, no database connection, not
even the caller's authentication (which reads the database too). A request answered this way
finishes as soon as it would alone behind the ones ahead of it, instead of all of a burst
finishing together at its end. One that waited ``plan_wait_seconds`` without a turn is answered
503 with ``Retry-After``, having changed nothing; the CLI, the controller's tasks and the page
wait that long and ask again.

The planner also gives its connection back while it computes (:func:`release`), so a request
holds one only while it reads.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import AsyncIterator
from typing import Any

from fastapi import HTTPException

from backfill_controller.domain.settings import PLAN_WAIT_SECONDS, PLANS_AT_ONCE

_TURNS: asyncio.Semaphore | None = None
#: Seconds the latest turns took, and how many requests wait for a turn now: a refused request's
#: ``Retry-After`` is about the time the queue ahead of it takes. The event loop is the only one
#: touching these.
_recent: list[float] = []
_RECENT = 20
_waiting = 0


def _turns() -> asyncio.Semaphore:
    global _TURNS
    if _TURNS is None:
        _TURNS = asyncio.Semaphore(max(1, PLANS_AT_ONCE.value()))
    return _TURNS


async def planning_turn() -> AsyncIterator[None]:
    """FastAPI dependency: hold one of the process's planning turns for the rest of the request;
    503 with ``Retry-After`` when none came within ``plan_wait_seconds`` (nothing of the request
    ran)."""
    global _waiting
    turns = _turns()
    _waiting += 1
    try:
        await asyncio.wait_for(turns.acquire(), timeout=max(0.0, PLAN_WAIT_SECONDS.value()))
    except TimeoutError:
        busy = "the api-server is busy planning other requests; this one was not started: ask again"
        raise HTTPException(
            503,
            {"message": busy},
            headers={"Retry-After": str(retry_after())},
        ) from None
    finally:
        _waiting -= 1
    began = time.monotonic()
    try:
        yield
    finally:
        turns.release()
        _recent.append(time.monotonic() - began)
        del _recent[:-_RECENT]


def retry_after() -> int:
    """Seconds a refused request should wait: about the time the requests waiting now take to be
    served (1 to 60)."""
    typical = sorted(_recent)[len(_recent) // 2] if _recent else 1.0
    ahead = _waiting + 1
    return max(1, min(60, math.ceil(typical * ahead / max(1, PLANS_AT_ONCE.value()))))


def release(session: Any) -> None:
    """End the session's transaction, so its connection goes back to the pool while the caller
    computes; the next query takes one again. Only for a session that has written nothing yet."""
    session.commit()
