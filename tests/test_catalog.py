"""Projects (with the default team), agents, personas, providers and runtime config through the REST API."""
from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from app.services import workspace
from app.services.personas import BUILTIN_DIR, parse_persona_markdown
from tests.conftest import login_token, unique

DEFAULT_PERSONAS = {"engineering-manager", "engineer", "qa-engineer", "code-reviewer", "devops-engineer",
                    "product-manager", "docs-writer", "cto"}


def test_project_gets_a_default_team(api, project):
    agents = api.get(f"/api/v1/agents?project_id={project['id']}").get_json()
    assert {a["persona"] for a in agents["items"]} == {"engineering-manager", "engineer", "qa-engineer",
                                                       "code-reviewer"}
    assert all(a["status"] == "idle" and a["role"] for a in agents["items"])
    assert project["git_strategy"] == "branch" and project["default_branch"] == "main"


def test_project_validation_and_uniqueness(api, project):
    duplicate = api.post("/api/v1/projects", json={"name": project["name"].upper()})
    assert duplicate.status_code == 409 and duplicate.get_json()["error"]["field"] == "name"
    for body, field in (({"name": unique(), "git_strategy": "merge"}, "git_strategy"),
                        ({"name": unique(), "git_repo": "relative/path"}, "git_repo"),
                        ({"name": unique(), "default_branch": "bad..branch"}, "default_branch"),
                        ({"name": unique(), "default_branch": "-evil"}, "default_branch"),  # git reads an option
                        ({"name": unique(), "default_branch": "x/.hidden"}, "default_branch"),
                        ({"name": "   "}, "name")):
        response = api.post("/api/v1/projects", json=body)
        assert response.status_code == 422 and response.get_json()["error"]["field"] == field, body
    url_project = api.post("/api/v1/projects", json={"name": unique(), "git_repo": "https://example.org/r.git",
                                                     "git_strategy": "direct"})
    assert url_project.status_code == 201
    changed = api.patch(f"/api/v1/projects/{project['id']}", json={"description": "new", "dedicated": True})
    assert changed.get_json()["description"] == "new" and changed.get_json()["dedicated"] is True


def test_deleting_a_project_removes_its_beads_and_agents(api):
    project = api.post("/api/v1/projects", json={"name": unique()}).get_json()
    bead = api.post("/api/v1/beads", json={"project_id": project["id"], "title": "x"}).get_json()
    assert api.delete(f"/api/v1/projects/{project['id']}").status_code == 204
    assert api.get(f"/api/v1/beads/{bead['id']}").status_code == 404
    assert api.get(f"/api/v1/agents?project_id={project['id']}").get_json()["total"] == 0


def test_agent_lifecycle(api, project):
    agent = api.post("/api/v1/agents", json={"name": "Ada", "persona": "qa-engineer",
                                             "project_id": project["id"]}).get_json()
    assert agent["status"] == "idle" and agent["role"] == "Quality"
    assert api.post("/api/v1/agents", json={"name": "Ada", "persona": "engineer",
                                            "project_id": project["id"]}).status_code == 409
    unknown = api.post("/api/v1/agents", json={"name": "Bob", "persona": "wizard"})
    assert unknown.status_code == 422 and unknown.get_json()["error"]["field"] == "persona"
    assert api.post(f"/api/v1/agents/{agent['id']}/resume").status_code == 409
    assert api.post(f"/api/v1/agents/{agent['id']}/pause").get_json()["status"] == "paused"
    assert api.post(f"/api/v1/agents/{agent['id']}/resume").get_json()["status"] == "idle"
    renamed = api.patch(f"/api/v1/agents/{agent['id']}", json={"name": "Ada L", "persona": "engineer"})
    assert renamed.get_json()["name"] == "Ada L" and renamed.get_json()["persona"] == "engineer"
    bead = api.post("/api/v1/beads", json={"project_id": project["id"], "title": "x"}).get_json()
    api.post(f"/api/v1/beads/{bead['id']}/claim", json={"agent_id": agent["id"]})
    assert api.delete(f"/api/v1/agents/{agent['id']}").status_code == 409  # working
    api.post(f"/api/v1/beads/{bead['id']}/close", json={})
    assert api.delete(f"/api/v1/agents/{agent['id']}").status_code == 204


def test_default_personas_are_loaded_from_markdown(api):
    listing = api.get("/api/v1/personas").get_json()
    assert DEFAULT_PERSONAS <= {p["name"] for p in listing["items"]}
    assert listing["total"] == len(listing["items"]) and (listing["limit"], listing["offset"]) == (50, 0)
    names = [p["name"] for p in listing["items"]]
    window = api.get("/api/v1/personas?limit=2&offset=1").get_json()  # lists page like every other list
    assert [p["name"] for p in window["items"]] == names[1:3] and window["total"] == listing["total"]
    assert api.get("/api/v1/personas?limit=0").get_json()["error"]["field"] == "limit"
    cto = api.get("/api/v1/personas/cto").get_json()
    on_disk = parse_persona_markdown((BUILTIN_DIR / "cto.md").read_text(), "cto")
    assert cto["instructions"] == on_disk["instructions"] and cto["meta"]["triage"] is True
    assert "## How you act" in cto["instructions"] and cto["hints"]


