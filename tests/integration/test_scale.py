"""Scale: a 10,000-date request plans and reports within Airflow's limits.

A real run over 10,000 dates takes hours on a 2-core machine, so the full size is a dry run (it
plans, segments and reports every date, and creates nothing); real runs that cross a segment
boundary are in test_controller.py (``segment_size``).
"""

from __future__ import annotations

from typing import Any

import pytest

from backfill_controller.contract import CONTROLLER_DAG_ID, URL_PREFIX, Task, XCom

pytestmark = pytest.mark.backend("postgres")

ONE_MB = 1024 * 1024
BACKFILLS = f"{URL_PREFIX}/api/backfills"
HOURS_IN_WINDOW = 9961  # 2023-01-01T00:00 .. 2024-02-20T00:00, hourly


@pytest.fixture(scope="module")
def big_dry_run(airflow):
    conf = {"dag_id": "bf_hourly", "start_date": "2023-01-01", "end_date": "2024-02-20", "dry_run": True}
    run_id = airflow.trigger(CONTROLLER_DAG_ID, conf)
    state = airflow.wait_for_run(CONTROLLER_DAG_ID, run_id, timeout=600)
    return run_id, state


def test_ten_thousand_dates_are_planned_and_reported(airflow, big_dry_run):
    run_id, state = big_dry_run
    assert state == "success"
    report = airflow.xcom(CONTROLLER_DAG_ID, run_id, Task.REPORT)
    assert report["counts"]["dates"] == report["counts"]["triggered"] == HOURS_IN_WINDOW
    assert report["segments"] == 10  # 1000 dates per segment: no mapped task near max_map_length
    assert report["dates_truncated"] is True and len(report["dates"]) <= 2000


def test_no_xcom_of_the_run_reaches_one_megabyte(airflow, big_dry_run):
    run_id, _ = big_dry_run
    sizes = airflow.xcom_sizes(CONTROLLER_DAG_ID, run_id, (Task.PLAN, Task.REPORT))
    assert {
        f"{Task.PLAN}.{XCom.PLANS}",
        f"{Task.PLAN}.{XCom.REQUEST}",
        f"{Task.REPORT}.{XCom.RETURN_VALUE}",
    } <= set(sizes), sizes
    assert max(sizes.values()) < ONE_MB, sizes


def test_planning_stays_within_memory_bounds(airflow, big_dry_run):
    run_id, _ = big_dry_run
    stats = airflow.xcom(CONTROLLER_DAG_ID, run_id, Task.PLAN, key=XCom.STATS)
    assert stats["dates"] == HOURS_IN_WINDOW
    assert stats["peak_rss_mb"] < 300, stats


def test_a_window_past_the_maximum_dates_per_request_is_refused(airflow):
    conf = {"dag_id": "bf_hourly", "start_date": "2022-01-01", "end_date": "2024-02-20", "dry_run": True}
    run_id = airflow.trigger(CONTROLLER_DAG_ID, conf)
    assert airflow.wait_for_run(CONTROLLER_DAG_ID, run_id, timeout=600) == "failed"
    error = airflow.xcom(CONTROLLER_DAG_ID, run_id, Task.REPORT)["error"]
    assert (
        "end_date" in error
        and "more than 10000 dates" in error
        and "[backfill_controller] max_dates_per_request" in error
    )


