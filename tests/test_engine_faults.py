"""The engine under bad input: garbage and hostile replies, provider faults, loop limits, escalations."""
from __future__ import annotations

from tests.celery_worker import thread_worker
from tests.test_engine import Client, wait_for

BIG = "x" * (10 * 1024 * 1024)
GARBAGE_SCRIPT = {
    "rules": [
        {"match": {"title": "^garbage", "turn": 1}, "reply_text": "Sure, I will get right on it! (no JSON here)"},
        {"match": {"title": "^garbage", "turn": 2}, "reply": {"actions": [{"type": "launch_rockets"}]}},
        {"match": {"title": "^garbage", "turn": 3}, "reply": {"actions": [{"type": "write_file", "path": "a.txt"}]}},
        {"match": {"title": "^garbage", "turn": 4}, "reply": {"actions": [
            {"type": "read_file", "path": "../../etc/passwd"}, {"type": "read_file", "path": "/etc/passwd"},
            {"type": "write_file", "path": "/tmp/loom-escape.txt", "content": "x"},
            {"type": "write_file", "path": "../outside.txt", "content": "x"},
            {"type": "list_files", "path": "../../"}, {"type": "read_file", "path": ".git/config"}]}},
        {"match": {"title": "^garbage", "turn": 5},
         "reply_text": '{"actions": [{"type": "comment", "text": "' + BIG + '"}]}'},
        {"match": {"title": "^garbage", "turn": 6}, "reply": {"actions": [{"type": "done", "reason": "survived"}]}},
        {"match": {"title": "^unauthorised"}, "fault": {"status": 401}},
        {"match": {"title": "^mute"}, "reply_text": "I cannot comply."},
        {"match": {"title": "^escalate", "last_message": "Decision on #\\d+ by admin: PostgreSQL"},
         "reply": {"actions": [{"type": "done", "reason": "used the decision"}]}},
        {"match": {"title": "^escalate", "turn": 1}, "reply": {"actions": [
            {"type": "escalate", "reason": "Which database?", "options": ["PostgreSQL", "SQLite"]}]}},
        {"match": {"title": "^escalate"}, "reply": {"actions": [{"type": "done", "reason": "used the decision"}]}},
        {"match": {"title": "^accept", "turn": 1}, "reply": {"actions": [{"type": "done", "reason": "too early"}]}},
        {"match": {"title": "^accept", "turn": 2}, "reply": {"actions": [
            {"type": "write_file", "path": "ok.txt", "content": "ok"}, {"type": "done", "reason": "now"}]}},
        {"match": {"title": "^long"}, "fault": {"status": 400, "times": 1, "message":
                   "This model's maximum context length is 8192 tokens; your messages resulted in 9000 tokens"}},
        {"match": {"title": "^forever"}, "reply": {"actions": [
            {"type": "write_file", "path": "t{turn}.txt", "content": "turn {turn}"}]}},
    ],
    "default": {"actions": [{"type": "done", "reason": "default"}]},
}


def _engine(make_engine, **config):
    engine = make_engine(GARBAGE_SCRIPT, **config)
    return engine, Client(engine.app)


def _worker(engine):
    return thread_worker(engine.app.extensions["celery"], concurrency=4)


def _settled(api, bead_id):
    def settled():
        """the bead to close or block"""
        bead = api("get", f"/beads/{bead_id}")
        return bead if bead["status"] in ("closed", "blocked") else None
    return settled


def test_garbage_and_hostile_replies_are_fed_back_not_crashing(make_engine, tmp_path):
    engine, api = _engine(make_engine)
    with engine.app.app_context(), _worker(engine):
        project = api("post", "/projects", json={"name": "garbage"})
        bead = api("post", "/beads", json={"project_id": project["id"], "title": "garbage in"})
        final = wait_for(_settled(api, bead["id"]), timeout=90)
    assert final["status"] == "closed", final
    steps = api("get", f"/beads/{bead['id']}/steps")["items"]
    assert [s["seq"] for s in steps] == [1, 2, 3, 4, 5, 6]
    assert "no JSON object" in steps[0]["results"][0]["output"]
    assert "unknown action type 'launch_rockets'" in steps[1]["results"][0]["output"]
    assert "missing required parameter 'content'" in steps[2]["results"][0]["output"]
    hostile = steps[3]["results"]
    assert len(hostile) == 6 and all(r["status"] == "error" for r in hostile), hostile
    assert not any("root:" in r["output"] for r in hostile)  # /etc/passwd was never read
    assert steps[4]["parse_error"] and "too large" in steps[4]["parse_error"]
    assert len(steps[4]["response"]) <= 262_144
    # The follow-up request told the LLM what went wrong.
    assert "launch_rockets" in steps[2]["request"]


def test_auth_errors_auto_block_with_the_reason(make_engine):
    engine, api = _engine(make_engine)
    with engine.app.app_context(), _worker(engine):
        project = api("post", "/projects", json={"name": "auth"})
        bead = api("post", "/beads", json={"project_id": project["id"], "title": "unauthorised call"})
        final = wait_for(_settled(api, bead["id"]), timeout=60)

        def admin_told():
            """the admin to be notified that Loom blocked the bead itself"""
            return [n for n in api("get", "/notifications?type=bead.auto_blocked")["items"]
                    if n["bead_id"] == bead["id"]] or None
        [told] = wait_for(admin_told, timeout=30)
    assert "(auth)" in told["title"] and "3 auth errors" in told["body"]
    assert final["status"] == "blocked" and final["block_kind"] == "auth"
    assert "3 auth errors" in final["status_reason"]
    assert [e["kind"] for e in final["error_history"]] == ["auth"] * 3
    assert final["assigned_to"] is None or api("get", f"/agents/{final['assigned_to']}")["status"] == "idle"


