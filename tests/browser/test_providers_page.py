"""The providers page in a real browser: a provider is added and removed from the page, and a refused action
shows its reason in a toast without also leaving an uncaught error in the page."""
from __future__ import annotations

import pytest

from tests.conftest import free_port

pytestmark = pytest.mark.browser

SCRIPT = {"default": {"actions": [{"type": "done", "reason": "ok"}]}}


def test_a_provider_is_added_and_removed_from_the_page_and_a_refusal_is_only_a_toast(make_stack, pages):
    stack = make_stack(SCRIPT)
    page = pages.open(stack, path="/providers")
    page.fill("#pr-name", "unreachable")
    page.fill("#pr-endpoint", f"http://127.0.0.1:{free_port()}/v1")
    page.click("#provider-form button[type=submit]")
    row = page.locator("#providers-table tr", has_text="unreachable")
    row.wait_for()
    [provider] = stack.api("GET", "/providers")["items"]

    page.fill("#pr-name", "unreachable")  # the same name again: refused, and said so
    page.fill("#pr-endpoint", "http://127.0.0.1:9/v1")
    page.click("#provider-form button[type=submit]")
    page.locator(".toast.error").first.wait_for()
    assert stack.api("GET", "/providers")["total"] == 1

    page.once("dialog", lambda dialog: dialog.accept())
    row.locator("button.remove").click()
    page.locator(".toast.ok", has_text="Provider removed").wait_for()
    assert row.count() == 0
    assert stack.api("GET", "/providers")["total"] == 0, provider
    pages.shot(page, "providers-removed")
    assert pages.errors == []
