"""The decisions inbox in a real browser: deciding here, deciding elsewhere and a new escalation keep the two
counts and lists right (each decided bead counted once), and a card that arrives live matches a rendered one."""
from __future__ import annotations

import pytest

from tests.browser.conftest import wait_until

pytestmark = pytest.mark.browser

SCRIPT = {"default": {"actions": [{"type": "done", "reason": "ok"}]}}


def escalate(stack, project_id: int, question: str) -> int:
    bead = stack.api("POST", "/beads", json={"project_id": project_id, "title": f"needs {question}"})
    decision = stack.api("POST", f"/beads/{bead['id']}/escalate",
                         json={"reason": "a person decides", "question": question, "options": ["left", "right"]})
    return decision["meta"].get("decision_id") or decision["id"]


def counts(page) -> tuple[int, int, int]:
    return (int(page.inner_text("#waiting-total")), page.locator("#waiting .decision").count(),
            int(page.inner_text("#decided-total")))


def test_deciding_here_and_elsewhere_counts_each_decision_once(make_stack, pages):
    stack = make_stack(SCRIPT, AUTO_DISPATCH=False)
    project = stack.api("POST", "/projects", json={"name": "decisions-page"})
    before = [d["id"] for d in stack.api("GET", "/decisions")["items"]]
    for question in ("one", "two", "three"):
        escalate(stack, project["id"], question)
    ids = [d["id"] for d in stack.api("GET", "/decisions")["items"] if d["id"] not in before]
    assert len(ids) == 3
    page = pages.open(stack, path="/decisions")
    waiting0, cards0, decided0 = counts(page)
    assert waiting0 == cards0 >= 3

    form = page.locator(f'.decide-form[data-decision-id="{ids[0]}"]')
    form.locator("input[name=decision]").fill("left")
    form.locator("button").click()
    wait_until(lambda: counts(page) == (waiting0 - 1, cards0 - 1, decided0 + 1))
    page.wait_for_timeout(1500)  # the bead.closed event of the same decision arrives too: no second count
    assert counts(page) == (waiting0 - 1, cards0 - 1, decided0 + 1)

    stack.api("POST", f"/decisions/{ids[1]}/decide", json={"decision": "right", "rationale": "from the API"})
    wait_until(lambda: counts(page) == (waiting0 - 2, cards0 - 2, decided0 + 2))
    entry = page.locator(f'#decided [data-decided-id="{ids[1]}"]')
    entry.wait_for()
    assert "right" in entry.inner_text() and "by admin" in entry.inner_text()

    new_id = escalate(stack, project["id"], "four")
    live = page.locator(f'.decision[data-decision-id="{new_id}"]')
    live.wait_for()
    assert counts(page) == (waiting0 - 1, cards0 - 1, decided0 + 2)
    assert live.locator("datalist option").count() == 2 and "Asked by bead" in live.inner_text()
    pages.shot(page, "decisions-counted")
    assert pages.errors == []
