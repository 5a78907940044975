"""Pair programming end to end: real Celery workers, real Redis, the real database and the scripted LLM over
HTTP. A person pauses a bead's loop, chats with its agent (the reply streams), the reply's actions change the
worktree, and the loop, handed the bead back, sees the whole chat."""
from __future__ import annotations

import json
import threading
import time


from app.extensions import db
from app.models import Run
from app.services import turns, workspace
from tests.celery_worker import thread_worker
from tests.conftest import login_token, unique
from tests.test_engine import Client, wait_for

WORDS = " ".join(f"word{i}" for i in range(40))  # long enough to stream in many pieces
SCRIPT = {
    "rules": [
        # what the agent answers a person (the prompt's last message is theirs)
        {"match": {"last_message": r"\(pair programming\): please write the notes"},
         "reply": {"notes": "Writing the notes you asked for. " + WORDS,
                   "actions": [{"type": "write_file", "path": "NOTES.md", "content": "paired by a person\n"}]}},
        {"match": {"last_message": r"\(pair programming\): finish it"},
         "reply": {"notes": "Committing and finishing.", "actions": [
             {"type": "git_commit", "message": "Paired work"}, {"type": "done", "reason": "finished while pairing"}]}},
        {"match": {"last_message": r"\(pair programming\): break"}, "fault": {"status": 401}},
        {"match": {"last_message": r"\(pair programming\)"},
         "reply": {"notes": "Looking, as you asked.", "actions": [{"type": "list_files"}]}},
        # the loop of a bead someone paired on: once it sees the paired file it commits and finishes
        {"match": {"title": "^held", "last_message": "NOTES.md"}, "reply": {"notes": "I see the notes.", "actions": [
            {"type": "git_commit", "message": "Work after pairing"}, {"type": "done", "reason": "loop finished"}]}},
        {"match": {"title": "^held"}, "reply": {"actions": [{"type": "list_files"}]}},
        # a slow loop of eight turns, to pause in the middle of
        {"match": {"title": "^slow", "turn": [1, 2, 3, 4, 5, 6, 7]}, "fault": {"delay_ms": 300},
         "reply": {"notes": "turn {turn}", "actions": [
             {"type": "write_file", "path": "t{turn}.txt", "content": "turn {turn}\n"}]}},
        {"match": {"title": "^slow"}, "reply": {"actions": [{"type": "done", "reason": "slow work done"}]}},
        # a loop of twenty turns that people keep interrupting
        {"match": {"title": "^race", "turn": list(range(1, 20))}, "fault": {"delay_ms": 150},
         "reply": {"notes": "turn {turn}", "actions": [
             {"type": "write_file", "path": "r{turn}.txt", "content": "turn {turn}\n"}]}},
        {"match": {"title": "^race"}, "reply": {"actions": [{"type": "done", "reason": "race done"}]}},
        # a loop turn long enough that a pair message cannot wait for it
        {"match": {"title": "^long", "turn": 1}, "fault": {"delay_ms": 4000},
         "reply": {"actions": [{"type": "write_file", "path": "long.txt", "content": "long\n"}]}},
        {"match": {"title": "^long"}, "reply": {"actions": [{"type": "done", "reason": "long work done"}]}},
    ],
}


def worker(engine):
    return thread_worker(engine.app.extensions["celery"], concurrency=4)


def sse(response) -> list[tuple[str, dict]]:
    """The (event, data) pairs of a server-sent-events body."""
    events, name = [], "message"
    for line in response.get_data(as_text=True).splitlines():
        if line.startswith("event:"):
            name = line[6:].strip()
        elif line.startswith("data:"):
            events.append((name, json.loads(line[5:])))
        elif not line:
            name = "message"
    return events


def post_pair(api: Client, **body):
    response = api.http.post("/api/v1/pair", json=body, headers=api.headers)
    assert response.status_code == 200, response.get_json()
    assert response.mimetype == "text/event-stream"
    return sse(response)


def run_of(engine, run_id: int) -> Run:
    with engine.app.app_context():  # a fresh session: what the database holds now
        run = db.session.get(Run, run_id)
        db.session.expunge(run)
        return run


