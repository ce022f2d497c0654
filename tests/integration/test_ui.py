"""The Backfills page in a real browser, against the live Airflow of the suite.

Headless Chromium (Debian's ``chromium``, not a Playwright download) driven by Playwright logs in
through the Airflow UI's own login form, opens the page from the UI navigation and directly,
checks the per-date grid against the target runs' states from the REST API, follows a square to
its run, and saves the screenshot the README shows (``docs/backfills-page.png``).

Without Playwright or Chromium the browser tests are skipped (with how to install them), except
when ``CI`` or ``BACKFILL_REQUIRE_BROWSER`` is set: then they fail.
"""

from __future__ import annotations

import importlib.util
import json
import os
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote, urlsplit

import pytest
import requests

from backfill_controller.client.rest import ApiError
from backfill_controller.contract import CONTROLLER_DAG_ID, URL_PREFIX, Task

pytestmark = pytest.mark.backend("sqlite")

REPO_ROOT = Path(__file__).resolve().parents[2]
SCREENSHOT = REPO_ROOT / "docs" / "backfills-page.png"
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
BROWSER_REQUIRED = bool(os.environ.get("CI") or os.environ.get("BACKFILL_REQUIRE_BROWSER"))
TIMEOUT_MS = 60_000  # a loaded 2-core machine runs four Airflow services next to the browser

TARGET = "bf_daily"
DATES = [f"2024-09-0{day}" for day in range(1, 7)]  # no other test uses September 2024
FAILING = "2024-09-03"
PAGE = f"{URL_PREFIX}/ui"
API = f"{URL_PREFIX}/api/backfills"
FAIL_VARIABLE = "bf_fail_dates"


def _missing_browser() -> str | None:
    if importlib.util.find_spec("playwright") is None:
        return "Playwright is not installed: pip install -r requirements-dev.txt -c constraints.txt"
    if not os.access(CHROMIUM, os.X_OK):
        return f"no Chromium at {CHROMIUM}: apt-get install chromium (or `make check-chromium`)"
    return None


MISSING_BROWSER = _missing_browser()
# A mark, not only a fixture's skip: pytest would start the (session-scoped) Airflow first.
needs_browser = pytest.mark.skipif(
    bool(MISSING_BROWSER) and not BROWSER_REQUIRED, reason=str(MISSING_BROWSER)
)


def _set_variable(airflow, value: str) -> None:
    for _ in range(5):  # SQLite may answer 500 "database is locked" under load: nothing was written
        airflow.api("DELETE", f"/api/v2/variables/{FAIL_VARIABLE}")
        resp = airflow.api("POST", "/api/v2/variables", json={"key": FAIL_VARIABLE, "value": value})
        if resp.status_code not in (500, 503):
            break
        time.sleep(3)
    assert resp.status_code in (200, 201), resp.text


def _trigger(airflow, conf: dict[str, Any]) -> str:
    """Trigger the controller under a known run_id, retrying a busy API (SQLite locked, timeouts)."""
    run_id = f"manual__{datetime.now(UTC).isoformat()}"  # what Airflow would name it
    body = {"logical_date": None, "conf": conf, "dag_run_id": run_id}
    for _ in range(10):
        try:
            resp = airflow.api("POST", f"/api/v2/dags/{CONTROLLER_DAG_ID}/dagRuns", json=body, timeout=60)
        except ApiError:  # Airflow did not answer in time
            time.sleep(3)
            continue
        if resp.status_code in (200, 409):  # 409: an earlier attempt did create it
            return run_id
        assert resp.status_code >= 500, resp.text[:500]
        time.sleep(3)
    pytest.fail(f"could not trigger {CONTROLLER_DAG_ID}")


