"""Ralph's phases on the real database: zombies, resuming runs, error loops, provider recovery."""
from __future__ import annotations

from datetime import timedelta

from sqlalchemy import update

from app.extensions import db
from app.llm import LLMClient
from app.models import Agent, Bead, Run, utcnow
from app.services import loop, ralph
from app.services.loop import LoopSettings
from app.services.ralph import RalphSettings
from tests.test_engine import Client

SCRIPT = {"rules": [{"match": {"turn": [1, 2]}, "reply": {"actions": [
    {"type": "write_file", "path": "f.txt", "content": "turn {turn}"}]}}],
    "default": {"actions": [{"type": "done", "reason": "ok"}]}}


def _setup(make_engine, title="ralph"):
    engine = make_engine(SCRIPT, AUTO_DISPATCH=False)
    api = Client(engine.app)
    project = api("post", "/projects", json={"name": title})
    bead = api("post", "/beads", json={"project_id": project["id"], "title": title})
    agents = api("get", f"/agents?project_id={project['id']}")["items"]
    return engine, api, project, bead, agents


def _age(model, row_id, **values):
    db.session.execute(update(model).where(model.id == row_id).values(**values))
    db.session.commit()


def test_expired_lease_resumes_the_run_then_reopens_after_too_many(make_engine):
    engine, api, project, bead, agents = _setup(make_engine)
    settings = LoopSettings(data_dir=str(engine.data_dir))
    llm = LLMClient(engine.llm.url, max_retries=0)
    with engine.app.app_context():
        run = loop.start_run(bead["id"], agents[0]["id"], settings)
        loop.run_step(run.id, llm, settings)  # one step applied, then the worker "dies"
        past = utcnow() - timedelta(seconds=1)
        _age(Bead, bead["id"], lease_expires_at=past)
        reopened, resumed = ralph.reclaim_expired_leases(settings=RalphSettings(max_resumes=1))
        assert (reopened, resumed) == ([], [(run.id, project["id"])])
        assert db.session.get(Bead, bead["id"]).lease_expires_at > utcnow()
        # The resumed run carries on from step 2 and finishes.
        while loop.run_step(run.id, llm, settings).next_step:
            pass
        assert db.session.get(Bead, bead["id"]).status == "closed"
        assert [s["seq"] for s in api("get", f"/beads/{bead['id']}/steps")["items"]] == [1, 2, 3]
    second = api("post", "/beads", json={"project_id": project["id"], "title": "again"})
    with engine.app.app_context():
        run2 = loop.start_run(second["id"], agents[1]["id"], settings)
        _age(Run, run2.id, resumes=1)
        _age(Bead, second["id"], lease_expires_at=utcnow() - timedelta(seconds=1))
        reopened, resumed = ralph.reclaim_expired_leases(settings=RalphSettings(max_resumes=1))
        assert (reopened, resumed) == ([second["id"]], [])
        assert db.session.get(Run, run2.id).status == "abandoned"
        assert db.session.get(Agent, agents[1]["id"]).status == "idle"
    llm.close()


def test_zombie_agent_is_reset(make_engine):
    engine, api, project, bead, agents = _setup(make_engine, "zombie")
    settings = LoopSettings(data_dir=str(engine.data_dir))
    with engine.app.app_context():
        run = loop.start_run(bead["id"], agents[0]["id"], settings)
        long_ago = utcnow() - timedelta(minutes=10)
        _age(Agent, agents[0]["id"], last_heartbeat_at=long_ago)
        assert ralph.reset_zombie_agents(utcnow(), RalphSettings()) == []  # its bead's lease is still live
        _age(Bead, bead["id"], lease_expires_at=long_ago)  # the worker died: heartbeat and lease ran out alike
        assert ralph.reset_zombie_agents(utcnow(), RalphSettings()) == []  # left to the lease phase ...
        assert ralph.reclaim_expired_leases(settings=RalphSettings())[1] == [(run.id, project["id"])]  # resumed
        assert db.session.get(Run, run.id).status == "running"
        _age(Bead, bead["id"], status="closed")  # the bead went away under the agent: now it is a zombie
        assert ralph.reset_zombie_agents(utcnow(), RalphSettings()) == [agents[0]["id"]]
        assert db.session.get(Run, run.id).status == "abandoned"
    assert api("get", f"/agents/{agents[0]['id']}")["status"] == "idle"
    actions = api("get", "/events?type=ralph.action")["items"]
    assert any(a["data"]["action"] == "agent_reset" for a in actions)


