"""The api-server serves at most ``plans_at_once`` planning requests at a time, first come first
served; one that waited ``plan_wait_seconds`` for a turn is answered 503 with ``Retry-After``, and
nothing ran for it."""

from __future__ import annotations

import asyncio
from contextlib import asynccontextmanager

import pytest
from fastapi import HTTPException

from backfill_controller.server import admission

turn = asynccontextmanager(admission.planning_turn)


@pytest.fixture(autouse=True)
def fresh(monkeypatch):
    monkeypatch.setattr(admission, "_TURNS", None)
    monkeypatch.setattr(admission, "_recent", [])
    monkeypatch.setattr(admission, "_waiting", 0)
    monkeypatch.setenv("AIRFLOW__BACKFILL_CONTROLLER__PLANS_AT_ONCE", "2")
    monkeypatch.setenv("AIRFLOW__BACKFILL_CONTROLLER__PLAN_WAIT_SECONDS", "0.3")


def test_no_more_than_plans_at_once_requests_are_served_together_in_the_order_they_came():
    inside, most, served = [0], [0], []

    async def request(k: int) -> None:
        async with turn():
            inside[0] += 1
            most[0] = max(most[0], inside[0])
            served.append(k)
            await asyncio.sleep(0.02)
            inside[0] -= 1

    async def burst() -> None:
        await asyncio.gather(*(request(k) for k in range(8)))

    asyncio.run(burst())
    assert most[0] == 2
    assert served == list(range(8))


def test_a_request_without_a_turn_in_time_is_answered_503_with_retry_after_and_runs_nothing():
    ran: list[bool] = []

    async def hold(release: asyncio.Event) -> None:
        async with turn():
            await release.wait()

    async def late() -> HTTPException:
        release = asyncio.Event()
        holders = [asyncio.create_task(hold(release)) for _ in range(2)]
        await asyncio.sleep(0.05)
        with pytest.raises(HTTPException) as refused:
            async with turn():
                ran.append(True)
        release.set()
        await asyncio.gather(*holders)
        return refused.value

    refused = asyncio.run(late())
    assert refused.status_code == 503 and ran == []
    assert "busy planning other requests; this one was not started" in refused.detail["message"]
    assert 1 <= int(refused.headers["Retry-After"]) <= 60
    assert admission._waiting == 0


def test_a_turn_is_given_back_when_the_request_fails():
    async def requests() -> None:
        for _ in range(3):
            with pytest.raises(ValueError):
                async with turn():
                    raise ValueError("refused")
        async with turn():
            pass

    asyncio.run(requests())


def test_every_route_that_plans_takes_its_turn_before_anything_else_of_it():
    from backfill_controller.server.web import app

    planning = {
        "/api/backfills",
        "/api/backfills/dry_run",
        "/api/controller_runs/{run_id}/plan",
        "/api/backfills/{run_id}/rerun_failed",
    }
    for route in app.routes:
        if getattr(route, "path", None) in planning and "POST" in route.methods:
            first = route.dependant.dependencies[0].call
            assert first is admission.planning_turn, route.path
            planning.discard(route.path)
    assert planning == set()