def _wait(airflow, run_id: str, timeout: float) -> str:
    """Like ``airflow.wait_for_run``, but a slow answer from a loaded api-server is not a failure."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        airflow.check_alive()
        try:
            resp = airflow.api("GET", f"/api/v2/dags/{CONTROLLER_DAG_ID}/dagRuns/{run_id}", timeout=60)
        except ApiError:  # Airflow did not answer in time
            resp = None
        if resp is not None and resp.status_code == 200 and resp.json()["state"] in ("success", "failed"):
            return str(resp.json()["state"])
        time.sleep(2)
    pytest.fail(f"{CONTROLLER_DAG_ID} run {run_id} did not finish in {timeout:.0f}s")


@pytest.fixture(scope="module")
def backfill(airflow) -> Iterator[dict[str, Any]]:
    """One finished controller backfill of bf_daily over DATES with FAILING failing, and the truth:
    ``{"run_id", "state", "runs": {YYYY-MM-DD: {"run_id", "state"}}}`` from the REST API."""
    previous = airflow.api("GET", f"/api/v2/variables/{FAIL_VARIABLE}")
    _set_variable(airflow, json.dumps({TARGET: [FAILING]}))
    try:
        run_id = _trigger(
            airflow,
            {
                "dag_id": TARGET,
                "start_date": DATES[0],
                "end_date": DATES[-1],
                "reason": "Backfills page test",
            },
        )
        state = _wait(airflow, run_id, timeout=900)
    finally:
        _set_variable(airflow, previous.json()["value"] if previous.status_code == 200 else "{}")
    data = airflow._json(
        "GET",
        f"/api/v2/dags/{TARGET}/dagRuns",
        params={
            "logical_date_gte": f"{DATES[0]}T00:00:00Z",
            "logical_date_lte": f"{DATES[-1]}T23:59:59Z",
            "limit": 100,
        },
    )
    runs = {
        r["logical_date"][:10]: {"run_id": r["dag_run_id"], "state": r["state"]} for r in data["dag_runs"]
    }
    yield {"run_id": run_id, "state": state, "runs": runs}


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """A Chromium browser context with a fresh profile (Playwright, sync API)."""
    if MISSING_BROWSER:
        pytest.fail(f"{MISSING_BROWSER} (required: CI or BACKFILL_REQUIRE_BROWSER is set)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            user_data_dir=str(tmp_path_factory.mktemp("chromium-profile")),
            executable_path=CHROMIUM,
            args=CHROMIUM_ARGS,
            headless=True,
            viewport={"width": 1280, "height": 800},
            device_scale_factor=1,
        )
        context.set_default_timeout(TIMEOUT_MS)
        try:
            yield context
        finally:
            context.close()


@pytest.fixture(scope="module")
def page(browser, airflow, backfill) -> Any:
    """A browser tab signed in through the Airflow UI's own login form (it sets the `_token` cookie)."""
    tab = browser.pages[0] if browser.pages else browser.new_page()
    tab.goto(f"{airflow.url}/")
    tab.wait_for_url("**/auth/login**")
    tab.fill("input[name=username]", airflow.username)
    tab.fill("input[name=password]", airflow.password)
    tab.get_by_role("button", name="Sign in").click()
    tab.wait_for_url(lambda url: "/auth/login" not in url)
    assert any(c["name"] == "_token" for c in browser.cookies(airflow.url)), "login set no _token cookie"
    return tab


def _squares(frame, controller_run_id: str) -> list[dict[str, str]]:
    """The grid squares of one backfill as the browser rendered them, once the user opened it (the
    page draws them from its detail)."""
    toggle = frame.locator(f'tr.backfill[data-run-id="{controller_run_id}"] button.dates')
    if toggle.get_attribute("aria-expanded") != "true":
        toggle.click()
    grid = frame.locator(f'.calendar[data-run-id="{controller_run_id}"]')
    grid.wait_for()
    return grid.locator(".cell").evaluate_all(
        """cells => cells.map(c => ({
            logical_date: c.dataset.logicalDate, state: c.dataset.state,
            run_id: c.dataset.runId, href: c.href || null}))"""
    )


