"""Crash safety of one step, on the real database and a real scripted LLM, without a worker in between:
a redelivered step never asks the LLM twice nor repeats a recorded effect; a stale worker is fenced out."""
from __future__ import annotations

import json
import threading
import time

from sqlalchemy import func, select

from app.extensions import db
from app.llm import LLMClient
from app.models import Bead, Comment, Run, Step, utcnow
from app.services import bead_graph, beads, loop, ralph
from app.services.actions import ActionContext, apply_actions
from app.services.loop import LoopSettings
from app.services.ralph import RalphSettings
from tests.test_engine import Client

SCRIPT = {"rules": [{"match": {"turn": 1}, "reply": {"actions": [{"type": "git_status"}]}}],
          "default": {"actions": [{"type": "done", "reason": "ok"}]}}
REPLY = json.dumps({"actions": [{"type": "create_bead", "title": "follow-up"},
                                {"type": "comment", "text": "noted"}]})


def _setup(make_engine):
    engine = make_engine(SCRIPT, AUTO_DISPATCH=False)
    api = Client(engine.app)
    project = api("post", "/projects", json={"name": "crash"})
    bead = api("post", "/beads", json={"project_id": project["id"], "title": "crashy"})
    agents = api("get", f"/agents?project_id={project['id']}")["items"]
    settings = LoopSettings(data_dir=str(engine.data_dir))
    return engine, project, bead, agents, settings


def test_redelivered_step_uses_the_stored_reply_and_applies_once(make_engine):
    engine, project, bead, agents, settings = _setup(make_engine)
    llm = LLMClient(engine.llm.url, max_retries=0)
    with engine.app.app_context():
        run = loop.start_run(bead["id"], agents[0]["id"], settings)
        assert loop.run_step(run.id, llm, settings).next_step  # turn 1: git_status, for real
        asked = len(engine.llm.requests)
        # The worker got the reply of turn 2 and died before applying it: the reply is in the ledger.
        db.session.add(Step(run_id=run.id, bead_id=bead["id"], seq=2, status="llm_done", request="[]",
                            response=REPLY))
        db.session.commit()
        outcome = loop.run_step(run.id, llm, settings)  # the redelivery
        assert outcome.next_step and len(engine.llm.requests) == asked  # no second LLM call
        step = db.session.scalar(select(Step).where(Step.run_id == run.id, Step.seq == 2))
        assert step.status == "applied" and [r["status"] for r in step.results] == ["ok", "ok"]
        assert db.session.get(Run, run.id).iterations == 2
        # Applying the same turn again (a crash after the effects, before the step was marked) repeats nothing.
        ctx = ActionContext(run_id=run.id, seq=2, bead_id=bead["id"], project_id=project["id"], agent_name="x",
                            workspace=engine.data_dir, data_dir=str(engine.data_dir), default_branch="main",
                            git_strategy="branch", acceptance=None, command_timeout=10)
        apply_actions(ctx, json.loads(REPLY)["actions"])
        follow_ups = db.session.scalar(select(func.count()).select_from(Bead).where(Bead.title == "follow-up"))
        notes = db.session.scalar(select(func.count()).select_from(Comment).where(Comment.text == "noted"))
        assert (follow_ups, notes) == (1, 1)
        assert not loop.run_step(run.id, llm, settings).next_step  # turn 3: done
        assert db.session.get(Bead, bead["id"]).status == "closed"
    llm.close()


def test_stale_worker_is_fenced_out(make_engine):
    engine, project, bead, agents, settings = _setup(make_engine)
    llm = LLMClient(engine.llm.url, max_retries=0)
    with engine.app.app_context():
        old_run = loop.start_run(bead["id"], agents[0]["id"], settings)
        # The lease is reclaimed (the worker looked dead) and another agent takes the bead.
        beads.reopen_bead(bead["id"], "lease expired")
        new = bead_graph.claim_bead(bead["id"], agents[1]["id"], 300)
        asked = len(engine.llm.requests)
        outcome = loop.run_step(old_run.id, llm, settings)
        assert not outcome.next_step and outcome.reason == "stale"
        assert len(engine.llm.requests) == asked  # the stale worker did not even ask
        assert db.session.get(Run, old_run.id).status == "abandoned"
        current = db.session.get(Bead, bead["id"])
        assert (current.assigned_to, current.fencing_token, current.status) == (agents[1]["id"],
                                                                                new.fencing_token, "in_progress")
    llm.close()


