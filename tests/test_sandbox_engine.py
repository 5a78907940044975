"""The sandbox policy in the engine: settings -> LoopSettings -> ActionContext -> run_command, strict and auto
when isolation is unavailable (simulated, and for real), /health/ready, and hostile actions end to end."""
from __future__ import annotations

import json
import logging
import secrets
import sqlite3
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from app.config import load_config
from app.services import sandbox, workspace
from app.services.actions import ActionContext, apply_actions
from app.services.sandbox import SandboxError, SandboxPolicy
from tests.celery_worker import thread_worker
from tests.conftest import ROOT
from tests.test_engine import Client, git, wait_for
from workers.loop import loop_settings


@pytest.fixture()
def wt(tmp_path: Path) -> Path:
    workspace.ensure_project_repo(tmp_path, 1, None)
    return workspace.ensure_worktree(tmp_path, 1, 3)


@pytest.fixture()
def no_isolation(monkeypatch: pytest.MonkeyPatch) -> str:
    """Simulate a machine without namespaces (the probe's answer); the same path runs for real below."""
    reason = "simulated: unshare is not permitted here"
    monkeypatch.setattr(sandbox, "_probed", {})
    monkeypatch.setattr(sandbox, "_warned", set())
    monkeypatch.setattr(sandbox, "_probe", lambda policy: reason)
    return reason


def context(wt: Path, policy: SandboxPolicy, acceptance: str | None = None) -> ActionContext:
    return ActionContext(run_id=1, seq=1, bead_id=3, project_id=1, agent_name="agent", workspace=wt,
                         data_dir=str(wt.parent.parent.parent.parent), default_branch="main", git_strategy="branch",
                         acceptance=acceptance, command_timeout=30, sandbox=policy)