def test_persona_edit_and_create(api):
    edited = api.put("/api/v1/personas/docs-writer", json={"description": "Writes the docs.", "hints": ["docs"]})
    assert edited.status_code == 200 and edited.get_json()["description"] == "Writes the docs."
    assert api.get("/api/v1/personas/docs-writer").get_json()["hints"] == ["docs"]
    name = unique("sec")
    assert api.put(f"/api/v1/personas/{name}", json={"title": "Security"}).status_code == 422  # no instructions
    created = api.put(f"/api/v1/personas/{name}", json={"title": "Security", "instructions": "Audit things."})
    assert created.status_code == 201
    emptied = api.put(f"/api/v1/personas/{name}", json={"instructions": "   "})  # the system prompt, blanked
    assert emptied.status_code == 422 and emptied.get_json()["error"]["field"] == "instructions"
    assert api.get(f"/api/v1/personas/{name}").get_json()["instructions"] == "Audit things."
    assert api.put("/api/v1/personas/Bad_Name", json={"instructions": "x"}).status_code == 422
    assert api.get("/api/v1/personas/no-such").status_code == 404


class _Models(BaseHTTPRequestHandler):
    def do_GET(self):
        if self.path == "/v1/models" and self.headers.get("Authorization") == "Bearer sk-test-123456789":
            body = json.dumps({"object": "list", "data": [{"id": "model-a"}, {"id": "model-b"}]}).encode()
            self.send_response(200)
        else:
            body = b'{"error": "unauthorized"}'
            self.send_response(401)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self):  # noqa: N802 (stdlib name): the 1-token health ping
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        ok = self.headers.get("Authorization") == "Bearer sk-test-123456789"
        body = json.dumps({"choices": [{"message": {"role": "assistant", "content": "p"}}]} if ok
                          else {"error": "unauthorized"}).encode()
        self.send_response(200 if ok else 401)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture()
def models_server():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Models)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    server.shutdown()
    server.server_close()


def test_provider_check_against_a_real_server(api, models_server):
    created = api.post("/api/v1/providers", json={"name": unique("p"), "endpoint": models_server + "/",
                                                  "api_key": "sk-test-123456789"})
    assert created.status_code == 201
    provider = created.get_json()
    assert provider["api_key"] == "****6789" and provider["endpoint"] == models_server
    checked = api.post(f"/api/v1/providers/{provider['id']}/check").get_json()
    assert checked["status"] == "healthy" and checked["model"] == "model-a" and checked["latency_ms"] >= 0
    api.patch(f"/api/v1/providers/{provider['id']}", json={"api_key": "sk-wrong-key-0000"})
    down = api.post(f"/api/v1/providers/{provider['id']}/check").get_json()
    assert down["status"] == "down" and "401" in down["last_error"]
    events = api.get("/api/v1/events?type=provider.health&limit=1000").get_json()["items"]
    assert [e["data"]["status"] for e in events if e["data"].get("provider_id") == provider["id"]][-2:] == \
        ["healthy", "down"]
    assert "sk-" not in json.dumps(api.get("/api/v1/providers").get_json())


def test_provider_unreachable_and_invalid(api):
    provider = api.post("/api/v1/providers", json={"name": unique(), "endpoint": "http://127.0.0.1:9/v1"}).get_json()
    down = api.post(f"/api/v1/providers/{provider['id']}/check").get_json()
    assert down["status"] == "down" and down["last_error"]
    bad = api.post("/api/v1/providers", json={"name": unique(), "endpoint": "ftp://x"})
    assert bad.status_code == 422 and bad.get_json()["error"]["field"] == "endpoint"


def test_runtime_config(api):
    items = {i["key"]: i for i in api.get("/api/v1/config").get_json()["items"]}
    assert items["loop.max_iterations"]["default"] == 25 and items["loop.max_iterations"]["type"] == "int"
    assert api.put("/api/v1/config/loop.max_iterations", json={"value": 40}).status_code == 200
    items = {i["key"]: i for i in api.get("/api/v1/config").get_json()["items"]}
    assert items["loop.max_iterations"]["value"] == 40 and items["loop.max_iterations"]["overridden"]
    assert api.put("/api/v1/config/loop.max_iterations", json={"value": 1000}).status_code == 422
    assert api.put("/api/v1/config/dispatch.enabled", json={"value": 3}).status_code == 422
    assert api.put("/api/v1/config/nope", json={"value": 1}).status_code == 404
    api.put("/api/v1/config/loop.max_iterations", json={"value": 25})


def test_only_an_admin_points_a_project_inside_the_installation(app, api, project, tmp_path):
    """A user's project may not clone a path on the server (another project's repository, say) nor an address in
    its network (the worker would fetch it); an admin's may."""
    token = login_token(app.test_client(), "user", "user-password")
    as_user = app.test_client()

    def create(git_repo: str, client=as_user, headers=None):
        return client.post("/api/v1/projects", json={"name": unique("reach"), "git_repo": git_repo},
                           headers=headers or {"Authorization": f"Bearer {token}"})
    other_repo = workspace.ensure_project_repo(tmp_path, 1, None)  # a real repository on the server's disk
    for git_repo in (str(other_repo), f"file://{other_repo}", "http://127.0.0.1:8194/internal.git",
                     "http://169.254.169.254/repo.git", "git@10.0.0.5:team/app.git", "ssh://git@[::1]/x.git"):
        refused = create(git_repo)
        assert refused.status_code == 403 and refused.get_json()["error"]["field"] == "git_repo", git_repo
    assert "only an admin" in create(str(other_repo)).get_json()["error"]["message"]
    assert create("https://93.184.215.14/team/app.git").status_code == 201  # a public address: fine
    mine = create("https://93.184.215.14/team/other.git").get_json()
    moved = as_user.patch(f"/api/v1/projects/{mine['id']}", json={"git_repo": "http://192.168.1.2/x.git"},
                          headers={"Authorization": f"Bearer {token}"})
    assert moved.status_code == 403 and moved.get_json()["error"]["field"] == "git_repo"
    assert api.post("/api/v1/projects", json={"name": unique("admin-local"), "git_repo": str(other_repo)}
                    ).status_code == 201  # the admin runs the installation
