"""Provider faults from the scripted provider: retries and backoff hold, a persistent outage auto-blocks
the bead with the reason, and the bead recovers by itself once the provider heals."""
from __future__ import annotations

import time


from tests.test_engine import Client, wait_for
from tests.celery_worker import thread_worker

WORK = [{"match": {"turn": 1}, "reply": {"actions": [{"type": "write_file", "path": "a.txt", "content": "a"}]}},
        {"match": {"turn": 2}, "reply": {"actions": [{"type": "done", "reason": "ok"}]}}]
OUTAGE = 24  # requests that fail: enough for 5 failed turns with the client's own retries
SCRIPT = {"rules": [
    {"match": {"title": "^burst"}, "fault": {"status": 500, "times": 2}},
    {"match": {"title": "^ratelimited"}, "fault": {"status": 429, "retry_after": 1, "times": 1}},
    {"match": {"title": "^hang"}, "fault": {"delay_ms": 3000, "times": 1}},
    {"match": {"title": "^truncated"}, "fault": {"truncate": 2, "times": 1}},
    {"match": {"title": "^garbage"}, "fault": {"garbage": True, "times": 1}},
    {"match": {"title": "^outage"}, "fault": {"status": 503, "times": OUTAGE}},
    *WORK]}


def _final(api, bead_id, statuses=("closed",), timeout=60):
    def settled():
        """the bead to settle"""
        bead = api("get", f"/beads/{bead_id}")
        return bead if bead["status"] in statuses else None
    try:
        return wait_for(settled, timeout=timeout, interval=0.2)
    except AssertionError:
        bead = api("get", f"/beads/{bead_id}")
        steps = api("get", f"/beads/{bead_id}/steps")["items"]
        runs = api("get", f"/beads/{bead_id}/runs")["items"]
        raise AssertionError(f"bead {bead['title']} stuck {bead['status']} {bead['status_reason']} "
                             f"errors={bead['error_history']} steps={[(x['seq'], x['status']) for x in steps]} "
                             f"runs={runs}") from None


def test_transient_faults_are_absorbed_and_an_outage_blocks_then_recovers(make_engine):
    engine = make_engine(SCRIPT, STEP_TIMEOUT=1, LLM_RETRY_BACKOFF=0.1, ERROR_BACKOFF=0.2,
                         RECOVER_TRANSIENT_SECONDS=1)
    api = Client(engine.app)
    celery_app = engine.app.extensions["celery"]
    with thread_worker(celery_app, concurrency=8):
        project = api("post", "/projects", json={"name": "faults"})
        ids = {t: api("post", "/beads", json={"project_id": project["id"], "title": f"{t} bead"})["id"]
               for t in ("burst", "ratelimited", "hang", "truncated", "garbage", "outage")}
        results = {t: _final(api, ids[t]) for t in ("burst", "ratelimited", "hang", "truncated", "garbage")}
        blocked = _final(api, ids["outage"], statuses=("blocked",))
        assert blocked["block_kind"] == "provider" and "5 provider errors" in blocked["status_reason"]
        assert [e["kind"] for e in blocked["error_history"]] == ["provider"] * 5
        assert blocked["meta"]["triage_persona"] == "cto"
        time.sleep(1.2)  # the recovery wait (shortened); the provider answers again
        celery_app.send_task("loom.ralph_tick", kwargs={"force": True}, queue="default")
        healed = _final(api, ids["outage"])
    # Client-side retries absorbed 500s, the 429 (after its Retry-After) and the hang: no error recorded.
    for name in ("burst", "ratelimited", "hang"):
        assert results[name]["error_history"] == [], (name, results[name]["error_history"])
    # A stream cut after text is not retried by the client: the loop records it and redoes the turn.
    assert [e["kind"] for e in results["truncated"]["error_history"]] == ["provider"]
    garbage_steps = api("get", f"/beads/{ids['garbage']}/steps")["items"]
    # Turn 1 was garbage (fed back as an error); turn 2 is the script's `done`.
    assert garbage_steps[0]["parse_error"] and [s["actions"][0]["type"] for s in garbage_steps[1:]] == ["done"]
    assert healed["status"] == "closed"
    actions = [e["data"]["action"] for e in api("get", "/events?type=ralph.action&limit=1000")["items"]]
    assert "bead_recovered" in actions
