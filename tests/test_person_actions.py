"""What a person does to beads through the API is theirs in the activity list, and the API refuses what would
leave a bead stuck: unblocking one that waits on an open decision, dispatching a decision (real database, the
engine's event hooks on)."""
from __future__ import annotations

from tests.celery_worker import thread_worker
from tests.test_engine import Client, wait_for

DONE = {"default": {"actions": [{"type": "done", "reason": "ok"}]}}


def raw(api: Client, method: str, path: str, **kwargs):
    return getattr(api.http, method)("/api/v1" + path, headers=api.headers, **kwargs)


def test_a_persons_close_unblock_and_decision_are_theirs_and_stuck_states_are_refused(make_engine):
    engine = make_engine(DONE, MAX_CONCURRENT=0)  # nothing runs: the beads stay where the person puts them
    api = Client(engine.app)
    with engine.app.app_context(), thread_worker(engine.app.extensions["celery"], concurrency=2):
        by_hand(engine, api)


def by_hand(engine, api: Client) -> None:
    project = api("post", "/projects", json={"name": "by-hand"})
    closed = api("post", "/beads", json={"project_id": project["id"], "title": "closed by hand"})
    api("post", f"/beads/{closed['id']}/close", json={"reason": "not needed"})
    asking = api("post", "/beads", json={"project_id": project["id"], "title": "asks"})
    decision = api("post", f"/beads/{asking['id']}/escalate", json={"reason": "which one", "options": ["a", "b"]})
    assert api("get", f"/beads/{asking['id']}")["status"] == "blocked"

    refused = raw(api, "post", f"/beads/{asking['id']}/unblock", json={})
    assert refused.status_code == 409 and refused.get_json()["error"]["code"] == "waits_on_decision"
    assert f"#{decision['id']}" in refused.get_json()["error"]["message"]
    assert api("get", f"/beads/{asking['id']}")["status"] == "blocked"  # unchanged
    not_run = raw(api, "post", f"/beads/{decision['id']}/redispatch", json={})
    assert not_run.status_code == 409 and not_run.get_json()["error"]["code"] == "not_dispatchable"

    api("post", f"/decisions/{decision['id']}/decide", json={"decision": "a"})
    assert api("get", f"/beads/{asking['id']}")["status"] == "open"

    def both_closes():
        """the two closes in the activity list (one line: the same person closed both)"""
        lines = api("get", f"/activity?project_id={project['id']}&type=bead.closed&limit=100")["items"]
        return lines if sum(line["count"] for line in lines) == 2 else None
    [line] = wait_for(both_closes, timeout=30)
    assert line["actor"] == "admin" and line["summary"].startswith("admin closed 2 beads"), line
    assert {item["bead_id"] for item in line["data"]["items"]} == {closed["id"], decision["id"]}
    blocks = api("get", f"/activity?project_id={project['id']}&type=bead.blocked&limit=100")["items"]
    assert [b["actor"] for b in blocks] == ["admin"], blocks  # the escalation blocked it, by admin
