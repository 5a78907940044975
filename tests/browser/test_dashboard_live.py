"""The dashboard in a real browser: beads created from the UI run live, the timeline streams, a decision is
made, a viewer cannot write, and a page whose websocket is killed server-side reconnects and catches up."""
from __future__ import annotations

import pytest

from app.services import beads as bead_service
from tests.browser.conftest import wait_until

pytestmark = pytest.mark.browser

NOTES = " ".join(f"word{i}" for i in range(60))  # long enough that the reply streams in many chunks
SCRIPT = {
    "stream_chunk_delay_ms": 30,
    "rules": [
        {"match": {"title": "^ui-", "turn": 1}, "reply": {"notes": "Writing the file. " + NOTES, "actions": [
            {"type": "write_file", "path": "{title}.txt", "content": "work of bead {bead_id}\n"}]}},
        {"match": {"title": "^ui-", "turn": 2}, "reply": {"notes": "Committing. " + NOTES, "actions": [
            {"type": "git_commit", "message": "Work for {title}"}]}},
        {"match": {"title": "^ui-", "turn": 3}, "reply": {"notes": "Finished.", "actions": [
            {"type": "done", "reason": "{title} is done"}]}},
        {"match": {"title": "^ask-", "last_message": "Decision on"}, "reply": {"actions": [
            {"type": "done", "reason": "went with the decision"}]}},
        {"match": {"title": "^ask-"}, "reply": {"notes": "A person must choose.", "actions": [
            {"type": "escalate", "reason": "which database", "question": "PostgreSQL or SQLite?",
             "options": ["PostgreSQL", "SQLite"]}]}},
    ],
}
RECORD_TRANSITIONS = """
window.__noReload = true;
window.__transitions = [];
Loom.events.on(function (e) {
  if (e.type === "bead.status_changed") window.__transitions.push([e.bead_id, e.data.to]);
});
"""


def card_in(page, status: str, bead_id: int) -> str:
    return f'.column[data-status="{status}"] .bead-card[data-bead-id="{bead_id}"]'


def create_bead_from_form(page, title: str, blocked_by: str = "") -> int:
    if page.locator("#new-bead").get_attribute("open") is None:
        page.click("#new-bead summary")
    page.fill("#b-title", title)
    page.fill("#b-blocked", blocked_by)
    page.click("#bead-form button[type=submit]")
    card = page.locator(".bead-card", has_text=title)
    card.wait_for()  # the live event may come before the answer: wait for the form to be ready again
    page.wait_for_function("document.getElementById('b-title').value === '' && "
                           "!document.querySelector('#bead-form button[type=submit]').disabled")
    return int(card.get_attribute("data-bead-id"))


