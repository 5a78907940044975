"""Beads through the REST API: validation, the dependency graph, readiness, claims, status changes."""
from __future__ import annotations

from tests.conftest import unique

B = "/api/v1/beads"


def make_bead(api, project, **fields):
    response = api.post(B, json={"project_id": project["id"], "title": fields.pop("title", unique("bead")), **fields})
    assert response.status_code == 201, response.get_json()
    return response.get_json()


def agent_of(api, project, persona="engineer"):
    response = api.post("/api/v1/agents", json={"name": unique("agent"), "persona": persona,
                                                "project_id": project["id"]})
    assert response.status_code == 201, response.get_json()
    return response.get_json()


def ready_ids(api, project):
    response = api.get(f"{B}/ready?project_id={project['id']}&limit=500")
    assert response.status_code == 200
    return [b["id"] for b in response.get_json()["items"]]


def test_create_and_read_back(api, project):
    bead = make_bead(api, project, title="Write the parser", description="details", priority=0, type="feature",
                     tags=["parser", "core", "parser"], acceptance="pytest -q")
    got = api.get(f"{B}/{bead['id']}").get_json()
    assert got["title"] == "Write the parser"
    assert got["priority"] == 0 and got["type"] == "feature" and got["status"] == "open"
    assert got["tags"] == ["core", "parser"]
    assert got["acceptance"] == "pytest -q"
    assert got["blocked_by"] == [] and got["fencing_token"] == 0 and got["dispatch_count"] == 0
    assert got["created_by"] == "admin"


def test_create_validation_names_the_field(api, project):
    cases = [
        ({"title": ""}, "title"), ({"title": "x" * 201}, "title"), ({"priority": 4}, "priority"),
        ({"priority": "1"}, "priority"), ({"type": "chore"}, "type"), ({"tags": ["x" * 51]}, "tags.0"),
        ({"bogus": 1}, "bogus"), ({"blocked_by": [0]}, "blocked_by.0"),
    ]
    for fields, field in cases:
        body = {"project_id": project["id"], "title": "ok", **fields}
        response = api.post(B, json=body)
        assert response.status_code == 422, (fields, response.get_json())
        assert response.get_json()["error"]["field"] == field, (fields, response.get_json())
    missing = api.post(B, json={"project_id": 2_000_000_000, "title": "x"})
    assert missing.status_code == 404 and missing.get_json()["error"]["field"] == "project_id"


def test_filters_and_pagination(api, project):
    tag = unique("tag")
    beads = [make_bead(api, project, priority=i % 4, tags=[tag] if i % 2 else []) for i in range(7)]
    listing = api.get(f"{B}?project_id={project['id']}&tag={tag}").get_json()
    assert {b["id"] for b in listing["items"]} == {b["id"] for b in beads[1::2]}
    assert listing["total"] == 3
    page = api.get(f"{B}?project_id={project['id']}&limit=2&offset=2").get_json()
    assert page["total"] == 7 and len(page["items"]) == 2 and page["offset"] == 2
    p0 = api.get(f"{B}?project_id={project['id']}&priority=0").get_json()
    assert {b["id"] for b in p0["items"]} == {beads[0]["id"], beads[4]["id"]}
    assert api.get(f"{B}?status=nope").status_code == 422
    assert api.get(f"{B}?limit=0").status_code == 422
    assert api.get(f"{B}?unknown=1").status_code == 422


def test_ready_order_is_priority_then_age(api, project):
    low = make_bead(api, project, priority=3)
    high_old = make_bead(api, project, priority=0)
    mid = make_bead(api, project, priority=2)
    high_new = make_bead(api, project, priority=0)
    assert ready_ids(api, project) == [high_old["id"], high_new["id"], mid["id"], low["id"]]