def worktree(engine, project_id: int, bead_id: int):
    return workspace.project_dir(engine.data_dir, project_id) / "worktrees" / f"bead-{bead_id}"


def test_pausing_stops_the_loop_after_its_step_and_handing_back_continues_it(make_engine):
    engine = make_engine(SCRIPT)
    api = Client(engine.app)
    with engine.app.app_context(), worker(engine):
        project = api("post", "/projects", json={"name": unique("pause"), "git_strategy": "branch"})
        bead = api("post", "/beads", json={"project_id": project["id"], "title": "slow work"})

        def working():
            """the loop to finish its first turn"""
            runs = api("get", f"/beads/{bead['id']}/runs")["items"]
            return runs and runs[0]["iterations"] >= 1 and runs[0]
        run = wait_for(working, timeout=30)
        paused = api("post", f"/beads/{bead['id']}/pause")
        assert (paused["state"], paused["paused_by"], paused["run"]["id"]) == ("paused", "admin", run["id"])

        def parked():
            """the loop to stop for the person"""
            return (run_of(engine, run["id"]).counters or {}).get(turns.PARKED)
        wait_for(parked, timeout=30)
        held_at = api("get", f"/beads/{bead['id']}/steps")["total"]
        assert held_at < 8  # the loop did not just finish
        time.sleep(1.5)  # five loop turns' worth: none of them may happen while the bead is held
        assert api("get", f"/beads/{bead['id']}/steps")["total"] == held_at
        assert run_of(engine, run["id"]).status == "running"
        assert api("get", f"/beads/{bead['id']}")["status"] == "in_progress"

        resumed = api("post", f"/beads/{bead['id']}/resume")
        assert resumed["state"] == "running" and resumed["loop_enqueued"] is True and resumed["paused_by"] is None

        def closed():
            """the loop to finish the bead once handed back"""
            return api("get", f"/beads/{bead['id']}")["status"] == "closed"
        wait_for(closed, timeout=60)
    steps = api("get", f"/beads/{bead['id']}/steps")["items"]
    assert [s["seq"] for s in steps] == list(range(1, 9)) and {s["kind"] for s in steps} == {"loop"}
    runs = api("get", f"/beads/{bead['id']}/runs")["items"]
    assert [(r["status"], r["iterations"]) for r in runs] == [("finished", 8)]
    events = api("get", f"/events?bead_id={bead['id']}&limit=1000")["items"]
    kinds = [e["type"] for e in events]
    assert kinds.index("pair.paused") < kinds.index("pair.resumed") < kinds.index("run.finished")


def test_a_pair_turn_streams_changes_the_worktree_and_the_loop_sees_the_chat(make_engine):
    engine = make_engine(SCRIPT)
    api = Client(engine.app)
    project = api("post", "/projects", json={"name": unique("pair"), "git_strategy": "branch"})
    bead = api("post", "/beads", json={"project_id": project["id"], "title": "held notes"})  # no worker yet

    events = post_pair(api, bead_id=bead["id"], message="please write the notes")
    names = [name for name, _ in events]
    assert names[-2:] == ["actions", "done"] and set(names[:-2]) == {"chunk"} and names.count("chunk") > 3, names
    step = events[-1][1]["step"]
    assert "".join(data["text"] for name, data in events if name == "chunk") == step["response"]
    assert (step["kind"], step["author"], step["request"], step["seq"], step["status"]) == \
        ("pair", "admin", "please write the notes", 1, "applied")
    results = events[-2][1]["results"]
    assert [(r["type"], r["status"]) for r in results] == [("write_file", "ok")]
    notes = worktree(engine, project["id"], bead["id"]) / "NOTES.md"
    assert notes.read_text() == "paired by a person\n"

    state = api("get", f"/beads/{bead['id']}/pair")
    assert (state["state"], state["paused_by"], state["total"]) == ("paused", "admin", 1)
    assert state["items"][0]["request"] == "please write the notes"
    assert api("get", f"/beads/{bead['id']}")["status"] == "in_progress"  # claimed for an agent, held for us
    pair_request = engine.llm.requests[-1]["messages"]
    assert pair_request[-1] == {"role": "user", "content": "admin (pair programming): please write the notes"}

    with engine.app.app_context(), worker(engine):
        resumed = api("post", f"/beads/{bead['id']}/resume")
        assert resumed["loop_enqueued"] is True

        def closed():
            """the loop to finish the bead after the pair turn"""
            return api("get", f"/beads/{bead['id']}")["status"] == "closed"
        wait_for(closed, timeout=60)
    loop_request = engine.llm.requests[-1]["messages"]  # the loop's turn after the hand-back
    contents = [m["content"] for m in loop_request]
    assert "admin (pair programming): please write the notes" in contents
    assert any(m["role"] == "assistant" and "Writing the notes" in m["content"] for m in loop_request)
    steps = api("get", f"/beads/{bead['id']}/steps")["items"]
    assert [(s["seq"], s["kind"]) for s in steps] == [(1, "pair"), (2, "loop")]
    assert api("get", f"/beads/{bead['id']}/runs")["items"][0]["status"] == "finished"