def test_beads_run_live_in_the_browser(make_stack, pages):
    stack = make_stack(SCRIPT, workers=1)
    board = pages.open(stack, path="/projects")
    board.fill("#p-name", "shop")
    board.select_option("#p-strategy", "branch")
    board.click("#project-form button[type=submit]")
    board.wait_for_url("**/beads?project_id=*")
    project_id = int(board.url.rsplit("=", 1)[1])
    board.wait_for_function("document.getElementById('live-status').dataset.state === 'live'")
    board.evaluate(RECORD_TRANSITIONS)

    first = create_bead_from_form(board, "ui-A")
    second = create_bead_from_form(board, "ui-B", blocked_by=str(first))

    detail = board.context.new_page()  # the second bead's page, open before it starts
    detail.goto(f"{stack.url}/beads/{second}")
    detail.wait_for_function("document.getElementById('live-status').dataset.state === 'live'")
    detail.evaluate("window.__noReload = true")

    board.wait_for_selector(card_in(board, "closed", first), timeout=60_000)
    detail.wait_for_function(  # tokens stream into the running turn before the turn is complete
        "Array.from(document.querySelectorAll('#timeline li.running .stream')).some(s => s.textContent.length > 20)",
        timeout=60_000)
    pages.shot(detail, "bead-detail-streaming")
    board.wait_for_selector(card_in(board, "closed", second), timeout=60_000)
    detail.wait_for_function("document.getElementById('bead-status').textContent.trim() === 'closed'")
    detail.wait_for_function("document.querySelectorAll('#timeline > li:not(.running)').length === 3")
    assert "Work for ui-B" in detail.inner_text("#timeline") or "git_commit" in detail.inner_text("#timeline")

    transitions = board.evaluate("window.__transitions")
    for bead_id in (first, second):
        seen = [to for bid, to in transitions if bid == bead_id]
        assert seen[:1] == ["in_progress"] and seen[-1] == "closed", (bead_id, transitions)
    assert board.evaluate("window.__noReload") and detail.evaluate("window.__noReload"), "a page reloaded"
    pages.shot(board, "beads-board")

    # An escalation reaches the decisions inbox live and is decided there; the bead then finishes.
    inbox = board.context.new_page()
    inbox.goto(f"{stack.url}/decisions")
    inbox.wait_for_function("document.getElementById('live-status').dataset.state === 'live'")
    asking = stack.api("post", "/beads", json={"project_id": project_id, "title": "ask-database"})
    form = inbox.locator(".decide-form").first
    form.wait_for(timeout=60_000)
    pages.shot(inbox, "decisions")
    form.locator("input[name=decision]").fill("PostgreSQL")
    form.locator("textarea[name=rationale]").fill("we run it already")
    form.locator("button").click()
    inbox.wait_for_selector("#decided li >> text=PostgreSQL")
    wait_until(lambda: stack.api("get", f"/beads/{asking['id']}")["status"] == "closed", timeout=60)
    board.wait_for_selector(card_in(board, "closed", asking["id"]), timeout=30_000)

    # The websocket server dies; the page reconnects and catches up with what happened meanwhile.
    stack.kill_web_workers()
    with stack.engine.app.app_context():  # straight to the bus while no web process is there
        missed = bead_service.create_bead(project_id, "made while the page was away", tags=["later"],
                                          blocked_by=[asking["id"], first])
    board.wait_for_function("document.getElementById('live-status').dataset.state === 'down'", timeout=15_000)
    board.wait_for_function("document.getElementById('live-status').dataset.state === 'live'", timeout=30_000)
    board.wait_for_selector(f'.bead-card[data-bead-id="{missed.id}"]', timeout=30_000)
    assert board.evaluate("window.__noReload"), "the board reloaded instead of catching up"

    for path, name in [("/", "dashboard"), ("/agents", "agents"), ("/projects", "projects"),
                       ("/providers", "providers"), ("/logs", "logs"), ("/admin", "admin"), ("/personas", "personas")]:
        board.goto(stack.url + path)
        board.wait_for_load_state("networkidle")
        pages.shot(board, name)
    phone = pages.open(stack, path="/beads", viewport={"width": 390, "height": 844})
    assert phone.evaluate("document.documentElement.scrollWidth") <= 400, "the board overflows a phone screen"
    pages.shot(phone, "beads-board-phone")


def test_a_viewer_sees_no_write_buttons_and_cannot_post(make_stack, pages):
    stack = make_stack(SCRIPT, workers=0)
    project = stack.api("post", "/projects", json={"name": "readonly"})
    bead = stack.api("post", "/beads", json={"project_id": project["id"], "title": "look but do not touch"})
    viewer = pages.open(stack, "viewer", "viewer-password", path="/beads")
    assert viewer.locator("#bead-form").count() == 0
    viewer.goto(f"{stack.url}/beads/{bead['id']}")
    assert viewer.locator("#bead-actions button").count() == 0 and viewer.locator("#comment-form").count() == 0
    status = viewer.evaluate("""async (id) => {
        const r = await fetch('/api/v1/beads/' + id + '/close', {method: 'POST', credentials: 'same-origin',
          headers: {'Content-Type': 'application/json',
                    'X-CSRF-Token': document.querySelector('meta[name=csrf-token]').content},
          body: '{}'});
        return [r.status, (await r.json()).error.code];
    }""", bead["id"])
    assert status == [403, "forbidden"]
    viewer.goto(f"{stack.url}/admin")
    assert "Not allowed" in viewer.inner_text("main")
    assert stack.api("get", f"/beads/{bead['id']}")["status"] == "open"
    pages.shot(viewer, "viewer-admin-refused")
