"""Pairing through the production web server: over the websocket (the dashboard's way) and from the CLI."""
from __future__ import annotations

import json

import httpx
import pytest
from click.testing import CliRunner
from simple_websocket import Client as WebSocketClient

from app.cli import cli
from tests.conftest import start_live_server, unique
from tests.test_pair import SCRIPT, worktree


@pytest.fixture()
def live_engine(make_engine):
    """An engine (no worker) behind the production web server, for the websocket and the CLI."""
    engine = make_engine(SCRIPT)
    env = {key: value for key, value in engine.env().items() if key.startswith("LOOM_")}
    proc, server = start_live_server(engine.database_url, engine.redis_url, engine.data_dir, threads=16,
                                     extra_env={**env, "LOOM_AUTO_DISPATCH": "false"})
    yield engine, server
    proc.terminate()
    proc.wait(10)


def _receive_until(ws, kind: str, bead_id: int | None = None, limit: int = 500) -> list[dict]:
    seen = []
    for _ in range(limit):
        raw = ws.receive(timeout=30)
        assert raw is not None, f"no {kind} within 30 s; got {[e['type'] for e in seen]}"
        event = json.loads(raw)
        if bead_id is not None and event.get("bead_id") not in (None, bead_id):
            continue
        seen.append(event)
        if event["type"] == kind:
            return seen
    raise AssertionError(f"no {kind} in {limit} messages")


def test_pairing_over_the_websocket_and_from_the_cli(live_engine):
    engine, server = live_engine
    http = httpx.Client(base_url=f"{server.url}/api/v1", headers={"Authorization": f"Bearer {server.token()}"},
                        timeout=30)
    project = http.post("/projects", json={"name": unique("ws"), "git_strategy": "branch"}).json()
    bead = http.post("/beads", json={"project_id": project["id"], "title": "held over the socket"}).json()
    url = server.url.replace("http://", "ws://") + "/ws/events"

    viewer = WebSocketClient(url, headers={"Authorization": f"Bearer {server.token('viewer', 'viewer-password')}"})
    try:
        viewer.send(json.dumps({"pair": {"bead_id": bead["id"], "message": "hello"}}))
        refused = _receive_until(viewer, "pair.error")[-1]
        assert refused["data"]["code"] == "forbidden"
    finally:
        viewer.close()

    ws = WebSocketClient(url, headers={"Authorization": f"Bearer {server.token()}"})
    try:
        assert json.loads(ws.receive(timeout=10))["type"] == "stream.hello"
        ws.send(json.dumps({"subscribe": {"bead_id": bead["id"]}}))
        ws.send(json.dumps({"pair": {"bead_id": bead["id"]}}))
        assert _receive_until(ws, "pair.error")[-1]["data"]["field"] == "message"
        ws.send(json.dumps({"pair": {"bead_id": bead["id"], "message": "please write the notes"}}))
        seen = _receive_until(ws, "pair.finished", bead["id"])
    finally:
        ws.close()
    kinds = [e["type"] for e in seen]
    assert "pair.started" in kinds and kinds.index("pair.started") < kinds.index("pair.delta"), kinds
    finished = seen[-1]["data"]
    assert finished["status"] == "ok" and [(r["type"], r["status"]) for r in finished["results"]] == \
        [("write_file", "ok")]
    streamed = "".join(e["data"]["text"] for e in seen if e["type"] == "pair.delta")
    step = http.get(f"/beads/{bead['id']}/pair").json()["items"][0]
    assert streamed == step["response"] and step["author"] == "admin"
    assert (worktree(engine, project["id"], bead["id"]) / "NOTES.md").read_text() == "paired by a person\n"

    env = {"LOOM_SERVER": server.url, "LOOM_API_KEY": server.token()}
    said = CliRunner().invoke(cli, ["pair", str(bead["id"]), "look around"], env=env, catch_exceptions=False)
    assert said.exit_code == 0, said.output
    assert "Looking, as you asked." in said.stdout and "[ok ] list_files: NOTES.md" in said.stdout, said.stdout
    assert "pair turn 2 applied" in said.stdout
    handed = CliRunner().invoke(cli, ["bead", "resume", str(bead["id"])], env=env, catch_exceptions=False)
    assert handed.exit_code == 0 and f"Bead {bead['id']} handed back" in handed.stdout, handed.output
    paused = CliRunner().invoke(cli, ["bead", "pause", str(bead["id"])], env=env, catch_exceptions=False)
    assert paused.exit_code == 0 and "paused by admin" in paused.stdout, paused.output
    missing = CliRunner().invoke(cli, ["pair", "2000000000", "hi"], env=env, catch_exceptions=False)
    assert missing.exit_code == 1 and "not found (field: bead_id)" in missing.stderr, missing.output
    http.close()
