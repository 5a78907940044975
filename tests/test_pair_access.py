"""Pairing refused as it should be: bad requests are 4xx naming the field, viewers read but never pair, and the
pair panel shows only to those who may use it."""
from __future__ import annotations

from tests.conftest import login_token, unique
from tests.test_ui_access import _session as browser_session


def _status(response) -> tuple[int, str | None, str | None]:
    error = (response.get_json() or {}).get("error") or {}
    return response.status_code, error.get("code"), error.get("field")


def test_bad_pair_requests_are_4xx_naming_the_field(app, api, project):
    bead = api.post("/api/v1/beads", json={"project_id": project["id"], "title": "pair probe"}).get_json()
    closed = api.post("/api/v1/beads", json={"project_id": project["id"], "title": "pair closed"}).get_json()
    api.post(f"/api/v1/beads/{closed['id']}/close", json={"reason": "done"})
    agent = api.post("/api/v1/agents", json={"name": unique("idle"), "persona": "engineer",
                                             "project_id": project["id"]}).get_json()
    cases = [
        ({"bead_id": bead["id"], "agent_id": agent["id"], "message": "hi"}, (422, "invalid", "bead_id")),
        ({"message": "hi"}, (422, "invalid", "bead_id")),
        ({"bead_id": bead["id"], "message": ""}, (422, "invalid", "message")),
        ({"bead_id": bead["id"], "message": "   "}, (422, "invalid", "message")),
        ({"bead_id": bead["id"], "message": "x" * 20_001}, (422, "invalid", "message")),
        ({"bead_id": bead["id"]}, (422, "invalid", "message")),
        ({"bead_id": "1", "message": "hi"}, (422, "invalid", "bead_id")),
        ({"bead_id": 2_000_000_000, "message": "hi"}, (404, "not_found", "bead_id")),
        ({"agent_id": 2_000_000_000, "message": "hi"}, (404, "not_found", "agent_id")),
        ({"bead_id": closed["id"], "message": "hi"}, (409, "closed", "bead_id")),
        ({"agent_id": agent["id"], "message": "hi"}, (409, "no_bead", "agent_id")),
    ]
    for body, expected in cases:
        response = api.post("/api/v1/pair", json=body)
        assert response.mimetype == "application/json", body
        assert _status(response) == expected, (body, response.get_json())
    assert _status(api.post(f"/api/v1/beads/{bead['id']}/pause")) == (409, "not_running", "bead_id")
    assert _status(api.post(f"/api/v1/beads/{bead['id']}/resume")) == (409, "not_paused", "bead_id")
    assert _status(api.post(f"/api/v1/beads/{closed['id']}/pause")) == (409, "closed", "bead_id")
    assert _status(api.get("/api/v1/beads/2000000000/pair")) == (404, "not_found", "bead_id")
    assert api.get(f"/api/v1/beads/{bead['id']}").get_json()["status"] == "open"  # nothing was claimed


def test_a_viewer_may_read_the_transcript_but_not_pair(app, api, project):
    bead = api.post("/api/v1/beads", json={"project_id": project["id"], "title": "viewer probe"}).get_json()
    viewer = app.test_client()
    headers = {"Authorization": f"Bearer {login_token(viewer, 'viewer', 'viewer-password')}"}
    refused = [viewer.post("/api/v1/pair", json={"bead_id": bead["id"], "message": "hi"}, headers=headers),
               viewer.post(f"/api/v1/beads/{bead['id']}/pause", headers=headers),
               viewer.post(f"/api/v1/beads/{bead['id']}/resume", headers=headers)]
    assert [_status(r)[:2] for r in refused] == [(403, "forbidden")] * 3
    transcript = viewer.get(f"/api/v1/beads/{bead['id']}/pair", headers=headers)
    assert transcript.status_code == 200
    assert (transcript.get_json()["state"], transcript.get_json()["items"]) == ("none", [])


def test_only_those_who_may_pair_see_the_pair_panel(app, api, project):
    bead = api.post("/api/v1/beads", json={"project_id": project["id"], "title": "panel probe"}).get_json()
    agent = api.post("/api/v1/agents", json={"name": unique("holder"), "persona": "engineer",
                                             "project_id": project["id"]}).get_json()
    api.post(f"/api/v1/beads/{bead['id']}/claim", json={"agent_id": agent["id"]})
    for role, shown in (("viewer", False), ("user", True), ("admin", True)):
        browser = browser_session(app, api, role)
        detail = browser.get(f"/beads/{bead['id']}").get_data(as_text=True)
        assert ('id="pair"' in detail and "js/pair.js" in detail) is shown, role
        agents = browser.get("/agents").get_data(as_text=True)
        assert (f'href="/beads/{bead["id"]}#pair"' in agents) is shown, role