def test_controller_run_finished_with_the_failing_date(backfill) -> None:
    assert backfill["state"] == "failed"
    assert sorted(backfill["runs"]) == DATES
    states = {day: run["state"] for day, run in backfill["runs"].items()}
    assert states == {day: ("failed" if day == FAILING else "success") for day in DATES}


@pytest.mark.parametrize("path", [API, PAGE], ids=["json api", "html page"])
def test_without_credentials_is_refused(airflow, path: str) -> None:
    resp = requests.get(f"{airflow.url}{path}", timeout=30)
    assert resp.status_code in (401, 403), resp.text[:300]


def test_a_bad_token_is_refused(airflow) -> None:
    resp = requests.get(f"{airflow.url}{API}", headers={"Authorization": "Bearer not-a-jwt"}, timeout=30)
    assert resp.status_code in (401, 403), resp.text[:300]


def test_api_reports_live_run_states_with_a_bearer_token(airflow, backfill) -> None:
    resp = airflow.api("GET", API, params={"limit": 200})
    assert resp.status_code == 200, resp.text[:500]
    entry = next(b for b in resp.json()["backfills"] if b["run_id"] == backfill["run_id"])
    assert entry["target_dag_id"] == TARGET
    assert entry["reason"] == "Backfills page test"
    assert entry["triggered_by"] == airflow.username
    assert entry["window"] == {
        "start_date": f"{DATES[0]}T00:00:00+00:00",
        "end_date": f"{DATES[-1]}T00:00:00+00:00",
        "dates": None,
        "first_date": f"{DATES[0]}T00:00:00+00:00",
        "last_date": f"{DATES[-1]}T00:00:00+00:00",
    }
    assert entry["progress"]["counts"] == {"success": 5, "failed": 1}
    assert entry["eta"] is None  # finished
    assert "cells" not in entry  # the list sums up; the detail has the dates

    detail = airflow._json("GET", f"{API}/{quote(backfill['run_id'], safe='')}")

    assert [(c["logical_date"][:10], c["state"]) for c in detail["cells"]] == [
        (day, backfill["runs"][day]["state"]) for day in DATES
    ]
    assert {k: v for k, v in detail.items() if not k.startswith("cells")} == entry


def test_the_list_filters_by_target_and_phase(airflow, backfill) -> None:
    ours = {"dag_id": TARGET, "state": "failed", "limit": 200}
    found = airflow._json("GET", API, params=ours)
    assert backfill["run_id"] in [b["run_id"] for b in found["backfills"]]
    assert {(b["target_dag_id"], b["phase"]) for b in found["backfills"]} == {(TARGET, "failed")}
    for other in ({**ours, "state": "succeeded"}, {**ours, "dag_id": "bf_hourly"}):
        kept = airflow._json("GET", API, params=other)["backfills"]
        assert backfill["run_id"] not in [b["run_id"] for b in kept]


@needs_browser
def test_nav_entry_opens_the_page_inside_the_airflow_ui(page, airflow, backfill) -> None:
    page.goto(f"{airflow.url}/")
    page.get_by_role("link", name="Backfills").first.click()
    page.wait_for_url("**/plugin/backfills**")
    frame = page.frame_locator('iframe[title="Backfills"]')

    squares = _squares(frame, backfill["run_id"])

    assert len(squares) == len(DATES)


@needs_browser
def test_a_square_opens_its_run_in_the_airflow_ui(page, airflow, backfill) -> None:
    page.goto(f"{airflow.url}/plugin/backfills")
    frame = page.frame_locator('iframe[title="Backfills"]')
    _squares(frame, backfill["run_id"])  # rendered
    failed_run = backfill["runs"][FAILING]["run_id"]

    frame.locator(f'.calendar[data-run-id="{backfill["run_id"]}"] .cell[data-state="failed"]').click()

    page.wait_for_url(lambda url: unquote(urlsplit(url).path) == f"/dags/{TARGET}/runs/{failed_run}")
    page.get_by_text(failed_run).first.wait_for()  # the UI's run page rendered