def test_pairing_by_agent_llm_errors_and_done_behave(make_engine):
    engine = make_engine(SCRIPT)
    api = Client(engine.app)
    project = api("post", "/projects", json={"name": unique("done"), "git_strategy": "branch"})
    bead = api("post", "/beads", json={"project_id": project["id"], "title": "held to finish"})
    first = post_pair(api, bead_id=bead["id"], message="look around")
    assert first[-1][0] == "done"
    agent_id = api("get", f"/beads/{bead['id']}")["assigned_to"]

    broken = post_pair(api, agent_id=agent_id, message="break it")
    assert [name for name, _ in broken] == ["error"] and broken[0][1]["code"] == "llm_auth"
    assert api("get", f"/beads/{bead['id']}/steps")["total"] == 1  # nothing stored for a failed call
    assert api("get", f"/beads/{bead['id']}/pair")["state"] == "paused"

    finished = post_pair(api, agent_id=agent_id, message="finish it")
    assert finished[-1][0] == "done" and finished[-1][1]["step"]["seq"] == 2
    assert [r["type"] for r in finished[-2][1]["results"]] == ["git_commit", "done"]
    after = api("get", f"/beads/{bead['id']}")
    assert after["status"] == "closed" and after["status_reason"] == "finished while pairing"
    run = api("get", f"/beads/{bead['id']}/runs")["items"][0]
    assert (run["status"], run["terminal_reason"], run["iterations"]) == \
        ("finished", "done: finished while pairing", 2)
    assert api("get", f"/agents/{agent_id}")["status"] == "idle"
    timeline = [e for e in api("get", f"/events?bead_id={bead['id']}&limit=1000")["items"]
                if e["type"] == "step.finished"]
    assert [(e["data"]["seq"], e["data"]["kind"]) for e in timeline] == [(1, "pair"), (2, "pair")]
    again = api.http.post("/api/v1/pair", json={"agent_id": agent_id, "message": "more"}, headers=api.headers)
    assert again.status_code == 409 and again.get_json()["error"]["field"] == "agent_id"
    # Every pair call is metered like the loop's: two answered turns and the failed one, as source "pair".
    metered = api("get", f"/analytics/requests?bead_id={bead['id']}&limit=100")["items"]
    assert sorted((r["source"], r["status"], r["seq"]) for r in metered) == \
        [("pair", "auth", 2), ("pair", "ok", 1), ("pair", "ok", 2)]
    assert sum(r["completion_tokens"] for r in metered if r["status"] == "ok") == sum(
        s["completion_tokens"] for s in api("get", f"/beads/{bead['id']}/steps")["items"])