def test_blocked_beads_are_never_ready_and_closing_readies_dependants(api, project):
    a = make_bead(api, project, title="A")
    b = make_bead(api, project, title="B", blocked_by=[a["id"]])
    c = make_bead(api, project, title="C", blocked_by=[a["id"], b["id"]])
    assert ready_ids(api, project) == [a["id"]]
    assert api.get(f"{B}/{a['id']}").get_json()["blocks"] == [b["id"], c["id"]]
    assert api.post(f"{B}/{a['id']}/close", json={"reason": "done"}).status_code == 200
    assert ready_ids(api, project) == [b["id"]]  # C still waits on B
    api.post(f"{B}/{b['id']}/close", json={})
    assert ready_ids(api, project) == [c["id"]]
    # Reopening a blocker makes its dependants wait again.
    api.patch(f"{B}/{b['id']}", json={"status": "open"})
    assert set(ready_ids(api, project)) == {b["id"]}


def test_cycles_are_refused_with_the_cycle_named(api, project):
    a, b, c = (make_bead(api, project) for _ in range(3))
    assert api.post(f"{B}/{b['id']}/dependencies", json={"blocked_by": a["id"]}).status_code == 201
    assert api.post(f"{B}/{c['id']}/dependencies", json={"blocked_by": b["id"]}).status_code == 201
    response = api.post(f"{B}/{a['id']}/dependencies", json={"blocked_by": c["id"]})
    assert response.status_code == 409
    error = response.get_json()["error"]
    assert error["code"] == "cycle"
    assert error["cycle"] == [a["id"], c["id"], b["id"], a["id"]]
    assert f"#{a['id']} -> #{c['id']} -> #{b['id']} -> #{a['id']}" in error["message"]
    self_edge = api.post(f"{B}/{a['id']}/dependencies", json={"blocked_by": a["id"]})
    assert self_edge.status_code == 422
    # A refused batch adds nothing.
    d = make_bead(api, project)
    batch = api.post(f"{B}/{a['id']}/dependencies", json={"blocked_by": [d["id"], c["id"]]})
    assert batch.status_code == 409
    assert api.get(f"{B}/{a['id']}").get_json()["blocked_by"] == []


def test_dependencies_stay_in_one_project(api, project):
    other = api.post("/api/v1/projects", json={"name": unique("other")}).get_json()
    a = make_bead(api, project)
    b = make_bead(api, other)
    response = api.post(f"{B}/{a['id']}/dependencies", json={"blocked_by": b["id"]})
    assert response.status_code == 422 and response.get_json()["error"]["field"] == "blocked_by"


def test_remove_dependency(api, project):
    a = make_bead(api, project)
    b = make_bead(api, project, blocked_by=[a["id"]])
    assert b["id"] not in ready_ids(api, project)
    assert api.delete(f"{B}/{b['id']}/dependencies/{a['id']}").status_code == 200
    assert b["id"] in ready_ids(api, project)
    assert api.delete(f"{B}/{b['id']}/dependencies/{a['id']}").status_code == 404


def test_deleting_a_bead_with_dependants_is_refused_unless_forced(api, project):
    a = make_bead(api, project)
    b = make_bead(api, project, blocked_by=[a["id"]])
    refused = api.delete(f"{B}/{a['id']}")
    assert refused.status_code == 409
    assert refused.get_json()["error"]["dependants"] == [b["id"]]
    assert api.get(f"{B}/{a['id']}").status_code == 200
    assert api.delete(f"{B}/{a['id']}?force=true").status_code == 204
    assert api.get(f"{B}/{a['id']}").status_code == 404
    assert api.get(f"{B}/{b['id']}").get_json()["blocked_by"] == []
    assert b["id"] in ready_ids(api, project)


def test_claim_takes_lease_and_bumps_fencing_token(api, project):
    bead = make_bead(api, project)
    agent = agent_of(api, project)
    response = api.post(f"{B}/{bead['id']}/claim", json={"agent_id": agent["id"]})
    assert response.status_code == 200, response.get_json()
    claimed = response.get_json()
    assert claimed["status"] == "in_progress" and claimed["assigned_to"] == agent["id"]
    assert claimed["fencing_token"] == 1 and claimed["dispatch_count"] == 1 and claimed["lease_expires_at"]
    got_agent = api.get(f"/api/v1/agents/{agent['id']}").get_json()
    assert got_agent["status"] == "working" and got_agent["current_bead_id"] == bead["id"]
    # Released by close, claimed again after reopening: the token keeps growing.
    api.post(f"{B}/{bead['id']}/close", json={})
    assert api.get(f"/api/v1/agents/{agent['id']}").get_json()["status"] == "idle"
    api.patch(f"{B}/{bead['id']}", json={"status": "open"})
    again = api.post(f"{B}/{bead['id']}/claim", json={"agent_id": agent["id"]}).get_json()
    assert again["fencing_token"] == 2 and again["dispatch_count"] == 2