@needs_browser
def test_grid_matches_the_real_run_states(page, airflow, backfill) -> None:
    page.goto(f"{airflow.url}{PAGE}")

    squares = _squares(page, backfill["run_id"])

    assert [s["logical_date"][:10] for s in squares] == DATES
    assert {s["logical_date"][:10]: s["state"] for s in squares} == {
        day: run["state"] for day, run in backfill["runs"].items()
    }
    assert sorted(s["state"] for s in squares) == ["failed"] + ["success"] * 5
    for square in squares:
        run_id = backfill["runs"][square["logical_date"][:10]]["run_id"]
        assert square["run_id"] == run_id
        assert square["href"] == f"{airflow.url}/dags/{TARGET}/runs/{quote(run_id, safe='')}"
    _save_screenshot(page, backfill["run_id"])


@needs_browser
def test_the_filters_keep_the_backfills_of_a_target_in_a_phase(page, airflow, backfill) -> None:
    page.goto(f"{airflow.url}{PAGE}")
    row = page.locator(f'tr.backfill[data-run-id="{backfill["run_id"]}"]')
    row.wait_for()

    page.locator("#filter-state").select_option("succeeded")
    row.wait_for(state="detached")
    page.locator("#filter-dag").fill(TARGET)
    page.locator("#filter-state").select_option("failed")
    row.wait_for()

    rows = page.locator("tr.backfill").evaluate_all(
        "rows => rows.map(r => [r.querySelector('a.target').textContent, r.dataset.phase])"
    )
    assert rows and {tuple(r) for r in rows} == {(TARGET, "failed")}


@needs_browser
def test_a_running_backfill_shows_its_estimated_end(page, airflow, backfill) -> None:
    """The page shows the ``eta`` the list answers (here put into the answer: this backfill has
    finished, and a real estimate is measured in test_eta.py)."""
    eta = {"end": "2030-01-02T03:04:05+00:00", "remaining_seconds": 4530.0, "basis": "finished_runs"}

    def with_eta(route) -> None:
        response = route.fetch()
        data = response.json()
        for b in data["backfills"]:
            if b["run_id"] == backfill["run_id"]:
                b["eta"] = eta
        route.fulfill(response=response, json=data)

    page.route(lambda url: "/api/backfills?" in url, with_eta)
    try:
        page.goto(f"{airflow.url}{PAGE}")
        shown = page.locator(f'tr.backfill[data-run-id="{backfill["run_id"]}"] .eta')
        assert shown.inner_text() == "ETA 2030-01-02 03:04:05 (1:15:30 left)"
    finally:
        page.unroute_all()


def _save_screenshot(page, controller_run_id: str) -> None:
    """The page from its top down to this backfill's grid (the newest backfill, so near the top)."""
    grid = page.locator(f'.calendar[data-run-id="{controller_run_id}"]')
    box = grid.bounding_box()
    assert box is not None
    page.mouse.move(0, 0)  # no hover outline in the picture
    SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
    width = page.evaluate("document.documentElement.scrollWidth")
    height = min(box["y"] + box["height"] + 24, 900)
    page.screenshot(
        path=str(SCREENSHOT), full_page=True, clip={"x": 0, "y": 0, "width": width, "height": height}
    )


