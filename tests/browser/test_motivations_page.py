"""The motivations page in Chromium on the whole stack: create from the form, trigger, watch the history live."""
from __future__ import annotations

import pytest

from tests.browser.conftest import wait_until

pytestmark = pytest.mark.browser


def test_create_trigger_toggle_and_live_history(make_stack, pages):
    stack = make_stack({"rules": []})
    project = stack.api("POST", "/projects", json={"name": "ui-motivations"})
    page = pages.open(stack, path="/motivations")

    assert not page.locator("#m-cancel").is_visible()
    page.fill("#m-name", "Browser standup")
    page.select_option("#m-kind", "calendar")
    assert page.locator('fieldset[data-kind="calendar"]').is_visible()
    assert not page.locator('fieldset[data-kind="interval"]').is_visible()
    page.fill("#m-cron", "0 9 * * 1-5")
    page.select_option("#m-project", str(project["id"]))
    page.select_option("#m-persona", "engineering-manager")
    page.fill("#m-title", "Standup for {project} on {date}")
    page.click("#m-submit")
    row = page.locator("#motivations-table tbody tr", has_text="Browser standup")
    row.wait_for()
    assert "cron 0 9 * * 1-5 (UTC)" in row.inner_text()
    [created] = stack.api("GET", f"/motivations?project_id={project['id']}")["items"]
    assert (created["kind"], created["persona"], created["bead_template"]["title"]) == \
        ("calendar", "engineering-manager", "Standup for {project} on {date}")

    row.locator('button[data-action="trigger"]').click()
    page.locator("#history tbody tr", has_text="Browser standup").first.wait_for()
    assert row.locator('[data-field="count"]').inner_text() == "1"
    [firing] = stack.api("GET", f"/motivations/history?motivation_id={created['id']}")["items"]
    bead = stack.api("GET", f"/beads/{firing['bead_id']}")
    assert bead["title"].startswith("Standup for ui-motivations on 20")
    assert page.locator(f'#history tr[data-firing-id="{firing["id"]}"] a').inner_text() == f"#{bead['id']}"

    # Fired from elsewhere (the API): the row arrives over the websocket, without a reload.
    other = stack.api("POST", f"/motivations/{created['id']}/trigger", json={})
    page.locator(f'#history tr[data-firing-id="{other["id"]}"]').wait_for()
    assert page.locator("#history tbody tr", has_text="Browser standup").count() == 2
    assert row.locator('[data-field="count"]').inner_text() == "2"
    pages.shot(page, "motivations")

    row.locator('input[data-action="toggle"]').uncheck()
    wait_until(lambda: stack.api("GET", f"/motivations/{created['id']}")["enabled"] is False)
    row.locator('button[data-action="edit"]').click()
    assert page.input_value("#m-cron") == "0 9 * * 1-5" and page.inner_text("#m-submit") == "Save changes"
    assert page.locator("#m-cancel").is_visible() and not page.is_checked('#motivation-form input[name="enabled"]')
    page.fill("#m-cron", "30 8 * * *")
    page.click("#m-submit")
    page.locator("#motivations-table tbody tr", has_text="cron 30 8 * * * (UTC)").wait_for()
    edited = stack.api("GET", f"/motivations/{created['id']}")
    assert edited["cron"] == "30 8 * * *" and edited["enabled"] is False
