"""The api-server plans at most ``plans_at_once`` requests at a time; one that waited
``plan_wait_seconds`` for a turn is answered 503 with ``Retry-After``, and nothing ran for it."""

from __future__ import annotations

import threading
import time

import pytest
from fastapi import HTTPException

from backfill_controller.server import admission


@pytest.fixture(autouse=True)
def fresh(monkeypatch):
    monkeypatch.setattr(admission, "_TURNS", None)
    monkeypatch.setattr(admission, "_recent", [])
    monkeypatch.setenv("AIRFLOW__BACKFILL_CONTROLLER__PLANS_AT_ONCE", "2")
    monkeypatch.setenv("AIRFLOW__BACKFILL_CONTROLLER__PLAN_WAIT_SECONDS", "0.3")


def test_no_more_than_plans_at_once_requests_are_planned_together():
    inside, most, lock = [0], [0], threading.Lock()

    def plan() -> None:
        with admission.turn("a dry run"):
            with lock:
                inside[0] += 1
                most[0] = max(most[0], inside[0])
            time.sleep(0.02)
            with lock:
                inside[0] -= 1

    threads = [threading.Thread(target=plan) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert most[0] == 2


def test_a_request_without_a_turn_in_time_is_answered_503_with_retry_after_and_runs_nothing():
    release, ran = threading.Event(), []

    def hold() -> None:
        with admission.turn("a long plan"):
            release.wait(5)

    holders = [threading.Thread(target=hold) for _ in range(2)]
    for holder in holders:
        holder.start()
    time.sleep(0.05)
    with pytest.raises(HTTPException) as refused, admission.turn("the backfill of 'sales'"):
        ran.append(True)
    release.set()
    for holder in holders:
        holder.join()
    assert refused.value.status_code == 503 and ran == []
    assert "'sales' was not started" in refused.value.detail["message"]
    assert 1 <= int(refused.value.headers["Retry-After"]) <= 60


def test_a_turn_is_given_back_when_the_plan_fails():
    for _ in range(3):
        with pytest.raises(ValueError), admission.turn("a bad request"):
            raise ValueError("refused")
    with admission.turn("the next request"):
        pass