@needs_browser
def test_the_new_backfill_form_previews_refuses_and_starts_through_the_front_door(page, airflow) -> None:
    page.goto(f"{airflow.url}{PAGE}")
    page.locator("#new > summary").click()
    form = page.locator("#new-form")
    offered = page.locator("#backfillable option")
    offered.first.wait_for(state="attached")
    targets = offered.evaluate_all("options => options.map(o => o.value)")
    assert TARGET in targets and CONTROLLER_DAG_ID not in targets  # the DAGs this user may backfill
    form.locator("#more summary").click()
    more = form.locator("#more-keys")
    assert more.locator("[name=max_active_runs]").count() == 1 and more.locator("[name=conf]").count() == 1
    form.locator("input[name=dag_id]").fill(TARGET)
    form.locator("input[name=start_date]").fill("2024-09-20")
    form.locator("input[name=end_date]").fill("2024-09-10")  # before the start: refused at once

    page.locator("#preview-button").click()

    refusal = page.locator("#refusal")
    refusal.wait_for()
    assert "refused (HTTP 422)" in refusal.inner_text() and "start_date" in refusal.inner_text()

    form.locator("input[name=end_date]").fill("2024-09-22")
    page.locator("#preview-button").click()

    preview = page.locator('#preview .calendar[data-run-id="preview"] .cell')
    preview.first.wait_for()
    assert preview.count() == 3
    assert page.locator("#preview-counts").inner_text() == "3 dates · 3 triggered"
    assert airflow.dag_runs(TARGET, "2024-09-20", "2024-09-22") == []  # a preview creates nothing

    page.locator("#start-button").click()

    started = page.locator("#started")
    started.wait_for()
    run_id = started.inner_text().removeprefix("started ")
    assert _wait(airflow, run_id, timeout=600) == "success"
    report = airflow.xcom(CONTROLLER_DAG_ID, run_id, Task.REPORT)
    assert report["triggered_by"] == airflow.username
    assert [d["logical_date"][:10] for d in report["dates"]] == ["2024-09-20", "2024-09-21", "2024-09-22"]

    # Explicit dates instead of a window, and a key of "More options", typed as the request wants.
    form.locator("input[name=start_date]").fill("")
    form.locator("input[name=end_date]").fill("")
    form.locator("input[name=dates]").fill("2024-09-25, 2024-09-27")
    more.locator("[name=max_active_runs]").fill("1")
    page.locator("#preview-button").click()
    page.locator("#preview-counts").filter(has_text="2 dates").wait_for()
    assert preview.count() == 2


@needs_browser
def test_a_backfill_is_paused_resumed_and_cancelled_from_the_page(page, airflow) -> None:
    """The buttons the page shows the signed-in user; cancel asks first, then fails the queued runs."""
    dates = ["2024-08-11", "2024-08-16"]
    run_id = _trigger(
        airflow, {"dag_id": "bf_capped", "start_date": dates[0], "end_date": dates[1], "max_active_runs": 1}
    )
    page.goto(f"{airflow.url}{PAGE}")
    row = page.locator(f'tr.backfill[data-run-id="{run_id}"]')

    def shown_in(phases: tuple[str, ...]) -> None:
        page.wait_for_function(
            "([id, phases]) => phases.includes(document.querySelector("
            '`tr.backfill[data-run-id="${id}"]`)?.dataset.phase)',
            arg=[run_id, list(phases)],
            timeout=120_000,
        )

    def press(control: str, phases: tuple[str, ...]) -> None:
        row.locator(f'button[data-control="{control}"]').click()
        shown_in(phases)

    shown_in(("running",))  # planned: its dates are starting
    press("pause", ("paused",))
    assert page.locator("#action-status").inner_text() == f"backfill {run_id}: paused"
    press("resume", ("running",))
    page.once("dialog", lambda dialog: dialog.accept())
    press("cancel", ("cancelling", "cancelled"))

    assert airflow.wait_for_run(CONTROLLER_DAG_ID, run_id, timeout=60) == "failed"
    runs = airflow.dag_runs("bf_capped", *dates)
    assert runs and "queued" not in {r["state"] for r in runs}  # nothing left queued
    detail = airflow._json("GET", f"{API}/{quote(run_id, safe='')}")
    assert [(h["action"], h["by"]) for h in detail["history"]] == [
        ("pause", "admin"),
        ("resume", "admin"),
        ("cancel", "admin"),
    ]
    assert row.locator("button[data-control]").count() == 0 or detail["phase"] == "cancelling"