def test_paused_agent_releases_its_bead_after_the_step(make_engine):
    engine, project, bead, agents, settings = _setup(make_engine)
    llm = LLMClient(engine.llm.url, max_retries=0)
    api = Client(engine.app)
    with engine.app.app_context():
        run = loop.start_run(bead["id"], agents[0]["id"], settings)
        api("post", f"/agents/{agents[0]['id']}/pause")
        outcome = loop.run_step(run.id, llm, settings)
        assert outcome.reason == "paused"
    got = api("get", f"/beads/{bead['id']}")
    assert got["status"] == "open" and got["assigned_to"] is None
    assert api("get", f"/agents/{agents[0]['id']}")["status"] == "paused"
    llm.close()


def test_a_stored_reply_claimed_by_a_dead_worker_is_applied_by_the_next_turn_holding_the_run_lock(make_engine):
    """A worker killed while applying turn 2 (or a step retried after the database blinked) left the reply
    claimed a moment ago: the next turn holds the run's lock, so nobody else can be applying it, and it goes on
    from there (before, it stood aside for 5 minutes and Ralph finally redid the whole bead from turn 1)."""
    from app.models import utcnow
    from app.services import turns
    engine, project, bead, agents, settings = _setup(make_engine)
    llm = LLMClient(engine.llm.url, max_retries=0)
    with engine.app.app_context():
        run = loop.start_run(bead["id"], agents[0]["id"], settings)
        assert loop.run_step(run.id, llm, settings).next_step
        asked = len(engine.llm.requests)
        db.session.add(Step(run_id=run.id, bead_id=bead["id"], seq=2, status="llm_done", request="[]",
                            response=REPLY, attempts=1, claimed_at=utcnow()))  # claimed, then the worker died
        db.session.commit()
        alive = turns.RunLock(run.id, "loop")  # while its applier lives, it holds the run's lock
        assert alive.acquire(0)
        try:
            outcome = loop.run_step(run.id, llm, settings)  # a duplicate delivery meanwhile stands aside
            assert (outcome.next_step, outcome.reason) == (False, "another worker is applying this step")
        finally:
            alive.release()
        outcome = loop.run_step(run.id, llm, settings)  # the applier is gone: its lock with it
        assert outcome.next_step and len(engine.llm.requests) == asked
        step = db.session.scalar(select(Step).where(Step.run_id == run.id, Step.seq == 2))
        assert (step.status, step.attempts) == ("applied", 2)
        assert db.session.get(Run, run.id).iterations == 2
    llm.close()


def test_a_turn_longer_than_the_lease_keeps_its_bead(make_engine):
    """A turn whose command outlasts the lease (here 3 s against a 4 s command) extends the lease as it goes:
    Ralph, ticking meanwhile, neither resumes the run elsewhere nor reopens the bead."""
    script = {"rules": [{"match": {"turn": 1}, "reply": {"actions": [
        {"type": "run_command", "command": "sleep 4", "timeout": 20}]}}],
        "default": {"actions": [{"type": "done", "reason": "ok"}]}}
    engine = make_engine(script, AUTO_DISPATCH=False)
    api = Client(engine.app)
    project = api("post", "/projects", json={"name": "long-turn"})
    bead = api("post", "/beads", json={"project_id": project["id"], "title": "slow build"})
    agent = api("get", f"/agents?project_id={project['id']}")["items"][0]
    settings = LoopSettings(data_dir=str(engine.data_dir), lease_seconds=3, command_timeout=30)
    llm = LLMClient(engine.llm.url, max_retries=0)
    with engine.app.app_context():
        run_id = loop.start_run(bead["id"], agent["id"], settings).id
        db.session.remove()
    outcomes: list = []

    def turn() -> None:
        with engine.app.app_context():
            outcomes.append(loop.run_step(run_id, llm, settings))
            db.session.remove()
    worker = threading.Thread(target=turn)
    worker.start()
    time.sleep(3.6)  # the lease the turn took when it began has run out by now
    with engine.app.app_context():
        assert db.session.get(Bead, bead["id"]).lease_expires_at > utcnow()  # extended while the command runs
        summary = ralph.run_tick(engine.app.extensions["loom.redis"](), RalphSettings(lease_seconds=3))
        assert bead["id"] not in summary["reclaimed"] and summary["resume"] == []
        db.session.remove()
    worker.join(30)
    assert outcomes and outcomes[0].next_step, outcomes
    with engine.app.app_context():
        assert not loop.run_step(run_id, llm, settings).next_step  # turn 2: done
        assert db.session.get(Bead, bead["id"]).status == "closed" and db.session.get(Run, run_id).resumes == 0
    llm.close()
