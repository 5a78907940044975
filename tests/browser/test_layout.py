"""The pages fit their window in a real browser, on a desktop and on a phone: a 200-character title without a
space, and tables of agents or providers, wrap or scroll inside the page instead of widening it."""
from __future__ import annotations

import pytest

pytestmark = pytest.mark.browser

SCRIPT = {"default": {"actions": [{"type": "done", "reason": "ok"}]}}
LONG = "x" * 200


@pytest.mark.parametrize("width", [1280, 390])
def test_pages_are_no_wider_than_the_window(make_stack, pages, width):
    stack = make_stack(SCRIPT, AUTO_DISPATCH=False)
    project = stack.api("POST", "/projects", json={"name": "layout-" + "y" * 80})
    bead = stack.api("POST", "/beads", json={"project_id": project["id"], "title": LONG, "description": LONG})
    stack.api("POST", "/providers", json={"name": "p" * 60, "endpoint": "http://127.0.0.1:9/v1/" + "z" * 80})
    page = pages.open(stack, path="/beads", viewport={"width": width, "height": 900})
    too_wide = {}
    for path in ("/", "/beads", f"/beads/{bead['id']}", "/agents", "/providers", "/projects", "/activity",
                 "/motivations", "/analytics", "/admin"):
        page.goto(stack.url + path)
        page.wait_for_load_state("networkidle")
        scroll = page.evaluate("document.documentElement.scrollWidth")
        if scroll > width + 1:
            too_wide[path] = scroll
            pages.shot(page, f"too-wide-{width}-{path.strip('/').replace('/', '-') or 'dashboard'}")
    assert too_wide == {}, f"pages wider than {width} px: {too_wide}"
    assert pages.errors == []