def test_settings_reach_the_commands(app, wt: Path, tmp_path: Path, redis_url: str,
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = load_config(environ={"LOOM_SANDBOX": " Strict", "LOOM_SANDBOX_NETWORK": "HOST", "LOOM_SANDBOX_UID": "4242",
                               "LOOM_DATA_DIR": str(tmp_path / "cfg")})
    assert (cfg["SANDBOX"], cfg["SANDBOX_NETWORK"], cfg["SANDBOX_UID"]) == (" Strict", "HOST", 4242)
    for key in ("SANDBOX", "SANDBOX_NETWORK", "SANDBOX_UID"):
        monkeypatch.setitem(app.config, key, cfg[key])
    with app.app_context():
        policy = loop_settings().sandbox
    assert policy == SandboxPolicy("strict", "host", 4242)
    port = urlsplit(redis_url).port
    probe = f"id -u; exec 3<>/dev/tcp/127.0.0.1/{port} && printf 'PING\\r\\n' >&3 && head -c 5 <&3"
    host = apply_actions(context(wt, policy), [{"type": "run_command", "command": probe}]).results[0]
    assert host["status"] == "ok" and "4242\n+PONG" in host["output"]
    none = apply_actions(context(wt, SandboxPolicy("strict")), [{"type": "run_command", "command": probe}]).results[0]
    assert none["status"] == "error" and "65534\n" in none["output"] and "Connection refused" in none["output"]


def test_strict_refuses_commands_and_acceptance_without_isolation(wt: Path, no_isolation: str) -> None:
    outcome = apply_actions(context(wt, SandboxPolicy("strict"), acceptance="true"),
                            [{"type": "run_command", "command": "touch ran"}, {"type": "done", "reason": "x"}])
    assert [r["status"] for r in outcome.results] == ["error", "error"] and outcome.terminal is None
    for result in outcome.results:
        assert result["output"] == ("commands are refused: SANDBOX=strict and this machine cannot isolate them "
                                    f"({no_isolation})")
    assert not (wt / "ran").exists()


def test_auto_falls_back_with_one_warning_and_off_never_isolates(wt: Path, no_isolation: str,
                                                                 caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="loom.sandbox"):
        first = sandbox.run_command(wt, "id -u", policy=SandboxPolicy("auto"))
        second = sandbox.run_command(wt, "id -u", policy=SandboxPolicy("auto"))
    assert (first.isolated, first.stdout, second.isolated) == (False, "0\n", False)
    warnings = [r.getMessage() for r in caplog.records if r.name == "loom.sandbox"]
    assert len(warnings) == 1 and "WITHOUT isolation" in warnings[0] and no_isolation in warnings[0]
    assert sandbox.run_command(wt, "true", policy=SandboxPolicy("off")).isolated is False


def test_unavailable_isolation_for_real_in_a_user_namespace_without_mapping(tmp_path: Path) -> None:
    """`unshare --user` without a uid map: this process may not create namespaces of its own, for real."""
    script = ("import sys, pathlib; from app.services import sandbox as s\n"
              f"ws = pathlib.Path({str(tmp_path)!r})\n"
              "try:\n    s.run_command(ws, 'true', policy=s.SandboxPolicy('strict'))\n"
              "except s.SandboxError as exc:\n    print('REFUSED', exc)\n"
              "r = s.run_command(ws, 'echo ran', policy=s.SandboxPolicy('auto'))\n"
              "print('AUTO', r.isolated, r.stdout.strip()); print(s.describe(s.SandboxPolicy('strict')))\n")
    proc = subprocess.run(["unshare", "--user", sys.executable, "-c", script], cwd=ROOT, capture_output=True,
                          text=True, timeout=60, check=True)
    lines = proc.stdout.splitlines()
    assert lines[0].startswith("REFUSED commands are refused: SANDBOX=strict") and "unshare" in lines[0]
    assert lines[1] == "AUTO False ran" and "WITHOUT isolation" in proc.stderr
    assert "'isolation': 'none'" in lines[2] and "'commands': 'refused'" in lines[2]


@pytest.mark.parametrize("policy", [SandboxPolicy(uid=0), SandboxPolicy(mode="sometimes"),
                                    SandboxPolicy(network="vpn")])
def test_misconfigured_sandbox_refuses_commands(wt: Path, policy: SandboxPolicy) -> None:
    with pytest.raises(SandboxError, match="misconfigured"):
        sandbox.run_command(wt, "true", policy=policy)
    assert "error" in sandbox.describe(policy)


def test_health_reports_the_sandbox(client) -> None:
    body = client.get("/health/ready").get_json()
    assert body["status"] in ("ok", "degraded")  # degraded: no Beat ticks Ralph in this test
    assert body["sandbox"] == {"mode": "auto", "network": "none", "isolation": "namespaces", "uid": 65534}


def test_describe_without_isolation_and_when_off(no_isolation: str) -> None:
    assert sandbox.describe(SandboxPolicy("strict", uid=4242)) == {
        "mode": "strict", "network": "none", "isolation": "none", "reason": no_isolation, "commands": "refused"}
    assert sandbox.describe(SandboxPolicy()) == {
        "mode": "auto", "network": "none", "isolation": "none", "reason": no_isolation, "commands": "unconfined"}
    assert sandbox.describe(SandboxPolicy("off", "host")) == {"mode": "off", "network": "host", "isolation": "none"}


def _hostile_script(ports: list[int]) -> dict:
    find_data = 'd=$(cd ../../../.. && pwd); echo "data dir: $d"; '
    hostile = [
        {"type": "run_command", "command": find_data + 'cat "$d/loom.db" "$d/secret_key" "$d"/../*.db'},
        {"type": "run_command", "command": "id -u; cat ../../../../secret_key ../../../../loom.db"},
        {"type": "read_file", "path": "../../../../secret_key"},
        *({"type": "run_command", "command": "python3 -c \"import socket; "
                                             f"socket.create_connection(('127.0.0.1', {port}), timeout=3)\""}
          for port in ports),
        {"type": "run_command", "command": f"curl -sS --max-time 3 http://127.0.0.1:{ports[0]}/"},
        {"type": "run_command", "command": find_data + 'ln -s "$d/secret_key" leak; ln -s ../../../../loom.db db'},
        {"type": "read_file", "path": "leak"},
        {"type": "read_file", "path": "db"},
    ]
    return {"rules": [
        {"match": {"title": "^hostile", "turn": 1}, "reply": {"notes": "try to escape", "actions": hostile}},
        {"match": {"title": "^hostile", "turn": 2}, "reply": {"notes": "real work", "actions": [
            {"type": "run_command", "command": "rm leak db"},
            {"type": "write_file", "path": "notes.txt", "content": "honest work\n"},
            {"type": "git_commit", "message": "Add notes"}]}},
        {"match": {"title": "^hostile", "turn": 3}, "reply": {"actions": [{"type": "done", "reason": "done"}]}},
    ], "default": {"actions": [{"type": "done", "reason": "default"}]}}


def test_hostile_actions_end_to_end_leak_nothing_and_honest_work_closes_the_bead(make_engine, redis_url,
                                                                                 primary_database_url):
    ports = [urlsplit(redis_url).port or 6379]
    if primary_database_url.startswith("postgresql"):
        ports.append(urlsplit(primary_database_url.replace("+psycopg", "")).port or 5432)
    engine = make_engine(_hostile_script(ports))
    data_dir = Path(engine.app.config["DATA_DIR"])
    data_dir.mkdir(parents=True, exist_ok=True)
    planted = [secrets.token_hex(16), secrets.token_hex(16)]
    (data_dir / "secret_key").write_text(planted[0])
    with sqlite3.connect(data_dir / "loom.db") as conn:
        conn.execute("CREATE TABLE t (secret TEXT)")
        conn.execute("INSERT INTO t VALUES (?)", (planted[1],))
    conn.close()
    api = Client(engine.app)
    with engine.app.app_context(), thread_worker(engine.app.extensions["celery"], concurrency=8):
        project = api("post", "/projects", json={"name": "hostile", "git_strategy": "branch"})
        bead = api("post", "/beads", json={"project_id": project["id"], "title": "hostile agent"})

        def closed():
            """the bead to close"""
            return api("get", f"/beads/{bead['id']}")["status"] == "closed"
        wait_for(closed, timeout=120)
    steps = api("get", f"/beads/{bead['id']}/steps")["items"]
    blob = json.dumps(steps)
    for secret in planted + ["SQLite format 3", "test-secret"]:
        assert secret not in blob
    first = steps[0]["results"]
    assert [r["status"] for r in first] == ["error"] * (4 + len(ports)) + ["ok", "error", "error"], first
    outputs = [r["output"] for r in first]
    assert f"data dir: {data_dir}" in outputs[0] and outputs[0].count("No such file or directory") >= 3
    assert outputs[1].startswith("exit code 1\n--- stdout ---\n65534\n") and "No such file" in outputs[1]
    assert "resolves outside the workspace" in outputs[2]
    assert all("ConnectionRefusedError" in out for out in outputs[3:3 + len(ports)])
    assert "Failed to connect" in outputs[3 + len(ports)]
    assert all("resolves outside the workspace" in out for out in outputs[-2:])
    assert [r["status"] for s in steps[1:] for r in s["results"]] == ["ok", "ok", "ok", "ok"]
    repo = workspace.project_dir(data_dir, project["id"]) / "repo"
    assert git(repo, "ls-tree", "--name-only", f"bead/{bead['id']}").split() == ["README.md", "notes.txt"]
    assert (data_dir / "secret_key").read_text() == planted[0]