def test_claim_refusals(api, project):
    blocker = make_bead(api, project)
    waiting = make_bead(api, project, blocked_by=[blocker["id"]])
    decision = make_bead(api, project, type="decision")
    free = make_bead(api, project)
    agent = agent_of(api, project)
    for bead, code in ((waiting, "not_claimable"), (decision, "not_claimable")):
        response = api.post(f"{B}/{bead['id']}/claim", json={"agent_id": agent["id"]})
        assert response.status_code == 409 and response.get_json()["error"]["code"] == code
    assert api.post(f"{B}/{free['id']}/claim", json={"agent_id": agent["id"]}).status_code == 200
    busy = api.post(f"{B}/{blocker['id']}/claim", json={"agent_id": agent["id"]})
    assert busy.status_code == 409 and busy.get_json()["error"]["code"] == "agent_busy"
    # The refused claims changed nothing.
    assert api.get(f"{B}/{blocker['id']}").get_json()["status"] == "open"
    paused = agent_of(api, project)
    api.post(f"/api/v1/agents/{paused['id']}/pause")
    assert api.post(f"{B}/{blocker['id']}/claim", json={"agent_id": paused["id"]}).status_code == 409
    other = api.post("/api/v1/projects", json={"name": unique("p")}).get_json()
    foreign = agent_of(api, other)
    assert api.post(f"{B}/{blocker['id']}/claim", json={"agent_id": foreign["id"]}).status_code == 422
    assert api.post(f"{B}/{blocker['id']}/claim", json={"agent_id": 2_000_000_000}).status_code == 404


def test_block_unblock_close_transitions(api, project):
    bead = make_bead(api, project)
    assert api.post(f"{B}/{bead['id']}/unblock", json={}).status_code == 409
    blocked = api.patch(f"{B}/{bead['id']}", json={"status": "blocked", "reason": "needs a key"}).get_json()
    assert blocked["status"] == "blocked" and blocked["status_reason"] == "needs a key"
    assert bead["id"] not in ready_ids(api, project)
    opened = api.post(f"{B}/{bead['id']}/unblock", json={"reason": "key added"}).get_json()
    assert opened["status"] == "open"
    closed = api.post(f"{B}/{bead['id']}/close", json={"reason": "shipped"}).get_json()
    assert closed["status"] == "closed" and closed["closed_at"]
    assert api.post(f"{B}/{bead['id']}/close", json={}).status_code == 200  # idempotent
    assert api.patch(f"{B}/{bead['id']}", json={"status": "in_progress"}).status_code == 422
    assert api.patch(f"{B}/{bead['id']}", json={"status": "blocked"}).status_code == 409


def test_comments(api, project):
    bead = make_bead(api, project)
    assert api.post(f"{B}/{bead['id']}/comments", json={"text": "looks good"}).status_code == 201
    listing = api.get(f"{B}/{bead['id']}/comments").get_json()
    assert listing["total"] == 1 and listing["items"][0]["author"] == "admin"
    assert api.post(f"{B}/{bead['id']}/comments", json={"text": ""}).status_code == 422


def test_the_dashboards_ready_list_leaves_decisions_to_people(app, api, project):
    from app.services import bead_graph
    task = make_bead(api, project, title="agent work")
    decision = make_bead(api, project, title="a person decides", type="decision")
    assert {task["id"], decision["id"]} <= set(ready_ids(api, project))  # the API's ready list: both
    with app.app_context():
        for_agents, total = bead_graph.ready_beads(project_id=project["id"], decisions=False)
    assert [b.id for b in for_agents] == [task["id"]] and total == 1