def clone_backfill(url: str, run_id: str, copies: int) -> list[str]:
    """Copy a finished controller run, with its XComs, task instances, record (its dates too) and
    recorded outcome, under new run ids: many backfills of the same size without running each (a
    9,961-date backfill takes minutes)."""
    import uuid

    from sqlalchemy import MetaData, create_engine, insert, literal, select

    engine = create_engine(url)
    tables = MetaData()
    names = (
        "dag_run",
        "xcom",
        "task_instance",
        "backfill_controller_outcome",
        "backfill_controller_ledger",
        "backfill_controller_run",
        "backfill_controller_date",
    )
    tables.reflect(engine, only=names)
    run, xcom, ti, outcome, ledger, bound, dates = (tables.tables[name] for name in names)
    made = []
    with engine.begin() as db:
        source = dict(
            db.execute(select(run).where(run.c.dag_id == CONTROLLER_DAG_ID, run.c.run_id == run_id))
            .mappings()
            .one()
        )
        xcoms = [
            dict(r) for r in db.execute(select(xcom).where(xcom.c.dag_run_id == source["id"])).mappings()
        ]
        tis = [
            dict(r)
            for r in db.execute(
                select(ti).where(ti.c.dag_id == CONTROLLER_DAG_ID, ti.c.run_id == run_id)
            ).mappings()
        ]
        # How it ended, as its report recorded it (the list reads no date of an ended backfill).
        ended = dict(
            db.execute(select(outcome).where(outcome.c.controller_run_id == run_id)).mappings().one()
        )
        record = dict(db.execute(select(ledger).where(ledger.c.controller_run_id == run_id)).mappings().one())
        head = dict(db.execute(select(bound).where(bound.c.backfill_id == record["id"])).mappings().one())
        date_columns = [c for c in dates.c if c.name not in ("id", "backfill_id")]
        for k in range(copies):
            new = f"{run_id}_copy{k:03d}"
            values = {**{c: v for c, v in source.items() if c != "id"}, "run_id": new}
            pk = db.execute(run.insert().values(**values).returning(run.c.id)).scalar_one()
            db.execute(ti.insert(), [{**t, "id": uuid.uuid4(), "run_id": new} for t in tis])
            db.execute(xcom.insert(), [{**x, "dag_run_id": pk, "run_id": new} for x in xcoms])
            db.execute(
                outcome.insert().values(
                    {**{c: v for c, v in ended.items() if c != "id"}, "controller_run_id": new}
                )
            )
            copy = db.execute(
                ledger.insert()
                .values({**{c: v for c, v in record.items() if c != "id"}, "controller_run_id": new})
                .returning(ledger.c.id)
            ).scalar_one()
            db.execute(
                bound.insert().values(
                    {**{c: v for c, v in head.items() if c != "id"}, "backfill_id": copy, "dag_run_pk": pk}
                    | {"run_id": new}
                )
            )
            db.execute(
                insert(dates).from_select(
                    ["backfill_id", *(c.name for c in date_columns)],
                    select(literal(copy), *date_columns).where(dates.c.backfill_id == record["id"]),
                )
            )
            made.append(new)
    engine.dispose()
    return made


def api_server_rss(airflow) -> int:
    """Resident memory of the api-server and its workers, in bytes."""
    import psutil

    root = psutil.Process(airflow.processes["api-server"].pid)
    return sum(p.memory_info().rss for p in [root, *root.children(recursive=True)])


def timed_with_peak_rss(airflow, call) -> tuple[Any, float, int]:
    """``call()``'s answer, its seconds, and the api-server's highest memory meanwhile (sampled)."""
    import threading
    import time

    peak, done = [api_server_rss(airflow)], threading.Event()

    def sample() -> None:
        while not done.wait(0.05):
            peak.append(api_server_rss(airflow))

    sampler = threading.Thread(target=sample)
    sampler.start()
    started = time.perf_counter()
    try:
        answer = call()
    finally:
        seconds = time.perf_counter() - started
        done.set()
        sampler.join()
    return answer, seconds, max(peak)


def test_two_hundred_backfills_of_ten_thousand_dates_each_are_listed(airflow, big_dry_run, figures):
    """The list answers summaries, newest first, 50 a page; a backfill's dates come with its detail."""
    run_id, _ = big_dry_run
    clones = clone_backfill(airflow.sql_alchemy_conn, run_id, 199)
    original = airflow._json("GET", f"{BACKFILLS}/{run_id}", timeout=300)
    before = api_server_rss(airflow)
    pages, seconds, peaks = [], [], []
    for offset in (0, 150):
        page, took, peak = timed_with_peak_rss(
            airflow,
            lambda offset=offset: airflow._json("GET", BACKFILLS, params={"offset": offset}, timeout=600),
        )
        pages.append(page)
        seconds.append(took)
        peaks.append(peak)
    detail, detail_seconds, _ = timed_with_peak_rss(
        airflow, lambda: airflow._json("GET", f"{BACKFILLS}/{clones[-1]}", timeout=300)
    )
    figures.measure(
        "Backfills list with 200 backfills of 9,961 dates (dry runs, PostgreSQL)",
        f"a page of 50 in {seconds[0]:.1f} s (newest) and {seconds[1]:.1f} s (oldest); one backfill's "
        f"detail with its 9,961 dates in {detail_seconds:.1f} s; api-server memory "
        f"{before / 2**20:.0f} MB before, at most {max(peaks) / 2**20:.0f} MB",
    )
    assert [b["run_id"] for b in pages[0]["backfills"]] == clones[::-1][:50]
    assert [b["run_id"] for b in pages[1]["backfills"]][:49] == clones[::-1][150:]
    assert pages[0]["total"] >= 200
    for shown in (*pages[0]["backfills"], *pages[1]["backfills"][:49]):
        assert "cells" not in shown  # summaries only
        assert shown["phase"] == original["phase"] == "planned"
        assert shown["progress"] == original["progress"]
    assert len(detail["cells"]) == HOURS_IN_WINDOW and detail["progress"] == original["progress"]
