"""The /analytics page in headless Chromium against the live server: totals, charts, breakdown, live updates
from the websocket, export links and the budget form (only for those who may write)."""
from __future__ import annotations

import csv
import io
import os
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest

from app.services import analytics
from tests.conftest import ADMIN_PASSWORD, ROOT, unique

pytestmark = pytest.mark.browser
CHROMIUM = os.environ.get("LOOM_TEST_CHROMIUM") or "/usr/bin/chromium"
SHOTS = ROOT / "test-artifacts" / "screenshots"
MODELS = [("ui-model-a", 1200, 80, 25.0), ("ui-model-a", 900, 60, 35.0), ("ui-model-b", 400, 40, 90.0)]


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    if not Path(CHROMIUM).exists():
        pytest.fail(f"Chromium not found at {CHROMIUM} (apt-get install chromium, or set LOOM_TEST_CHROMIUM)")
    with sync_playwright() as playwright:
        instance = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
        yield instance
        instance.close()


@pytest.fixture()
def http(live_server):
    with httpx.Client(base_url=f"{live_server.url}/api/v1", timeout=30,
                      headers={"Authorization": f"Bearer {live_server.token()}"}) as client:
        yield client


def open_page(browser, live_server, username: str, password: str, path: str, errors: list[str]):
    context = browser.new_context(viewport={"width": 1280, "height": 1000})
    context.set_default_timeout(15_000)
    page = context.new_page()
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(f"{live_server.url}/login?next={quote(path)}")
    page.fill("#username", username)
    page.fill("#password", password)
    page.click("button[type=submit]")
    page.wait_for_selector("body[data-loaded]")
    return context, page


def total(page, key: str) -> str:
    return page.get_attribute(f'[data-total="{key}"]', "data-value")


def test_analytics_page_shows_live_totals_charts_and_edits_the_budget(ctx, browser, live_server, http):
    project = http.post("/projects", json={"name": unique("ui-analytics")}).json()
    http.put("/analytics/prices/ui-model-a", json={"prompt_usd_per_mtok": 5, "completion_usd_per_mtok": 20})
    for model, prompt, completion, latency in MODELS:
        analytics.record_request(model=model, persona="engineer", project_id=project["id"], prompt_tokens=prompt,
                                 completion_tokens=completion, latency_ms=latency)
    errors: list[str] = []
    context, page = open_page(browser, live_server, "admin", ADMIN_PASSWORD,
                              f"/analytics?project_id={project['id']}&range=1h", errors)
    try:
        summary = http.get("/analytics/summary", params={"project_id": project["id"], "since": "1h"}).json()
        assert total(page, "requests") == "3" == str(summary["totals"]["requests"])
        assert total(page, "tokens") == str(summary["totals"]["tokens"]) == "2680"
        assert float(total(page, "cost_usd")) == pytest.approx(summary["totals"]["cost_usd"])
        assert total(page, "latency_p95_ms") == "90"
        assert "ui-model-b" in page.inner_text("#unpriced")
        for key in ("requests", "tokens", "cost_usd", "error_rate", "latency"):
            assert page.locator(f"#chart-{key} canvas").count() == 1, key
        assert page.get_attribute("#chart-requests", "data-sum") == "3"
        assert page.input_value("#f-range") == "1h"  # from the bookmarked URL: the last hour, minute buckets
        assert page.get_attribute("#chart-requests", "data-points") in ("60", "61")
        assert page.locator("#recent tr[data-request-id]").count() == 3

        page.select_option("#f-group", "model")
        page.wait_for_function("document.querySelectorAll('#groups tr[data-group]').length === 2")
        assert page.get_attribute("#chart-requests", "data-series") == "2"
        rows = page.locator("#groups tr[data-group]").all_inner_texts()
        assert rows[0].split("\t")[:2] == ["ui-model-a", "2"]  # the costlier group first

        # Live: a new request shows up without a reload, and the charts follow.
        row = analytics.record_request(model="ui-model-a", persona="qa-engineer", project_id=project["id"],
                                       prompt_tokens=100, completion_tokens=10, latency_ms=5.0)
        page.wait_for_selector(f'#recent tr[data-request-id="{row.id}"]')
        page.wait_for_function("document.querySelector('[data-total=requests]').dataset.value === '4'")
        page.wait_for_function("document.querySelector('#chart-requests').dataset.sum === '4'")

        href = page.get_attribute("#export-csv", "href")
        assert f"project_id={project['id']}" in href and "format=csv" in href
        exported = page.request.get(live_server.url + href)
        assert exported.ok and exported.headers["content-type"].startswith("text/csv")
        assert len(list(csv.DictReader(io.StringIO(exported.text())))) == 4

        page.fill("#b-total_usd", "2.5")
        page.fill("#b-daily_tokens", "100000")
        page.click("#budget-form button[type=submit]")
        page.wait_for_selector(".toast.ok")
        budget = http.get(f"/projects/{project['id']}/budget").json()
        assert (budget["total_usd"], budget["daily_tokens"], budget["daily_usd"]) == (2.5, 100000, None)
        assert "2790 tokens in all" in page.inner_text("#budget-spend")
        SHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SHOTS / "analytics.png"), full_page=True)
    finally:
        context.close()

    viewer_context, viewer = open_page(browser, live_server, "viewer", "viewer-password",
                                       f"/analytics?project_id={project['id']}", errors)
    try:
        assert viewer.locator("#budget-form").count() == 0
        viewer.wait_for_selector('[data-limit="total_usd"]')
        assert viewer.inner_text('[data-limit="total_usd"]') == "2.5"
        assert viewer.inner_text('[data-limit="daily_usd"]') == "no limit"
    finally:
        viewer_context.close()
    assert not errors, errors


def test_anonymous_visit_redirects_to_login(live_server):
    response = httpx.get(f"{live_server.url}/analytics", follow_redirects=False)
    assert response.status_code == 302 and "/login" in response.headers["location"]