def test_a_pair_message_during_a_long_loop_step_waits_then_gets_409(make_engine):
    engine = make_engine(SCRIPT, PAIR_WAIT_SECONDS=1.0)
    api = Client(engine.app)
    with engine.app.app_context(), worker(engine):
        project = api("post", "/projects", json={"name": unique("long"), "git_strategy": "branch"})
        bead = api("post", "/beads", json={"project_id": project["id"], "title": "long step"})

        def asking():
            """the loop's first (long) turn to start"""
            return any(e["type"] == "step.started" for e in api("get", f"/events?bead_id={bead['id']}")["items"])
        wait_for(asking, timeout=30)
        busy = api.http.post("/api/v1/pair", json={"bead_id": bead["id"], "message": "hello"}, headers=api.headers)
        assert busy.status_code == 409, busy.get_data(as_text=True)
        assert busy.get_json()["error"]["code"] == "busy" and busy.get_json()["error"]["field"] == "bead_id"
        assert api("get", f"/beads/{bead['id']}/pair")["state"] == "paused"  # paused all the same

        def parked():
            """the loop to stop after its long turn"""
            run = api("get", f"/beads/{bead['id']}/runs")["items"][0]
            return run["iterations"] == 1 and (run_of(engine, run["id"]).counters or {}).get(turns.PARKED)
        wait_for(parked, timeout=30)
        events = post_pair(api, bead_id=bead["id"], message="please write the notes")
        assert events[-1][0] == "done" and events[-1][1]["step"]["seq"] == 2
        api("post", f"/beads/{bead['id']}/resume")
        wait_for(lambda: api("get", f"/beads/{bead['id']}")["status"] == "closed", timeout=60)
    assert [(s["seq"], s["kind"]) for s in api("get", f"/beads/{bead['id']}/steps")["items"]] == \
        [(1, "loop"), (2, "pair"), (3, "loop")]


def test_concurrent_pair_turns_and_the_loop_never_share_a_step_number(make_engine):
    engine = make_engine(SCRIPT, PAIR_WAIT_SECONDS=2.0)
    api = Client(engine.app)
    token = login_token(engine.app.test_client())
    outcomes: list[tuple[int, str]] = []
    lock = threading.Lock()
    with engine.app.app_context(), worker(engine):
        project = api("post", "/projects", json={"name": unique("race"), "git_strategy": "branch"})
        bead = api("post", "/beads", json={"project_id": project["id"], "title": "race"})
        wait_for(lambda: api("get", f"/beads/{bead['id']}/runs")["total"] == 1, timeout=30)

        def pair_person(n: int) -> None:
            client = engine.app.test_client()
            for i in range(4):
                time.sleep(0.5 + 0.2 * n)  # gaps in which the loop, handed back, takes turns
                response = client.post("/api/v1/pair", json={"bead_id": bead["id"], "message": f"hello {n}.{i}"},
                                       headers={"Authorization": f"Bearer {token}"})
                last = sse(response)[-1][0] if response.status_code == 200 else response.get_json()["error"]["code"]
                with lock:
                    outcomes.append((response.status_code, last))

        def hand_back() -> None:
            client = engine.app.test_client()
            for _ in range(15):
                response = client.post(f"/api/v1/beads/{bead['id']}/resume",
                                       headers={"Authorization": f"Bearer {token}"})
                with lock:
                    outcomes.append((response.status_code, "resume"))
                time.sleep(0.2)

        threads = [threading.Thread(target=pair_person, args=(n,)) for n in range(3)]
        threads.append(threading.Thread(target=hand_back))
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(120)
        if api("get", f"/beads/{bead['id']}/pair")["state"] == "paused":
            api("post", f"/beads/{bead['id']}/resume")
        wait_for(lambda: api("get", f"/beads/{bead['id']}")["status"] == "closed", timeout=90)
    assert all(status in (200, 409) for status, _ in outcomes), outcomes
    assert {last for status, last in outcomes if status == 200} <= {"done", "resume"}, outcomes
    assert sum(1 for status, last in outcomes if last == "done") >= 1, outcomes
    steps = api("get", f"/beads/{bead['id']}/steps?limit=500")["items"]
    seqs = [s["seq"] for s in steps]
    assert sorted(seqs) == list(range(1, len(seqs) + 1)), seqs  # one step per number, no gaps
    assert {s["status"] for s in steps} == {"applied"}
    assert sum(1 for s in steps if s["kind"] == "pair") == sum(1 for _, last in outcomes if last == "done")
    runs = api("get", f"/beads/{bead['id']}/runs")["items"]
    assert [(r["status"], r["iterations"]) for r in runs] == [("finished", len(seqs))]
