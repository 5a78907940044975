"""`loom activity`, `loom notifications ...` and `loom bead assign` against the live server; the events are
turned into feed lines and notifications by the worker's task, called here as the worker would call it."""
from __future__ import annotations

import httpx
import pytest

from app.cli import commands_activity
from app.services.activity import ACTIVITY_TYPES
from app.services.notification_rules import NOTIFICATION_TYPES
from tests.celery_worker import call_task
from tests.cli_helpers import as_json, failed, ok, table
from tests.conftest import unique


def _process_events(app, http: httpx.Client, bead_id: int, since: str | None) -> None:
    """What the worker does with the bead's events since `since` (the live server has no worker)."""
    params = {"bead_id": bead_id, "limit": 1000, **({"since": since} if since else {})}
    for event in http.get("/events", params=params).json()["items"]:
        call_task(app, "loom.team_event", event)


@pytest.fixture()
def person(live_server, http) -> tuple[dict, str]:
    name, password = unique("cli"), "password-" + unique()
    user = http.post("/users", json={"username": name, "password": password, "role": "user"}).json()
    return user, live_server.token(name, password)


def test_the_cli_knows_the_servers_types():
    assert commands_activity.ACTIVITY_TYPES == tuple(ACTIVITY_TYPES)
    assert commands_activity.NOTIFICATION_TYPES == NOTIFICATION_TYPES


def test_assign_a_bead_then_read_the_notification_from_the_shell(app, loom, http, person):
    user, token = person
    project = http.post("/projects", json={"name": unique("cli-team")}).json()
    since = http.get("/events", params={"limit": 1}).json()["last_id"]  # the bus may hold older runs' beads
    created = as_json(loom("-o", "json", "bead", "create", "Write the runbook", "--project", str(project["id"]),
                           "--owner", str(user["id"])))
    assert created["owner_id"] == user["id"]
    other = as_json(loom("-o", "json", "bead", "create", "Second", "--project", str(project["id"])))
    assert "owned by user" in ok(loom("bead", "assign", str(other["id"]), str(user["id"])))
    for bead in (created, other):
        _process_events(app, http, bead["id"], since)

    rows = table(ok(loom("notifications", "list", key=token)))
    assert rows[0] == ["ID", "WHEN", "TYPE", "TITLE", "LINK"], rows  # the unread marker's column has no heading
    assert [row[1] for row in rows[1:3]] == ["*", "*"] and rows[-1] == ["2 unread"], rows
    listed = as_json(loom("-o", "json", "notifications", "list", "--unread", key=token))
    assert {(n["type"], n["bead_id"]) for n in listed["items"]} == {("bead.assigned", created["id"]),
                                                                     ("bead.assigned", other["id"])}
    assert listed["unread"] == 2
    first = listed["items"][-1]["id"]
    assert f"Notification {first} marked read" in ok(loom("notifications", "read", str(first), key=token))
    assert "Marked 1 notification(s) read" in ok(loom("notifications", "read-all", key=token))
    assert as_json(loom("-o", "json", "notifications", "list", "--unread", key=token))["items"] == []
    assert "not found" in failed(loom("notifications", "read", "2147483647", key=token))
    assert ok(loom("notifications", "list", key=token)).rstrip().endswith("0 unread")

    lines = table(ok(loom("activity", "--project", str(project["id"]), "--type", "bead.created")))
    assert lines[0][:3] == ["WHEN", "TYPE", "ACTOR"] and lines[1][1:4] == ["bead.created", "admin", "2"], lines
    assert "admin created 2 beads" in lines[1][-1]


def test_preferences_from_the_shell(loom, person):
    _, token = person
    prefs = as_json(loom("-o", "json", "notifications", "prefs", "--type", "bead.assigned", "--type",
                         "decision.waiting", "--min-priority", "1", "--quiet", "22:00-07:00", key=token))
    assert (prefs["types"], prefs["min_priority"], prefs["quiet_start"], prefs["quiet_end"]) == \
        (["bead.assigned", "decision.waiting"], 1, "22:00", "07:00")
    shown = ok(loom("notifications", "prefs", "--webhook-url", "https://93.184.215.14/hook", "--webhook", key=token))
    assert "Save this webhook secret now" in shown and "https://93.184.215.14/hook" in shown
    local = failed(loom("notifications", "prefs", "--webhook-url", "http://127.0.0.1:9/hook", key=token))
    assert "webhook_url" in local and "LOOM_WEBHOOK_ALLOW_PRIVATE=true" in local  # the installation's own network
    cleared = as_json(loom("-o", "json", "notifications", "prefs", "--quiet", "off", "--all-types", "--no-webhook",
                           key=token))
    assert (cleared["types"], cleared["quiet_start"], cleared["webhook_enabled"]) == (None, None, False)
    assert cleared["webhook_secret_set"] and "webhook_secret" not in cleared

    bad = loom("notifications", "prefs", "--quiet", "late-early", key=token)
    assert bad.exit_code == 2 and "HH:MM-HH:MM" in bad.stderr
    assert "quiet_start" in failed(loom("notifications", "prefs", "--quiet", "25:00-07:00", key=token))
    assert "webhook_url" in failed(loom("notifications", "prefs", "--webhook-url", "ftp://x/y", key=token))
    both = loom("notifications", "prefs", "--type", "bead.assigned", "--all-types", key=token)
    assert both.exit_code == 2 and "contradict" in both.stderr
    assert loom("bead", "assign", "1").exit_code == 2  # neither a user nor --nobody


def test_activity_filters_from_the_shell(loom):
    assert "since" in failed(loom("activity", "--since", "the day before"))
    assert loom("activity", "--type", "bead.nothing").exit_code == 2
    ok(loom("activity", "--since", "15m", "--actor", "admin", "--limit", "5"))
