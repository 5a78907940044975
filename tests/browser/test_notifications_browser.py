"""Notifications and the activity feed in a real browser, two people at once: a bead assigned to one lights only
her header badge, live; a P0 bead reaches both; marking read clears the badge; the activity line of repeated
creations counts up live; the webhook secret the page shows signs what her receiver gets."""
from __future__ import annotations

import re

import pytest

from tests.browser.conftest import wait_until
from tests.conftest import unique
from tests.webhook_receiver import WebhookReceiver

pytestmark = pytest.mark.browser

SCRIPT = {"default": {"actions": [{"type": "done", "reason": "done"}]}}


def badge(page) -> str:
    return page.locator("#unread-count").inner_text().strip()


def wait_badge(page, text: str) -> None:
    page.wait_for_function(f"document.getElementById('unread-count').textContent.trim() === {text!r}",
                           timeout=30_000)


def live(page) -> None:
    page.wait_for_selector('#live-status[data-state="live"]')


def test_two_people_see_their_own_notifications_live(make_stack, pages):
    stack = make_stack(SCRIPT, workers=1, WEBHOOK_ALLOW_PRIVATE=True)  # her receiver listens on this machine
    people = {}
    for who in ("alice", "bob"):
        name, password = unique(who), "password-" + unique()
        people[who] = (stack.api("post", "/users", json={"username": name, "password": password, "role": "user"}),
                       password)
    (alice, alice_pw), (bob, bob_pw) = people["alice"], people["bob"]
    project = stack.api("post", "/projects", json={"name": "notify-ui"})
    alice_page = pages.open(stack, alice["username"], alice_pw, path="/")
    bob_page = pages.open(stack, bob["username"], bob_pw, path="/")
    for page in (alice_page, bob_page):
        live(page)
        assert badge(page) == ""

    mine = stack.api("post", "/beads", json={"project_id": project["id"], "title": "Fix the login form",
                                             "owner_id": alice["id"]})
    wait_badge(alice_page, "1")  # live, no reload
    alice_page.locator(".toast", has_text="Assigned to you").wait_for()
    stack.api("post", "/beads", json={"project_id": project["id"], "title": "Site is down", "priority": 0})
    wait_badge(alice_page, "2")
    wait_badge(bob_page, "1")  # bob's page is live too: it got the P0, never alice's assignment
    pages.shot(alice_page, "notifications-badge")

    alice_page.click("a.bell")
    alice_page.wait_for_url(re.compile(r".*/notifications$"))
    live(alice_page)
    items = alice_page.locator("#notifications .notification")
    assert items.count() == 2 and alice_page.locator("#page-unread").inner_text() == "2"
    assert "Site is down" in items.nth(0).inner_text() and "Fix the login form" in items.nth(1).inner_text()
    items.nth(1).locator(".mark-read").click()
    wait_badge(alice_page, "1")
    alice_page.click("#read-all")
    wait_badge(alice_page, "")
    assert alice_page.locator("#page-unread").inner_text() == "0" and alice_page.locator(".unread-item").count() == 0
    assert badge(bob_page) == "1"  # her reading is hers alone

    # her webhook, set up on the page: the secret shown once signs what the receiver gets
    with WebhookReceiver(secret="to be read from the page") as receiver:
        alice_page.fill("#p-url", receiver.url)
        alice_page.check("#p-enabled")
        alice_page.click("#prefs-form button[type=submit]")
        shown = alice_page.locator("#new-secret")
        shown.wait_for(state="visible")
        receiver.secret = shown.inner_text().rsplit(": ", 1)[1].strip()
        assert len(receiver.secret) >= 32
        stack.api("patch", f"/beads/{mine['id']}", json={"owner_id": None})
        again = stack.api("post", "/beads", json={"project_id": project["id"], "title": "Second one for alice",
                                                  "owner_id": alice["id"]})
        # the new one shows up on the open page, live
        alice_page.locator("#notifications .notification", has_text="Second one for alice").wait_for()
        wait_badge(alice_page, "1")
        wait_until(lambda: receiver.received, timeout=30)
    [hook] = receiver.received
    assert hook.valid_signature and hook.json["notification"]["bead_id"] == again["id"]
    assert hook.json["user"] == alice["username"]

    # the activity feed: admin's creations are one line whose count grows live
    feed = pages.open(stack, alice["username"], alice_pw, path=f"/activity?project_id={project['id']}")
    live(feed)
    line = feed.locator(".activity-item", has=feed.locator(".etype", has_text="bead.created")).filter(
        has_text="admin created")
    assert line.count() == 1 and "×3" in line.inner_text(), line.inner_text()
    stack.api("post", "/beads", json={"project_id": project["id"], "title": "Fourth"})
    feed.wait_for_function("Array.from(document.querySelectorAll('.activity-item')).some("
                           "li => li.textContent.includes('admin created 4 beads') && li.textContent.includes('×4'))",
                           timeout=30_000)
    pages.shot(feed, "activity-feed")
    assert not pages.errors, pages.errors
