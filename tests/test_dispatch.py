"""The dispatcher: persona hints, decision beads, concurrency limits, dedicated project queues."""
from __future__ import annotations

import time
from types import SimpleNamespace

from app.services.dispatch import hint_words, persona_for
from tests.celery_worker import thread_worker
from workers import dispatch as dispatch_task
from tests.test_engine import Client, wait_for

PERSONAS = [SimpleNamespace(name=n, meta={"hints": h}) for n, h in (
    ("engineer", ["bug", "feature"]), ("qa-engineer", ["qa", "test", "tests"]),
    ("code-reviewer", ["review", "reviewer"]), ("devops-engineer", ["devops", "ci", "deploy"]))]


def _bead(title: str, tags: list[str] | None = None):
    return SimpleNamespace(title=title, tags=tags or [])


def test_persona_hints_from_title_and_tags():
    cases = {
        ("[qa] check the login page", ()): "qa-engineer",
        ("Ask the reviewer to look at the parser", ()): "code-reviewer",
        ("for devops: add a CI job", ()): "devops-engineer",
        ("Fix the crash", ("bug",)): "engineer",
        ("Write more", ("tests",)): "qa-engineer",
        ("qa: flaky suite", ()): "qa-engineer",
        ("Plain work with no hint", ()): None,
    }
    for (title, tags), persona in cases.items():
        assert persona_for(hint_words(_bead(title, list(tags))), PERSONAS) == persona, title


SCRIPT = {"latency_ms": 150, "rules": [
    {"match": {"turn": 1}, "reply": {"actions": [{"type": "write_file", "path": "f.txt", "content": "{title}"}]}},
    {"match": {"turn": 2}, "reply": {"actions": [{"type": "done", "reason": "ok"}]}}]}


def _closed(api, ids):
    def closed():
        """the beads to close"""
        return all(api("get", f"/beads/{i}")["status"] == "closed" for i in ids)
    return closed


def test_hinted_bead_goes_to_the_hinted_persona_and_limits_hold(make_engine):
    engine = make_engine(SCRIPT, MAX_PER_PROJECT=1)
    api = Client(engine.app)
    with thread_worker(engine.app.extensions["celery"], concurrency=6):
        project = api("post", "/projects", json={"name": "limits"})
        qa = api("post", "/beads", json={"project_id": project["id"], "title": "[qa] test the thing"})
        plain = [api("post", "/beads", json={"project_id": project["id"], "title": f"plain {i}"})["id"]
                 for i in range(3)]
        decision = api("post", "/beads", json={"project_id": project["id"], "title": "pick", "type": "decision"})
        wait_for(_closed(api, [qa["id"], *plain]), timeout=60)
    agents = {a["id"]: a["persona"] for a in api("get", f"/agents?project_id={project['id']}")["items"]}
    qa_run = api("get", f"/beads/{qa['id']}/runs")["items"][0]
    assert agents[qa_run["agent_id"]] == "qa-engineer"
    spans = sorted((api("get", f"/beads/{i}/runs")["items"][0]["started_at"], api("get", f"/beads/{i}")["closed_at"])
                   for i in [qa["id"], *plain])
    for earlier, later in zip(spans, spans[1:], strict=False):  # MAX_PER_PROJECT=1: one at a time
        assert earlier[1] <= later[0]  # closing a bead is what frees the project's slot (the run is stamped after)
    assert api("get", f"/beads/{decision['id']}")["status"] == "open"  # decisions never auto-run
    assert api("get", f"/beads/{decision['id']}/runs")["total"] == 0


def test_dedicated_project_runs_only_on_its_own_queue(make_engine):
    engine = make_engine(SCRIPT)
    api = Client(engine.app)
    celery_app = engine.app.extensions["celery"]
    project = api("post", "/projects", json={"name": "dedicated", "dedicated": True})
    with thread_worker(celery_app, concurrency=4, queues=["default"]):
        bead = api("post", "/beads", json={"project_id": project["id"], "title": "on my own workers"})

        def claimed():
            """the bead to be claimed by the default worker's dispatcher"""
            return api("get", f"/beads/{bead['id']}")["status"] == "in_progress"
        wait_for(claimed, timeout=30)
        time.sleep(1.0)
        assert api("get", f"/beads/{bead['id']}/steps")["total"] == 0  # its steps wait on project.<id>
    with thread_worker(celery_app, concurrency=4, queues=[f"project.{project['id']}"]):
        wait_for(_closed(api, [bead["id"]]), timeout=30)
    assert api("get", f"/beads/{bead['id']}/steps")["total"] == 2


