"""The /analytics page in a real browser on a whole stack: totals and charts of a scripted run, a breakdown,
live updates while a worker runs more beads, export links, and a budget set in the page that blocks a bead."""
from __future__ import annotations

import csv
import io

import pytest

from tests.browser.conftest import wait_until

pytestmark = pytest.mark.browser

MODEL = "test-model"
SCRIPT = {"model": MODEL, "rules": [
    {"match": {"title": "^slow", "turn": 1}, "fault": {"delay_ms": 80},
     "reply": {"actions": [{"type": "list_files"}]}},
    {"match": {"turn": 1}, "reply": {"notes": "look", "actions": [{"type": "list_files"}]}},
    {"match": {"turn": 2}, "reply": {"actions": [{"type": "done", "reason": "{title} is done"}]}}]}


def total(page, key: str) -> str:
    return page.get_attribute(f'[data-total="{key}"]', "data-value")


def run_bead(stack, project_id: int, title: str) -> dict:
    bead = stack.api("POST", "/beads", json={"project_id": project_id, "title": title})
    wait_until(lambda: stack.api("GET", f"/beads/{bead['id']}")["status"] in ("closed", "blocked"), timeout=60)
    return stack.api("GET", f"/beads/{bead['id']}")


def test_analytics_page_follows_a_run_and_sets_a_budget(make_stack, pages):
    stack = make_stack(SCRIPT, workers=1)
    stack.api("PUT", f"/analytics/prices/{MODEL}", json={"prompt_usd_per_mtok": 5, "completion_usd_per_mtok": 20})
    project = stack.api("POST", "/projects", json={"name": "metered"})
    assert run_bead(stack, project["id"], "slow-first")["status"] == "closed"
    page = pages.open(stack, path="/analytics")
    page.goto(f"{stack.url}/analytics?project_id={project['id']}&range=1h")  # a bookmarked view
    page.wait_for_selector("body[data-loaded]")

    summary = stack.api("GET", f"/analytics/summary?project_id={project['id']}&since=1h")["totals"]
    assert summary["requests"] == 2 and total(page, "requests") == "2"
    assert total(page, "tokens") == str(summary["tokens"])
    assert float(total(page, "cost_usd")) == pytest.approx(summary["cost_usd"]) and summary["cost_usd"] > 0
    assert float(total(page, "latency_p95_ms")) == summary["latency_p95_ms"] >= 80
    assert page.input_value("#f-range") == "1h"  # the bookmarked view: the last hour in minute buckets
    assert page.get_attribute("#chart-requests", "data-points") in ("60", "61")
    for key in ("requests", "tokens", "cost_usd", "error_rate", "latency"):
        assert page.locator(f"#chart-{key} canvas").count() == 1, key
    assert page.get_attribute("#chart-requests", "data-sum") == "2"
    assert page.locator("#recent tr[data-request-id]").count() == 2

    page.select_option("#f-group", "persona")
    page.wait_for_selector("#groups tr[data-group]")
    groups = stack.api("GET", f"/analytics/summary?project_id={project['id']}&since=1h&group_by=persona")["groups"]
    assert page.locator("#groups tr[data-group]").count() == len(groups)

    # Live: a worker runs another bead while the page is open; its calls arrive over the websocket.
    second = run_bead(stack, project["id"], "second")
    rows = stack.api("GET", f"/analytics/requests?bead_id={second['id']}")["items"]
    for row in rows:
        page.wait_for_selector(f'#recent tr[data-request-id="{row["id"]}"]')
    page.wait_for_function("document.querySelector('#chart-requests').dataset.sum === '4'")
    assert total(page, "requests") == "4"

    href = page.get_attribute("#export-csv", "href")
    assert f"project_id={project['id']}" in href and "format=csv" in href
    exported = page.request.get(stack.url + href)
    assert exported.ok and exported.headers["content-type"].startswith("text/csv")
    assert len(list(csv.DictReader(io.StringIO(exported.text())))) == 4

    # A budget set in the page: spend is already past it, so the next bead is blocked before its first call.
    page.fill("#b-total_usd", "0.000001")
    page.click("#budget-form button[type=submit]")
    page.wait_for_selector(".toast.ok")
    page.wait_for_selector("#budget-exhausted:not([hidden])")
    assert stack.api("GET", f"/projects/{project['id']}/budget")["total_usd"] == 0.000001
    page.evaluate("window.__exhausted = []; Loom.events.on(function (e) { "
                  "if (e.type === 'budget.exhausted') window.__exhausted.push(e.data); });")
    blocked = run_bead(stack, project["id"], "over-budget")
    assert (blocked["status"], blocked["block_kind"]) == ("blocked", "budget")
    page.wait_for_function("window.__exhausted.length === 1")  # the budget.exhausted event, live
    assert page.evaluate("window.__exhausted[0].limit") == "total_usd"
    page.wait_for_function("document.querySelector('[data-total=requests]').dataset.value === '5'")
    pages.shot(page, "analytics")

    viewer = pages.open(stack, username="viewer", password="viewer-password", path="/analytics")
    viewer.goto(f"{stack.url}/analytics?project_id={project['id']}")
    viewer.wait_for_selector('[data-limit="total_usd"]')
    assert viewer.locator("#budget-form").count() == 0
    assert viewer.inner_text('[data-limit="total_usd"]') == "0.000001"
    assert viewer.inner_text('[data-limit="daily_usd"]') == "no limit"
