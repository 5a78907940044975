"""The engine end to end: real Celery workers, real Redis, the real database and a scripted LLM over HTTP."""
from __future__ import annotations

import subprocess
import time


from app.services import workspace
from tests.conftest import login_token
from tests.celery_worker import thread_worker

CHAIN_SCRIPT = {
    "model": "test-model",
    "rules": [
        {"match": {"title": "^chain", "turn": 1}, "reply": {"notes": "look, then write", "actions": [
            {"type": "list_files"},
            {"type": "write_file", "path": "{title}.txt", "content": "work of bead {bead_id}\n"}]}},
        {"match": {"title": "^chain", "turn": 2},
         "reply": {"notes": "commit", "actions": [{"type": "git_commit", "message": "Work for {title}"}]}},
        {"match": {"title": "^chain", "turn": 3},
         "reply": {"notes": "finished", "actions": [{"type": "done", "reason": "{title} is done"}]}},
    ],
    "default": {"actions": [{"type": "done", "reason": "nothing scripted"}]},
}


def wait_for(predicate, timeout: float = 60.0, interval: float = 0.1):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {predicate.__doc__ or predicate}")


class Client:
    """The engine's REST API through the Flask test client, as the admin."""

    def __init__(self, app):
        self.http = app.test_client()
        self.headers = {"Authorization": f"Bearer {login_token(self.http)}"}

    def __call__(self, method: str, path: str, **kwargs):
        response = getattr(self.http, method)("/api/v1" + path, headers=self.headers, **kwargs)
        assert response.status_code < 400, (method, path, response.get_json())
        return response.get_json()


def git(cwd, *args) -> str:
    return subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, check=True).stdout


def test_dependent_beads_run_in_order_with_commits_steps_and_events(make_engine):
    engine = make_engine(CHAIN_SCRIPT)
    api = Client(engine.app)
    with engine.app.app_context(), thread_worker(engine.app.extensions["celery"], concurrency=8):
        project = api("post", "/projects", json={"name": "chain", "git_strategy": "branch"})
        a = api("post", "/beads", json={"project_id": project["id"], "title": "chain-A"})
        b = api("post", "/beads", json={"project_id": project["id"], "title": "chain-B", "blocked_by": [a["id"]]})
        c = api("post", "/beads", json={"project_id": project["id"], "title": "chain-C", "blocked_by": [b["id"]]})

        def all_closed():
            """the three beads to close"""
            return all(api("get", f"/beads/{x['id']}")["status"] == "closed" for x in (a, b, c))
        wait_for(all_closed, timeout=90)

    beads = [api("get", f"/beads/{x['id']}") for x in (a, b, c)]
    assert beads[0]["closed_at"] < beads[1]["closed_at"] < beads[2]["closed_at"]
    repo = workspace.project_dir(engine.data_dir, project["id"]) / "repo"
    for bead in beads:
        steps = api("get", f"/beads/{bead['id']}/steps")["items"]
        assert [s["seq"] for s in steps] == [1, 2, 3]
        assert [s["actions"][-1]["type"] for s in steps] == ["write_file", "git_commit", "done"]
        assert all(r["status"] == "ok" for s in steps for r in s["results"]), steps
        assert steps[0]["model"] == "test-model" and steps[0]["completion_tokens"] > 0
        message = git(repo, "log", "-1", "--format=%B", f"bead/{bead['id']}")
        assert f"Work for {bead['title']}" in message and f"Bead: {bead['id']}" in message and "Agent: " in message
        files = git(repo, "ls-tree", "--name-only", f"bead/{bead['id']}")
        assert f"{bead['title']}.txt" in files.split()
        runs = api("get", f"/beads/{bead['id']}/runs")["items"]
        assert [(r["status"], r["iterations"]) for r in runs] == [("finished", 3)]
    # "branch" strategy: the default branch is untouched, the work waits on the bead branches.
    assert "chain-A.txt" not in git(repo, "ls-tree", "--name-only", "main").split()
    events = api("get", f"/events?project_id={project['id']}&limit=1000")["items"]
    types = [e["type"] for e in events]
    for kind in ("bead.created", "bead.claimed", "run.started", "step.started", "step.finished", "run.finished",
                 "bead.closed"):
        assert kind in types, kind
    finished = [e for e in events if e["type"] == "step.finished" and e.get("bead_id") == a["id"]]
    assert [e["data"]["seq"] for e in finished] == [1, 2, 3]
    deltas = [e for e in events if e["type"] == "llm.delta" and e.get("bead_id") == a["id"]]
    assert {d["data"]["seq"] for d in deltas} == {1, 2, 3}  # every turn's tokens were relayed
    streamed = "".join(d["data"]["text"] for d in deltas if d["data"]["seq"] == 2)
    assert "git_commit" in streamed