def test_a_pass_finding_the_lock_taken_leaves_a_note_instead_of_waiting(ctx):
    """A worker thread never waits on the dispatch lock: it asks the holder for one more pass and returns."""
    client = ctx.extensions["loom.redis"]()
    client.delete(dispatch_task.AGAIN_KEY)
    lock = client.lock(dispatch_task.LOCK_KEY, timeout=30)
    assert lock.acquire(blocking=False)
    try:
        assert dispatch_task.dispatch.run() == []
        assert client.get(dispatch_task.AGAIN_KEY) == b"1"  # the note for the holder
    finally:
        lock.release()
    dispatch_task.dispatch.run()  # the lock is free: the pass runs and takes the note
    assert not client.exists(dispatch_task.AGAIN_KEY)


def test_a_finishing_agent_takes_its_next_bead_itself(make_engine):
    """The hand-off, called as the finishing step calls it: the next ready bead it suits, within the limits."""
    from app.services import agents, beads, projects
    from app.services.dispatch import hand_off
    from workers.loop import loop_settings
    engine = make_engine(SCRIPT, AUTO_DISPATCH=False)
    with engine.app.app_context():
        project = projects.create_project("hand-off", team=[], git_strategy="branch")
        engineer = agents.create_agent("eng", "engineer", project_id=project.id)
        agents.create_agent("qa", "qa-engineer", project_id=project.id)
        beads.create_bead(project.id, "pick", type="decision", priority=0)  # never claimed by an agent
        beads.create_bead(project.id, "[qa] for the QA engineer", priority=0)  # hinted to the other persona
        low = beads.create_bead(project.id, "low", priority=3)
        high = beads.create_bead(project.id, "high", priority=1)
        settings = loop_settings()
        run = hand_off(engineer.id, settings, max_concurrent=10, max_per_project=10)
        assert run is not None and run.bead_id == high.id and run.agent_id == engineer.id
        assert hand_off(engineer.id, settings, 10, 10) is None  # busy now: it is not idle
        beads.close_bead(high.id, "done")
        assert hand_off(engineer.id, settings, max_concurrent=10, max_per_project=1) is not None  # its slot freed
        beads.reopen_bead(low.id, "again")
        other = projects.create_project("full", team=[], git_strategy="branch")
        busy = agents.create_agent("busy", "engineer", project_id=other.id)
        idle = agents.create_agent("idle", "engineer", project_id=other.id)
        first, second = (beads.create_bead(other.id, f"o{n}") for n in range(2))
        assert hand_off(busy.id, settings, 10, max_per_project=1).bead_id == first.id
        assert hand_off(idle.id, settings, 10, max_per_project=1) is None  # the project's limit holds
        assert hand_off(idle.id, settings, max_concurrent=1, max_per_project=5) is None  # so does the global one
        assert hand_off(idle.id, settings, max_concurrent=2, max_per_project=5).bead_id == second.id



def test_agents_finishing_together_claim_different_beads_without_losing_claims(make_engine):
    """Eight agents of one project hand off at the same instant: each gets its own bead and no claim is lost
    (claimed one at a time per project; without that all eight went for the first ready bead, 28 of 36 claims
    failed)."""
    import sqlalchemy as sa

    from app.extensions import db
    engine, team, settings = engineers_and_beads(make_engine, agents_n=8, beads_n=12)
    with engine.app.app_context():
        claims: list[str] = []
        sa.event.listen(db.engine, "before_cursor_execute", lambda conn, cursor, statement, *rest: claims.append(
            statement) if statement.startswith("UPDATE beads SET status") else None)
    got = simultaneous_hand_offs(engine, team, settings, max_per_project=50)
    assert None not in got.values() and len(set(got.values())) == len(team), got
    assert len(claims) == len(team), f"{len(claims) - len(team)} claims lost"


