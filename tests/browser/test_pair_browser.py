"""Pair programming in a real browser: on a running bead's page the admin pauses the loop, chats with the agent
(its reply streams in token by token over the websocket), its write_file lands in the bead's worktree, and the
loop, handed the bead back, finishes it."""
from __future__ import annotations

import pytest

from app.services import workspace
from tests.browser.conftest import wait_until

pytestmark = pytest.mark.browser

WORDS = " ".join(f"word{i}" for i in range(80))  # a long reply: it streams in many pieces
SCRIPT = {
    "stream_chunk_delay_ms": 40,
    "rules": [
        {"match": {"last_message": r"\(pair programming\): Please add PAIRED\.md"},
         "reply": {"notes": "Adding the file you asked for. " + WORDS, "actions": [
             {"type": "write_file", "path": "PAIRED.md", "content": "written while pairing\n"}]}},
        {"match": {"title": "^pair-demo", "last_message": "PAIRED.md"},
         "reply": {"notes": "The paired file is there: committing and finishing.", "actions": [
             {"type": "git_commit", "message": "Paired work"}, {"type": "done", "reason": "finished after pairing"}]}},
        {"match": {"title": "^pair-demo"}, "fault": {"delay_ms": 700},
         "reply": {"notes": "Working on turn {turn}.", "actions": [
             {"type": "write_file", "path": "loop-{turn}.txt", "content": "turn {turn}\n"}]}},
    ],
}
STREAM = "#pair-chat .agent.streaming [data-field=stream]"  # the reply of a turn still running
LONGER_THAN = "([selector, n]) => { const s = document.querySelector(selector); return s && s.textContent.length > n; }"


def test_pair_session_in_the_browser(make_stack, pages):
    stack = make_stack(SCRIPT, workers=1)
    project = stack.api("post", "/projects", json={"name": "pairing", "git_strategy": "branch"})
    bead = stack.api("post", "/beads", json={"project_id": project["id"], "title": "pair-demo"})
    wait_until(lambda: any(r["iterations"] >= 1 for r in stack.api("get", f"/beads/{bead['id']}/runs")["items"]),
               timeout=60)

    page = pages.open(stack, path=f"/beads/{bead['id']}")
    page.wait_for_function("document.getElementById('live-status').dataset.state === 'live'")
    page.wait_for_function("document.getElementById('pair').dataset.state === 'running'")
    page.click("#pair-pause")
    page.wait_for_function("document.getElementById('pair').dataset.state === 'paused'")
    assert "Paused by admin" in page.inner_text("#pair-state")
    assert page.is_visible("#pair-resume") and not page.is_visible("#pair-pause")

    agents = page.context.new_page()  # the agents page links the agent holding the bead to its pair panel
    agents.goto(f"{stack.url}/agents")
    link = agents.locator(f'a.pair-link[href="/beads/{bead["id"]}#pair"]')
    assert link.count() == 1
    agents.close()

    page.fill("#pair-message", "Please add PAIRED.md")
    page.press("#pair-message", "Enter")  # Enter sends
    page.wait_for_selector("#pair-chat .human >> text=Please add PAIRED.md")
    page.wait_for_function(LONGER_THAN, arg=[STREAM, 20], timeout=30_000)
    assert page.is_disabled("#pair-message")  # no second message while the turn runs
    seen = page.evaluate("(selector) => document.querySelector(selector).textContent.length", STREAM)
    page.wait_for_function(LONGER_THAN, arg=[STREAM, seen], timeout=30_000)  # still streaming, and longer
    pages.shot(page, "pair-streaming")

    page.wait_for_selector("#pair-chat .agent.finished .results li.result-ok >> text=write_file", timeout=30_000)
    reply = page.inner_text("#pair-chat .agent.finished")
    assert "Adding the file you asked for." in reply and "PAIRED.md" in reply
    page.wait_for_function("!document.getElementById('pair-message').disabled")
    page.wait_for_selector("#timeline li.pair")  # the pair turn is on the bead's timeline too
    paired = workspace.project_dir(stack.engine.data_dir, project["id"]) / "worktrees" / f"bead-{bead['id']}"
    assert (paired / "PAIRED.md").read_text() == "written while pairing\n"
    pages.shot(page, "pair-reply-applied")

    page.click("#pair-resume")  # hand it back: the loop sees the chat and finishes
    page.wait_for_function("document.getElementById('bead-status').textContent.trim() === 'closed'", timeout=60_000)
    page.wait_for_function("document.getElementById('pair').dataset.state === 'none'")
    steps = stack.api("get", f"/beads/{bead['id']}/steps?limit=500")["items"]
    pair_steps = [s for s in steps if s["kind"] == "pair"]
    assert [(s["author"], s["request"]) for s in pair_steps] == [("admin", "Please add PAIRED.md")]
    assert steps[-1]["kind"] == "loop" and steps[-1]["actions"][-1]["type"] == "done"
    assert [s["seq"] for s in steps] == list(range(1, len(steps) + 1))
    assert stack.api("get", f"/beads/{bead['id']}")["status_reason"] == "finished after pairing"
    pages.shot(page, "pair-handed-back")