def test_unreadable_replies_stop_the_run_after_five(make_engine):
    engine, api = _engine(make_engine)
    with engine.app.app_context(), _worker(engine):
        project = api("post", "/projects", json={"name": "mute"})
        bead = api("post", "/beads", json={"project_id": project["id"], "title": "mute agent"})
        final = wait_for(_settled(api, bead["id"]), timeout=60)
    assert final["status"] == "blocked" and final["block_kind"] == "loop"
    assert "parse_failures" in final["status_reason"]
    runs = api("get", f"/beads/{bead['id']}/runs")["items"]
    assert runs[-1]["status"] == "failed" and runs[-1]["iterations"] == 5


def test_max_iterations_stops_the_run(make_engine):
    engine, api = _engine(make_engine, MAX_ITERATIONS=4)
    with engine.app.app_context(), _worker(engine):
        project = api("post", "/projects", json={"name": "forever"})
        bead = api("post", "/beads", json={"project_id": project["id"], "title": "forever writing"})
        final = wait_for(_settled(api, bead["id"]), timeout=60)
    assert final["status"] == "blocked" and "iterations" in final["status_reason"]
    assert api("get", f"/beads/{bead['id']}/steps")["total"] == 4


def test_a_runtime_override_of_max_iterations_is_what_the_loop_uses(make_engine):
    engine, api = _engine(make_engine, MAX_ITERATIONS=25, MAX_PER_PROJECT=7)
    defaults = {i["key"]: i["default"] for i in api("get", "/config")["items"]}
    assert (defaults["loop.max_iterations"], defaults["dispatch.max_per_project"]) == (25, 7)  # the real settings
    api("put", "/config/loop.max_iterations", json={"value": 3})
    with engine.app.app_context(), _worker(engine):
        project = api("post", "/projects", json={"name": "overridden"})
        bead = api("post", "/beads", json={"project_id": project["id"], "title": "forever writing"})
        final = wait_for(_settled(api, bead["id"]), timeout=60)
    assert final["status"] == "blocked" and "(3)" in final["status_reason"], final["status_reason"]
    assert api("get", f"/beads/{bead['id']}/steps")["total"] == 3


def test_failing_acceptance_goes_back_to_the_llm(make_engine):
    engine, api = _engine(make_engine)
    with engine.app.app_context(), _worker(engine):
        project = api("post", "/projects", json={"name": "accept"})
        bead = api("post", "/beads", json={"project_id": project["id"], "title": "acceptance gate",
                                           "acceptance": "test -f ok.txt"})
        final = wait_for(_settled(api, bead["id"]), timeout=60)
    assert final["status"] == "closed"
    steps = api("get", f"/beads/{bead['id']}/steps")["items"]
    first = steps[0]["results"][0]
    assert first["status"] == "error" and "acceptance command failed" in first["output"]
    assert [r["status"] for r in steps[1]["results"]] == ["ok", "ok"]


def test_escalation_waits_for_a_decision_then_resumes(make_engine):
    engine, api = _engine(make_engine)
    with engine.app.app_context(), _worker(engine):
        project = api("post", "/projects", json={"name": "escalate"})
        bead = api("post", "/beads", json={"project_id": project["id"], "title": "escalate the choice"})
        blocked = wait_for(_settled(api, bead["id"]), timeout=60)
        assert blocked["status"] == "blocked" and blocked["block_kind"] == "escalation"
        decisions = api("get", f"/decisions?project_id={project['id']}")["items"]
        assert len(decisions) == 1 and decisions[0]["meta"]["options"] == ["PostgreSQL", "SQLite"]
        assert decisions[0]["status"] == "open"  # decision beads are never dispatched to an agent
        api("post", f"/decisions/{decisions[0]['id']}/decide", json={"decision": "PostgreSQL",
                                                                     "rationale": "production store"})

        def closed():
            """the bead to close after the decision"""
            return api("get", f"/beads/{bead['id']}")["status"] == "closed"
        wait_for(closed, timeout=60)
    comments = api("get", f"/beads/{bead['id']}/comments")["items"]
    assert any("PostgreSQL" in c["text"] and "production store" in c["text"] for c in comments)
    runs = api("get", f"/beads/{bead['id']}/runs")["items"]
    assert [r["terminal_reason"] for r in runs] == [f"escalated: decision #{decisions[0]['id']}",
                                                    "done: used the decision"]
    again = engine.app.test_client().post(f"/api/v1/decisions/{decisions[0]['id']}/decide", headers=api.headers,
                                          json={"decision": "SQLite"})
    assert again.status_code == 409 and again.get_json()["error"]["code"] == "already_decided"


def test_context_window_error_trims_the_history_and_goes_on(make_engine):
    engine, api = _engine(make_engine, CONTEXT_CHARS=100_000)
    with _worker(engine):
        project = api("post", "/projects", json={"name": "long"})
        bead = api("post", "/beads", json={"project_id": project["id"], "title": "long conversation"})
        final = wait_for(_settled(api, bead["id"]), timeout=60)
    assert final["status"] == "closed"
    assert [e["kind"] for e in final["error_history"]] == ["context_length"]
    runs = api("get", f"/beads/{bead['id']}/runs")["items"]
    assert runs[0]["status"] == "finished"
