"""Motivations on the running stack: real Celery workers, real Redis and database, the scripted LLM over HTTP,
and real `celery beat` processes driving the tick."""
from __future__ import annotations

import re
import subprocess
import sys
import time

import pytest
import redis

from app.services.motivation_defaults import ensure_default_motivations
from tests.celery_worker import thread_worker
from tests.conftest import ROOT
from tests.test_engine import Client, wait_for
from workers import maintenance
from workers.motivations import EVENTS_HANDLED

SCRIPT = {
    "model": "test-model",
    "rules": [
        {"match": {"persona": "qa-engineer", "title": r"^\[qa\] Review #"}, "reply": {"notes": "review", "actions": [
            {"type": "comment", "text": "QA reviewed bead {bead_id}"}, {"type": "done", "reason": "reviewed"}]}},
    ],
    "default": {"actions": [{"type": "done", "reason": "done"}]},
}


def _defaults(engine, api: Client) -> dict[str, dict]:
    with engine.app.app_context():
        ensure_default_motivations()
    return {m["name"]: m for m in api("get", "/motivations?limit=100")["items"]}


def _handled(engine) -> int:
    client = redis.Redis.from_url(engine.redis_url)
    try:
        return int(client.get(EVENTS_HANDLED) or 0)
    finally:
        client.close()


def _worker(engine):
    return thread_worker(engine.app.extensions["celery"], concurrency=8)


def test_a_closed_bead_gets_exactly_one_qa_bead_and_the_qa_bead_does_not_chain(make_engine):
    engine = make_engine(SCRIPT)
    api = Client(engine.app)
    qa = _defaults(engine, api)["QA review when a bead closes"]
    api("patch", f"/motivations/{qa['id']}", json={"enabled": True})
    with engine.app.app_context(), _worker(engine):
        project = api("post", "/projects", json={"name": "qa-on-close"})
        feature = api("post", "/beads", json={"project_id": project["id"], "title": "Add the login page"})

        def qa_bead_closed():
            """the QA bead to be created, worked by QA and closed"""
            beads = api("get", f"/beads?project_id={project['id']}&tag=motivation")["items"]
            return beads if beads and all(b["status"] == "closed" for b in beads) else None
        wait_for(qa_bead_closed, timeout=90)
        wait_for(lambda: _handled(engine) >= 2, timeout=30)  # both closes went through the event task
        maintenance.motivations_tick(force=True)  # and the Beat's catch-up finds nothing left to do

    beads = api("get", f"/beads?project_id={project['id']}&limit=100")["items"]
    assert len(beads) == 2, [(b["id"], b["title"]) for b in beads]
    [review] = [b for b in beads if b["id"] != feature["id"]]
    assert review["title"] == f"[qa] Review #{feature['id']}: Add the login page"
    assert {"motivation", "qa-engineer"} <= set(review["tags"]) and review["created_by"] == f"motivation:{qa['name']}"
    [run] = api("get", f"/beads/{review['id']}/runs")["items"]
    assert api("get", f"/agents/{run['agent_id']}")["persona"] == "qa-engineer"  # routed to QA
    comments = api("get", f"/beads/{review['id']}/comments")["items"]
    assert [c["text"] for c in comments] == [f"QA reviewed bead {review['id']}"]
    history = api("get", f"/motivations/history?motivation_id={qa['id']}")["items"]
    assert [(f["outcome"], f["bead_id"], f["dedup_key"]) for f in history] == \
        [("fired", review["id"], f"m{qa['id']}:e:{feature['id']}")]
    assert history[0]["agent_id"], history[0]
    assert api("get", f"/agents/{history[0]['agent_id']}")["persona"] == "qa-engineer"  # the agent it woke
    fired = api("get", f"/events?project_id={project['id']}&type=motivation.fired")["items"]
    assert [e["data"]["firing_id"] for e in fired] == [history[0]["id"]]
    assert api("get", f"/motivations/{qa['id']}")["fire_count"] == 1


