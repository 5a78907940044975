"""A project's repository is checked when the project names it, and a bead whose workspace cannot be made
costs no LLM call: real git, the real database, the scripted LLM over HTTP."""
from __future__ import annotations

import subprocess

from app.extensions import db
from app.llm import LLMClient
from app.models import LLMRequest
from app.services import loop
from app.services.loop import LoopSettings
from tests.conftest import unique
from tests.test_engine import Client

DONE = {"default": {"actions": [{"type": "done", "reason": "ok"}]}}


def test_a_local_git_repo_that_is_missing_or_not_a_repository_is_refused(api, tmp_path):
    repo = tmp_path / "real"
    subprocess.run(["git", "init", "-q", "-b", "main", str(repo)], check=True)
    for bad, why in ((str(tmp_path / "missing"), "not an existing directory"), (str(tmp_path), "not a git repository")):
        refused = api.post("/api/v1/projects", json={"name": unique("repo"), "git_repo": bad})
        assert refused.status_code == 422, refused.get_json()
        assert refused.get_json()["error"]["field"] == "git_repo" and why in refused.get_json()["error"]["message"]
    made = api.post("/api/v1/projects", json={"name": unique("repo"), "git_repo": str(repo)})
    assert made.status_code == 201, made.get_json()
    patched = api.patch(f"/api/v1/projects/{made.get_json()['id']}", json={"git_repo": str(tmp_path / "gone")})
    assert patched.status_code == 422 and patched.get_json()["error"]["field"] == "git_repo"
    assert api.get(f"/api/v1/projects/{made.get_json()['id']}").get_json()["git_repo"] == str(repo)


def test_a_bead_whose_workspace_cannot_be_made_blocks_before_any_llm_call(make_engine):
    engine = make_engine(DONE, AUTO_DISPATCH=False)
    api = Client(engine.app)
    llm = LLMClient(engine.llm.url, max_retries=0)
    with engine.app.app_context():
        project = api("post", "/projects", json={"name": "unclonable", "git_repo": "https://127.0.0.1:1/none.git"})
        bead = api("post", "/beads", json={"project_id": project["id"], "title": "never starts"})
        agent = api("get", f"/agents?project_id={project['id']}")["items"][0]
        settings = LoopSettings(data_dir=str(engine.data_dir))
        run = loop.start_run(bead["id"], agent["id"], settings)
        outcome = loop.run_step(run.id, llm, settings)
        assert (outcome.next_step, outcome.reason) == (False, "workspace")
        blocked = api("get", f"/beads/{bead['id']}")
        assert blocked["status"] == "blocked" and "workspace: git clone failed" in blocked["status_reason"]
        assert db.session.query(LLMRequest).count() == 0
        assert not [r for r in engine.llm.requests if "chat" in r.get("path", "chat")], engine.llm.requests
    llm.close()