def test_simultaneous_hand_offs_keep_the_project_limit(make_engine):
    """Six agents finish at once in a project allowed two beads at a time: exactly two start."""
    from app.extensions import db
    from app.models import Bead
    engine, team, settings = engineers_and_beads(make_engine, agents_n=6, beads_n=10)
    got = simultaneous_hand_offs(engine, team, settings, max_per_project=2)
    assert sorted(bead is not None for bead in got.values()) == [False] * 4 + [True] * 2, got
    with engine.app.app_context():
        assert db.session.query(Bead).filter_by(status="in_progress").count() == 2


def test_simultaneous_hand_offs_in_many_projects_keep_the_installation_limit(make_engine):
    """Six agents, each in a project of its own, finish at once in an installation allowed three beads at a
    time: exactly three start (the per-project claims lock alone let each see the others' slots free)."""
    from app.extensions import db
    from app.models import Bead
    from app.services import agents, beads, projects
    from workers.loop import loop_settings
    engine = make_engine(SCRIPT, AUTO_DISPATCH=False)
    with engine.app.app_context():
        team = []
        for n in range(6):
            project = projects.create_project(f"one of six {n}", team=[], git_strategy="branch")
            team.append(agents.create_agent("eng", "engineer", project_id=project.id).id)
            for i in range(2):
                beads.create_bead(project.id, f"work {n}.{i}")
        settings = loop_settings()
    got = simultaneous_hand_offs(engine, team, settings, max_per_project=5, max_concurrent=3)
    assert sorted(bead is not None for bead in got.values()) == [False] * 3 + [True] * 3, got
    with engine.app.app_context():
        assert db.session.query(Bead).filter_by(status="in_progress").count() == 3


def engineers_and_beads(make_engine, agents_n: int, beads_n: int):
    """An engine (no dispatch) with one project of `agents_n` idle engineers and `beads_n` ready beads."""
    from app.services import agents, beads, projects
    from workers.loop import loop_settings
    engine = make_engine(SCRIPT, AUTO_DISPATCH=False)
    with engine.app.app_context():
        project = projects.create_project("finishing together", team=[], git_strategy="branch")
        team = [agents.create_agent(f"eng{n}", "engineer", project_id=project.id).id for n in range(agents_n)]
        for n in range(beads_n):
            beads.create_bead(project.id, f"work {n}")
        return engine, team, loop_settings()


def simultaneous_hand_offs(engine, team: list[int], settings, max_per_project: int,
                           max_concurrent: int = 50) -> dict[int, int | None]:
    """Every agent of `team` hands off at the same instant (one thread each); agent id -> bead started."""
    import threading

    from app.extensions import db
    from app.services.dispatch import hand_off
    barrier, got, errors = threading.Barrier(len(team)), {}, []

    def finish(agent_id: int) -> None:
        try:
            with engine.app.app_context():
                barrier.wait()
                run = hand_off(agent_id, settings, max_concurrent=max_concurrent, max_per_project=max_per_project)
                got[agent_id] = run.bead_id if run is not None else None
                db.session.remove()
        except BaseException as exc:  # noqa: BLE001 (reported below)
            errors.append(exc)
    threads = [threading.Thread(target=finish, args=(agent_id,)) for agent_id in team]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not errors, errors
    return got


def test_a_hand_off_still_works_with_redis_down(make_engine, tmp_path):
    """The claims lock needs Redis; without it the hand-off claims unlocked (the compare-and-set decides)."""
    from app.extensions import db
    from app.services import agents, beads, projects
    from app.services.dispatch import hand_off
    from tests.conftest import build_app, free_port
    from workers.loop import loop_settings
    engine = make_engine(SCRIPT, AUTO_DISPATCH=False)
    no_redis = build_app(engine.database_url, f"redis://127.0.0.1:{free_port()}/0", tmp_path / "data",
                         AUTO_DISPATCH=False)
    with no_redis.app_context():
        project = projects.create_project("no-redis", team=[], git_strategy="branch")
        agent = agents.create_agent("eng", "engineer", project_id=project.id)
        bead = beads.create_bead(project.id, "still claimed")
        run = hand_off(agent.id, loop_settings(), max_concurrent=5, max_per_project=5)
        assert run is not None and run.bead_id == bead.id
        db.engine.dispose()