def test_a_failing_acceptance_check_gets_one_fix_bead(make_engine):
    engine = make_engine(SCRIPT, MAX_ITERATIONS=3)
    api = Client(engine.app)
    fix = _defaults(engine, api)["Fix failing tests"]
    assert fix["enabled"]
    with engine.app.app_context(), _worker(engine):
        project = api("post", "/projects", json={"name": "fix-tests"})
        flaky = api("post", "/beads", json={"project_id": project["id"], "title": "Make the check pass",
                                            "acceptance": "echo 'FAILED test_calc' >&2; exit 3"})

        def fix_closed_and_flaky_stopped():
            """the fix bead to be closed and the failing bead to be stopped by its loop limit"""
            fixes = api("get", f"/beads?project_id={project['id']}&tag=motivation")["items"]
            stuck = api("get", f"/beads/{flaky['id']}")["status"] == "blocked"
            return fixes if stuck and fixes and all(b["status"] == "closed" for b in fixes) else None
        wait_for(fix_closed_and_flaky_stopped, timeout=90)
        failures = api("get", f"/events?project_id={project['id']}&type=test.failed")["items"]
        wait_for(lambda: _handled(engine) >= len(failures), timeout=30)

    assert len(failures) >= 2  # every failing `done` raised test.failed ...
    assert {(e["bead_id"], e["data"]["command"], e["data"]["exit_code"], e["data"]["source"]) for e in failures} == \
        {(flaky["id"], "echo 'FAILED test_calc' >&2; exit 3", 3, "acceptance")}
    assert "FAILED test_calc" in failures[0]["data"]["output"]
    fixes = api("get", f"/beads?project_id={project['id']}&tag=motivation")["items"]
    assert len(fixes) == 1  # ... but the bead got one fix bead
    assert fixes[0]["title"] == f"Fix failing tests of #{flaky['id']}: Make the check pass"
    assert (fixes[0]["type"], fixes[0]["priority"]) == ("bug", 1) and "exited with 3" in fixes[0]["description"]
    [run] = api("get", f"/beads/{fixes[0]['id']}/runs")["items"]
    assert api("get", f"/agents/{run['agent_id']}")["persona"] == "engineer"


INTERVAL, SLOT, DURATION = 2, 4, 30


def _sent(tmp_path) -> dict[str, int]:
    """How often each Beat process has sent the motivations tick so far (from its log)."""
    return {name: len(re.findall(r"Sending due task motivations-tick", (tmp_path / f"{name}.log").read_text()))
            for name in ("beat-a", "beat-b")}


@pytest.mark.slow
def test_two_real_beats_fire_an_interval_motivation_once_per_interval(make_engine, tmp_path):
    engine = make_engine({"rules": []}, MOTIVATIONS_INTERVAL=float(INTERVAL))
    api = Client(engine.app)
    project = api("post", "/projects", json={"name": "beat-driven"})
    motivation = api("post", "/motivations", json={
        "name": "every four seconds", "kind": "interval", "interval_s": SLOT, "project_id": project["id"],
        "persona": "engineer", "bead_template": {"title": "tick at {time}"}})
    env = {**engine.env(), "LOOM_MOTIVATIONS_INTERVAL": str(INTERVAL), "LOOM_RALPH_INTERVAL": "600",
           "LOOM_HEALTH_INTERVAL": "600"}
    procs = []
    try:
        for name in ("beat-a", "beat-b"):
            with open(tmp_path / f"{name}.log", "wb") as log:
                procs.append(subprocess.Popen(
                    [sys.executable, "-m", "celery", "-A", "workers.celery_app", "beat", "--loglevel", "INFO",
                     "-s", str(tmp_path / f"{name}.schedule")], cwd=ROOT, env=env, stdout=log,
                    stderr=subprocess.STDOUT))
        with open(tmp_path / "worker.log", "wb") as log:
            procs.append(subprocess.Popen(
                [sys.executable, "-m", "celery", "-A", "workers.celery_app", "worker", "-P", "threads", "-c", "4",
                 "-Q", "default", "--loglevel", "WARNING", "--without-gossip", "--without-mingle"],
                cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT))
        wait_for(lambda: min(_sent(tmp_path).values()) >= 1, timeout=90)  # both Beats are up
        client = redis.Redis.from_url(engine.redis_url)
        sent_before, ran_before = _sent(tmp_path), int(client.get(maintenance.MOTIVATIONS_RUNS) or 0)
        time.sleep(DURATION)
        sent_after, ran = _sent(tmp_path), int(client.get(maintenance.MOTIVATIONS_RUNS) or 0) - ran_before
        client.close()
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.wait(20)
    sent = {name: sent_after[name] - sent_before[name] for name in sent_after}
    history = api("get", f"/motivations/history?motivation_id={motivation['id']}&limit=500")["items"]
    slots = sorted(int(f["dedup_key"].split(":")[2]) for f in history)
    ticks = DURATION / INTERVAL
    print(f"\ntwo beats for {DURATION}s: motivations_tick sent={sent} ran={ran}; slots fired={len(slots)}")
    assert min(sent.values()) >= ticks * 0.6  # both Beats really sent the tick
    assert ticks * 0.6 <= ran <= ticks + 1  # which ran about once per tick
    assert len(slots) == len(set(slots)) and len(slots) >= DURATION / SLOT * 0.6
    assert slots[-1] - slots[0] + 1 - len(slots) <= 1  # one firing per interval, at most one late tick lost
    assert all(f["outcome"] == "fired" and f["bead_id"] for f in history)
    made = api("get", f"/beads?project_id={project['id']}&tag=motivation&limit=500")["items"]
    assert sorted(b["id"] for b in made) == sorted(f["bead_id"] for f in history)  # one bead per firing