def test_error_loops_are_blocked_for_triage_and_provider_blocks_recover(make_engine):
    engine, api, project, bead, agents = _setup(make_engine, "loops")
    flaky = api("post", "/beads", json={"project_id": project["id"], "title": "provider trouble"})
    budget = api("post", "/beads", json={"project_id": project["id"], "title": "over budget"})
    with engine.app.app_context():
        _age(Bead, bead["id"], dispatch_count=10)
        assert ralph.block_error_loops(RalphSettings(max_dispatches=10)) == [bead["id"]]
        looped = db.session.get(Bead, bead["id"])
        assert looped.block_kind == "loop" and looped.meta["triage_persona"] == "cto"
        long_ago = utcnow() - timedelta(hours=3)
        _age(Bead, flaky["id"], status="blocked", block_kind="provider", updated_at=long_ago)
        _age(Bead, budget["id"], status="blocked", block_kind="budget", updated_at=long_ago)
        assert ralph.recover_provider_blocks(utcnow(), RalphSettings(), provider_healthy=False) == []
        assert ralph.recover_provider_blocks(utcnow(), RalphSettings(), provider_healthy=True) == [flaky["id"]]
        assert db.session.get(Bead, budget["id"]).status == "blocked"  # budget blocks never auto-recover
    assert api("get", f"/beads/{flaky['id']}")["status"] == "open"


def test_a_run_whose_bead_a_person_closed_while_paused_ends_after_the_grace(make_engine):
    """Closing a bead paused for pairing left its run `running` for ever (no loop step was queued to notice)."""
    from app.services import pair as pair_service
    engine, api, project, bead, agents = _setup(make_engine, "closed-while-paused")
    live = api("post", "/beads", json={"project_id": project["id"], "title": "still working"})
    settings = LoopSettings(data_dir=str(engine.data_dir))
    llm = LLMClient(engine.llm.url, max_retries=0)
    with engine.app.app_context():
        paused = loop.start_run(bead["id"], agents[0]["id"], settings)
        working = loop.start_run(live["id"], agents[1]["id"], settings)
        loop.run_step(paused.id, llm, settings)
        pair_service.pause(bead["id"], "alice", 3600)
        api("post", f"/beads/{bead['id']}/close", json={"reason": "done by hand"})
        assert ralph.end_orphaned_runs(utcnow()) == []  # just closed: a loop may still be finishing it
        later = utcnow() + ralph.ORPHAN_GRACE + timedelta(seconds=1)
        assert ralph.end_orphaned_runs(later) == [paused.id]
        ended = db.session.get(Run, paused.id, populate_existing=True)
        assert (ended.status, ended.paused_by) == ("abandoned", None) and "closed" in ended.terminal_reason
        assert db.session.get(Run, working.id, populate_existing=True).status == "running"  # its bead is live
        assert ralph.end_orphaned_runs(later) == []
        summary = ralph.run_tick(engine.app.extensions["loom.redis"](), now=later)
        assert summary["orphaned_runs"] == []
    llm.close()


def test_a_provider_blocked_bead_is_retried_minutes_after_a_short_outage_not_half_an_hour(make_engine):
    engine, api, project, bead, agents = _setup(make_engine, "short-outage")
    with engine.app.app_context():
        minutes_ago = utcnow() - timedelta(minutes=3)
        _age(Bead, bead["id"], status="blocked", block_kind="provider", updated_at=minutes_ago)
        assert ralph.recover_provider_blocks(utcnow(), RalphSettings(), provider_healthy=False) == []
        assert ralph.recover_provider_blocks(utcnow(), RalphSettings(), provider_healthy=True) == [bead["id"]]
        assert db.session.get(Bead, bead["id"]).status == "open"
