"""Motivations: validation through the API, each kind evaluated with an injected clock, the cooldown, the
no-chain rule, the repair of half-done firings, the history, and exactly-once under concurrent ticks."""
from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from sqlalchemy import func, select, update

from app.extensions import db
from app.models import Agent, Bead, LLMRequest, Motivation, MotivationFiring, utcnow
from app.services import bead_graph, motivation_firing, motivation_triggers
from app.services import beads as bead_service
from app.services.motivation_defaults import DEFAULTS, ensure_default_motivations
from tests.conftest import unique

QA_TEMPLATE = {"title": "[qa] Review #{bead_id}: {title}", "description": "in {project} on {date}"}


@pytest.fixture()
def make(api):
    """Create motivations through the API; each is disabled again afterwards so later tests do not see it."""
    made: list[int] = []

    def create(**fields) -> dict:
        body = {"name": unique("m"), "persona": "qa-engineer", "bead_template": {"title": "T {date}"}, **fields}
        response = api.post("/api/v1/motivations", json=body)
        assert response.status_code == 201, response.get_json()
        made.append(response.get_json()["id"])
        return response.get_json()

    yield create
    for motivation_id in made:
        api.patch(f"/api/v1/motivations/{motivation_id}", json={"enabled": False})


def firings(motivation_id: int) -> list[MotivationFiring]:
    db.session.expire_all()
    return list(db.session.scalars(select(MotivationFiring).where(MotivationFiring.motivation_id == motivation_id)
                                   .order_by(MotivationFiring.id)).all())


def beads_of(motivation: dict) -> list[Bead]:
    return list(db.session.scalars(select(Bead).where(Bead.created_by == "motivation:" + motivation["name"])
                                   .order_by(Bead.id)).all())


def closed_bead(project_id: int, title: str = "feature") -> Bead:
    bead = bead_service.create_bead(project_id, title, created_by="tests")
    return bead_service.close_bead(bead.id, "done")


def closed_event(bead: Bead) -> dict:
    return {"id": f"{bead.id}-0", "type": "bead.closed", "project_id": bead.project_id, "bead_id": bead.id,
            "data": {"title": bead.title, "to": "closed"}}


# --------------------------------------------------------------------------- validation and CRUD

@pytest.mark.parametrize("body, status, field", [
    ({"kind": "interval"}, 422, "interval_s"),
    ({"kind": "interval", "interval_s": 5}, 422, "interval_s"),  # shorter than the 30 s tick
    ({"kind": "interval", "interval_s": "60"}, 422, "interval_s"),
    ({"kind": "calendar"}, 422, "cron"),
    ({"kind": "calendar", "cron": "61 * * * *"}, 422, "cron"),
    ({"kind": "calendar", "cron": "* * *"}, 422, "cron"),
    ({"kind": "idle", "idle_minutes": 0}, 422, "idle_minutes"),
    ({"kind": "idle"}, 422, "idle_minutes"),
    ({"kind": "threshold"}, 422, "threshold"),
    ({"kind": "threshold", "threshold": {"metric": "vibes", "value": 1}}, 422, "threshold.metric"),
    ({"kind": "threshold", "threshold": {"metric": "error_rate_1h", "value": 5}}, 422, "threshold.value"),
    ({"kind": "threshold", "threshold": {"metric": "open_beads", "op": "!=", "value": 5}}, 422, "threshold.op"),
    ({"kind": "event"}, 422, "event"),
    ({"kind": "event", "event": "motivation.fired"}, 422, "event"),  # no motivation reacts to motivations
    ({"kind": "weekly", "interval_s": 60}, 422, "kind"),
    ({"kind": "interval", "interval_s": 60, "persona": "nobody"}, 422, "persona"),
    ({"kind": "interval", "interval_s": 60, "project_id": 2000000000}, 404, "project_id"),
    ({"kind": "interval", "interval_s": 60, "bead_template": None}, 422, "bead_template"),
    ({"kind": "interval", "interval_s": 60, "bead_template": {"title": ""}}, 422, "bead_template.title"),
    ({"kind": "interval", "interval_s": 60, "bead_template": {"title": "x", "priority": 7}}, 422,
     "bead_template.priority"),
    ({"kind": "interval", "interval_s": 60, "persona": None, "wake_agent": True}, 422, "persona"),
    ({"kind": "interval", "interval_s": 60, "cooldown_s": -1}, 422, "cooldown_s"),
])
def test_bad_motivations_are_refused_naming_the_field(api, body, status, field):
    payload = {"name": unique("bad"), "persona": "qa-engineer", "bead_template": {"title": "x"}, **body}
    response = api.post("/api/v1/motivations", json=payload)
    assert response.status_code == status, response.get_json()
    assert response.get_json()["error"]["field"] == field, response.get_json()


def test_crud_enable_disable_and_builtins(api, ctx, make, project):
    created = make(kind="interval", interval_s=3600, project_id=project["id"], cron="ignored")
    assert created["cron"] is None and created["trigger"] == "every 1 h" and created["enabled_at"]
    duplicate = api.post("/api/v1/motivations", json={"name": created["name"].upper(), "kind": "idle",
                                                      "idle_minutes": 5, "bead_template": {"title": "x"}})
    assert duplicate.status_code == 409 and duplicate.get_json()["error"]["field"] == "name"
    one = f"/api/v1/motivations/{created['id']}"
    off = api.patch(one, json={"enabled": False}).get_json()
    assert off["enabled"] is False and off["next_due"] is None
    calendar = api.patch(one, json={"kind": "calendar", "cron": "0 9 * * 1-5", "enabled": True}).get_json()
    assert calendar["interval_s"] is None and calendar["trigger"] == "cron 0 9 * * 1-5 (UTC)"
    assert calendar["next_due"].endswith("T09:00:00Z") and calendar["enabled_at"] > created["enabled_at"]
    assert api.patch(one, json={"kind": "calendar", "cron": "nope"}).get_json()["error"]["field"] == "cron"
    listed = api.get(f"/api/v1/motivations?project_id={project['id']}").get_json()
    assert [m["id"] for m in listed["items"]] == [created["id"]] and listed["total"] == 1
    assert api.delete(one).status_code == 204
    assert api.get(one).status_code == 404

    assert set(ensure_default_motivations()) <= {d["name"] for d in DEFAULTS}
    assert ensure_default_motivations() == []  # once only
    builtins = {m.name: m for m in db.session.scalars(select(Motivation).where(Motivation.builtin.is_(True)))}
    assert set(builtins) == {d["name"] for d in DEFAULTS}
    enabled = {name for name, m in builtins.items() if m.enabled}
    assert enabled == {"Fix failing tests"}  # QA on close, standup, idle and cost alerts are opt-in
    qa = builtins["QA review when a bead closes"]
    assert (qa.kind, qa.event, qa.persona, qa.bead_template["title"]) == \
        ("event", "bead.closed", "qa-engineer", "[qa] Review #{bead_id}: {title}")
    refused = api.delete(f"/api/v1/motivations/{qa.id}")
    assert refused.status_code == 409 and refused.get_json()["error"]["code"] == "builtin"
    renamed = api.patch(f"/api/v1/motivations/{qa.id}", json={"name": "QA on close (renamed)"})
    assert renamed.status_code == 200
    assert ensure_default_motivations() == []  # a renamed default is still known
    api.patch(f"/api/v1/motivations/{qa.id}", json={"name": "QA review when a bead closes"})


# --------------------------------------------------------------------------- each kind, with an injected clock

def test_interval_fires_once_per_slot(ctx, make, project):
    m = make(kind="interval", interval_s=600, project_id=project["id"], bead_template={"title": "tick {date}"})
    now = utcnow().replace(minute=0, second=5, microsecond=0) + timedelta(days=1)
    motivation_triggers.run_tick(now)
    motivation_triggers.run_tick(now + timedelta(seconds=300))  # same 10-minute slot
    assert [f.outcome for f in firings(m["id"])] == ["fired"]
    motivation_triggers.run_tick(now + timedelta(seconds=600))
    fired = firings(m["id"])
    assert [f.outcome for f in fired] == ["fired", "fired"]
    slot = int(now.timestamp()) // 600
    assert [f.dedup_key for f in fired] == [f"m{m['id']}:i:{slot}", f"m{m['id']}:i:{slot + 1}"]
    made = beads_of(m)
    assert [b.id for b in made] == [f.bead_id for f in fired]
    assert made[0].title == f"tick {now:%Y-%m-%d}" and {"motivation", "qa-engineer"} <= set(made[0].tags)
    assert made[0].meta["motivation"]["id"] == m["id"] and made[0].origin_key == "mf:" + fired[0].dedup_key
    assert db.session.get(Motivation, m["id"]).fire_count == 2


def test_a_motivation_for_every_project_fires_in_each(ctx, make, project, api):
    other = api.post("/api/v1/projects", json={"name": unique("proj")}).get_json()
    m = make(kind="interval", interval_s=86_400)
    now = utcnow() + timedelta(days=3)
    motivation_triggers.run_tick(now)
    by_project = {f.project_id: f for f in firings(m["id"])}
    assert {project["id"], other["id"]} <= set(by_project)
    assert by_project[project["id"]].dedup_key.endswith(f":p{project['id']}")
    api.patch(f"/api/v1/motivations/{m['id']}", json={"enabled": False})


def test_calendar_fires_once_for_the_minute_that_came_due(ctx, make, project):
    m = make(kind="calendar", cron="30 9 * * *", project_id=project["id"])
    day = (utcnow() + timedelta(days=2)).replace(hour=9, minute=30, second=0, microsecond=0)
    motivation_triggers.run_tick(day - timedelta(seconds=1))  # 09:29:59: not yet
    assert firings(m["id"]) == []
    for offset in (10, 40, 95, 300):  # ticks at 09:30:10 ... 09:35: the same occasion
        motivation_triggers.run_tick(day + timedelta(seconds=offset))
    assert [f.dedup_key for f in firings(m["id"])] == [f"m{m['id']}:c:{day:%Y%m%d%H%M}"]
    motivation_triggers.run_tick(day + timedelta(days=1, minutes=4))  # Beat was late the next day: still once
    assert len(firings(m["id"])) == 2
    motivation_triggers.run_tick(day + timedelta(days=2, minutes=11))  # missed by more than the window
    assert len(firings(m["id"])) == 2


def test_idle_fires_once_per_idle_period(ctx, make, project):
    m = make(kind="idle", idle_minutes=30, project_id=project["id"], bead_template={"title": "idle {idle_minutes}"})
    work = bead_service.create_bead(project["id"], "something", created_by="tests")
    base = utcnow()
    motivation_triggers.run_tick(base + timedelta(minutes=20))
    assert firings(m["id"]) == []
    motivation_triggers.run_tick(base + timedelta(minutes=31))
    motivation_triggers.run_tick(base + timedelta(minutes=45))  # still the same idle period
    fired = firings(m["id"])
    assert len(fired) == 1 and fired[0].outcome == "fired"
    assert fired[0].dedup_key.startswith(f"m{m['id']}:idle:{project['id']}:")
    assert beads_of(m)[0].title == "idle 30"
    # Its bead is the new activity: the next period starts from it, and waits while that bead is open.
    motivation_triggers.run_tick(base + timedelta(minutes=120))
    assert len(firings(m["id"])) == 1
    bead_service.close_bead(beads_of(m)[0].id, "planned")
    bead_service.close_bead(work.id, "done")
    motivation_triggers.run_tick(base + timedelta(minutes=121))
    assert len(firings(m["id"])) == 2


def test_an_idle_check_skips_a_busy_project(ctx, make, project):
    m = make(kind="idle", idle_minutes=1, project_id=project["id"])
    bead = bead_service.create_bead(project["id"], "long job", created_by="tests")
    db.session.execute(update(Bead).where(Bead.id == bead.id).values(status="in_progress"))
    db.session.commit()
    motivation_triggers.run_tick(utcnow() + timedelta(hours=5))
    assert firings(m["id"]) == []
    bead_service.close_bead(bead.id)


def test_threshold_on_cost_today_fires_once_a_day(ctx, make, project, api):
    m = make(kind="threshold", threshold={"metric": "cost_usd_today", "value": 10}, project_id=project["id"],
             bead_template={"title": "spent ${value} (limit ${threshold})"})
    now = utcnow().replace(hour=12) + timedelta(days=5)
    for cost in (6.0, 3.5):
        db.session.add(LLMRequest(project_id=project["id"], model="m", cost_usd=cost, ts=now - timedelta(hours=1)))
    db.session.commit()
    motivation_triggers.run_tick(now)
    assert firings(m["id"]) == []  # 9.5 is not over 10
    db.session.add(LLMRequest(project_id=project["id"], model="m", cost_usd=1.0, ts=now - timedelta(minutes=5)))
    db.session.add(LLMRequest(project_id=None, model="m", cost_usd=100.0, ts=now))  # not this project's
    db.session.commit()
    motivation_triggers.run_tick(now)
    motivation_triggers.run_tick(now + timedelta(hours=3))
    fired = firings(m["id"])
    assert [f.dedup_key for f in fired] == [f"m{m['id']}:t:{project['id']}:{now:%Y%m%d}"]
    assert fired[0].trigger["value"] == 10.5 and beads_of(m)[0].title == "spent $10.5 (limit $10)"
    motivation_triggers.run_tick(now + timedelta(days=1))  # a new day starts at $0
    assert len(firings(m["id"])) == 1
    api.patch(f"/api/v1/motivations/{m['id']}", json={"threshold": {"metric": "cost_usd_total", "value": 10}})
    motivation_triggers.run_tick(now + timedelta(days=1))
    assert len(firings(m["id"])) == 2


def test_threshold_on_error_rate_and_blocked_beads(ctx, make, project):
    rate = make(kind="threshold", threshold={"metric": "error_rate_1h", "op": ">=", "value": 0.5},
                project_id=project["id"])
    blocked = make(kind="threshold", threshold={"metric": "blocked_beads", "value": 0}, project_id=project["id"])
    now = utcnow() + timedelta(days=9)
    for status in ("ok", "rate_limit", "provider", "ok"):
        db.session.add(LLMRequest(project_id=project["id"], model="m", status=status, ts=now - timedelta(minutes=9)))
    db.session.add(LLMRequest(project_id=project["id"], model="m", status="provider", ts=now - timedelta(hours=2)))
    db.session.commit()
    motivation_triggers.run_tick(now)
    assert [f.trigger["value"] for f in firings(rate["id"])] == [0.5]
    assert firings(blocked["id"]) == []
    bead = bead_service.create_bead(project["id"], "stuck", created_by="tests")
    bead_service.block_bead(bead.id, "waiting")
    motivation_triggers.run_tick(now)
    assert [f.trigger["value"] for f in firings(blocked["id"])] == [1]


# --------------------------------------------------------------------------- events, the no-chain rule, catch-up

def test_bead_closed_makes_one_qa_bead_and_the_qa_bead_does_not_chain(ctx, make, project):
    m = make(kind="event", event="bead.closed", project_id=project["id"], bead_template=QA_TEMPLATE)
    bead = closed_bead(project["id"], "Add login")
    made = motivation_triggers.fire_for_event(closed_event(bead))
    assert motivation_triggers.fire_for_event(closed_event(bead)) == []  # redelivered: nothing more
    assert [f.dedup_key for f in made] == [f"m{m['id']}:e:{bead.id}"]
    qa = beads_of(m)
    assert len(qa) == 1 and qa[0].title == f"[qa] Review #{bead.id}: Add login"
    assert qa[0].description.startswith(f"in {project['name']} on ") and "qa-engineer" in qa[0].tags
    assert qa[0].meta["motivation"]["subject_bead_id"] == bead.id
    bead_service.close_bead(qa[0].id, "reviewed")
    assert motivation_triggers.fire_for_event(closed_event(db.session.get(Bead, qa[0].id))) == []
    motivation_triggers.run_tick(utcnow() + timedelta(seconds=5))  # the catch-up does not chain either
    assert len(beads_of(m)) == 1 and len(firings(m["id"])) == 1


def test_missed_bead_closed_events_are_caught_up_once(ctx, make, project):
    m = make(kind="event", event="bead.closed", project_id=project["id"], bead_template=QA_TEMPLATE)
    before = closed_bead(project["id"], "live")
    motivation_triggers.fire_for_event(closed_event(before))
    missed = [closed_bead(project["id"], f"missed {n}") for n in range(3)]  # no event reached the hook
    now = utcnow() + timedelta(seconds=1)
    motivation_triggers.run_tick(now)
    motivation_triggers.run_tick(now + timedelta(seconds=30))
    subjects = sorted(f.trigger["bead_id"] for f in firings(m["id"]))
    assert subjects == sorted([before.id, *(b.id for b in missed)])
    assert db.session.get(Motivation, m["id"]).scan_cursor is not None
    for bead in missed:  # the live event arriving late finds the occasion taken
        assert motivation_triggers.fire_for_event(closed_event(bead)) == []


def test_catch_up_does_not_reach_back_before_the_motivation_was_enabled(ctx, make, project, api):
    old = closed_bead(project["id"], "long ago")
    m = make(kind="event", event="bead.closed", project_id=project["id"], bead_template=QA_TEMPLATE, enabled=False)
    closed_bead(project["id"], "while off")
    api.patch(f"/api/v1/motivations/{m['id']}", json={"enabled": True})
    after = closed_bead(project["id"], "after")
    motivation_triggers.run_tick(utcnow() + timedelta(seconds=1))
    assert [f.trigger["bead_id"] for f in firings(m["id"])] == [after.id]
    assert old.id not in [f.trigger["bead_id"] for f in firings(m["id"])]


def test_test_failed_makes_a_fix_bead_once_per_bead(ctx, make, project):
    m = make(kind="event", event="test.failed", persona="engineer", project_id=project["id"],
             bead_template={"title": "Fix #{bead_id}", "type": "bug", "description": "`{command}` exited {exit_code}"})
    bead = bead_service.create_bead(project["id"], "with tests", created_by="tests")
    event = {"id": "9-1", "type": "test.failed", "project_id": project["id"], "bead_id": bead.id,
             "data": {"command": "pytest -q", "exit_code": 1, "source": "acceptance"}}
    motivation_triggers.fire_for_event(event)
    motivation_triggers.fire_for_event({**event, "id": "9-2", "data": {**event["data"], "exit_code": 2}})
    fixes = beads_of(m)
    assert len(fixes) == 1 and fixes[0].type == "bug" and fixes[0].title == f"Fix #{bead.id}"
    assert fixes[0].description.startswith("`pytest -q` exited 1")
    fix_failed = {**event, "id": "9-3", "bead_id": fixes[0].id}  # the fix bead's own check fails: no chain
    assert motivation_triggers.fire_for_event(fix_failed) == []


def test_an_event_motivation_for_one_project_ignores_others(ctx, make, project, api):
    m = make(kind="event", event="bead.closed", project_id=project["id"], bead_template=QA_TEMPLATE)
    other = api.post("/api/v1/projects", json={"name": unique("proj")}).get_json()
    assert motivation_triggers.fire_for_event(closed_event(closed_bead(other["id"]))) == []
    assert firings(m["id"]) == []


# --------------------------------------------------------------------------- cooldown, wake, manual, repair

def test_cooldown_per_project(ctx, make, project, api):
    m = make(kind="event", event="bead.closed", cooldown_s=3600, bead_template=QA_TEMPLATE)
    other = api.post("/api/v1/projects", json={"name": unique("proj")}).get_json()
    now = utcnow()
    first, second = closed_bead(project["id"]), closed_bead(project["id"])
    motivation_triggers.fire_for_event(closed_event(first), now=now)
    skipped = motivation_triggers.fire_for_event(closed_event(second), now=now + timedelta(minutes=10))
    assert [(f.outcome, f.bead_id) for f in skipped] == [("skipped", None)] and "cooling down" in skipped[0].detail
    elsewhere = motivation_triggers.fire_for_event(closed_event(closed_bead(other["id"])), now=now)
    assert [f.outcome for f in elsewhere] == ["fired"]  # the cooldown is per project
    third = closed_bead(project["id"])
    assert [f.outcome for f in motivation_triggers.fire_for_event(closed_event(third), now=now + timedelta(hours=1))
            ] == ["fired"]
    api.patch(f"/api/v1/motivations/{m['id']}", json={"enabled": False})


def test_wake_records_the_agent_or_why_not(app, ctx, make, project, api):
    make(kind="event", event="bead.closed", project_id=project["id"], wake_agent=True, bead_template=QA_TEMPLATE)
    woken: list[int] = []
    qa_agent = db.session.scalars(select(Agent).where(Agent.project_id == project["id"],
                                                      Agent.persona == "qa-engineer")).one()
    [firing] = motivation_triggers.fire_for_event(closed_event(closed_bead(project["id"])),
                                                  wake=lambda: woken.append(1))
    assert firing.agent_id == qa_agent.id and woken == [1] and qa_agent.name in firing.detail

    def dispatch_at_once(event: dict) -> None:
        """a dispatcher so fast that the QA agent claims the new bead before the firing is marked done"""
        if event["type"] == "bead.created" and "motivation" in event["data"]["tags"]:
            bead_graph.claim_bead(event["bead_id"], qa_agent.id, 300)
    app.extensions["loom.event_hooks"].append(dispatch_at_once)
    try:
        [raced] = motivation_triggers.fire_for_event(closed_event(closed_bead(project["id"])))
    finally:
        app.extensions["loom.event_hooks"].remove(dispatch_at_once)
    assert raced.agent_id == qa_agent.id and "is on it" in raced.detail
    bead_service.close_bead(raced.bead_id)

    api.post(f"/api/v1/agents/{qa_agent.id}/pause")
    [paused] = motivation_triggers.fire_for_event(closed_event(closed_bead(project["id"])))
    assert paused.outcome == "fired" and paused.agent_id is None and "paused" in paused.detail
    api.post(f"/api/v1/agents/{qa_agent.id}/resume")


def test_trigger_now_ignores_the_cooldown_but_not_disabling(api, ctx, make, project):
    m = make(kind="event", event="bead.closed", cooldown_s=86_400, bead_template=QA_TEMPLATE)
    url = f"/api/v1/motivations/{m['id']}/trigger"
    needs = api.post(url, json={})
    assert needs.status_code == 422 and needs.get_json()["error"]["field"] == "project_id"
    subject = closed_bead(project["id"], "subject")
    results = [api.post(url, json={"bead_id": subject.id}) for _ in range(2)]
    assert [r.status_code for r in results] == [201, 201]
    fired = [r.get_json() for r in results]
    assert {f["outcome"] for f in fired} == {"fired"} and fired[0]["motivation_name"] == m["name"]
    assert fired[0]["dedup_key"].startswith(f"m{m['id']}:manual:") and fired[0]["trigger"]["by"] == "admin"
    assert db.session.get(Bead, fired[0]["bead_id"]).title == f"[qa] Review #{subject.id}: subject"
    assert api.post(url, json={"bead_id": 2000000000}).get_json()["error"]["field"] == "bead_id"
    api.patch(f"/api/v1/motivations/{m['id']}", json={"enabled": False})
    off = api.post(url, json={"project_id": project["id"]})
    assert off.status_code == 409 and off.get_json()["error"]["code"] == "disabled"
    assert api.post("/api/v1/motivations/2000000000/trigger", json={}).status_code == 404


def test_a_firing_left_pending_by_a_crash_is_completed_once(ctx, make, project):
    m = make(kind="interval", interval_s=3600, project_id=project["id"])
    now = utcnow()
    claimed = motivation_firing.claim(m["id"], f"m{m['id']}:crash", project["id"], {"kind": "interval"}, now)
    assert claimed.outcome == "pending"  # ... and the process died here, before the bead
    crashed_later = motivation_firing.claim(m["id"], f"m{m['id']}:crash2", project["id"], {"kind": "interval"}, now)
    motivation_firing._create_bead(db.session.get(Motivation, m["id"]), crashed_later, now)  # died after the bead
    assert motivation_firing.repair_pending(now + timedelta(seconds=30)) == 0  # too young: may still be running
    motivation_triggers.run_tick(now + timedelta(minutes=2))
    by_key = {f.dedup_key: f for f in firings(m["id"])}
    assert by_key[f"m{m['id']}:crash"].outcome == "fired" and by_key[f"m{m['id']}:crash2"].outcome == "fired"
    made = db.session.scalars(select(Bead).where(Bead.origin_key.in_([f"mf:m{m['id']}:crash",
                                                                      f"mf:m{m['id']}:crash2"]))).all()
    assert sorted(b.id for b in made) == sorted([by_key[f"m{m['id']}:crash"].bead_id,
                                                 by_key[f"m{m['id']}:crash2"].bead_id])


def test_history_is_paged_and_filtered(api, ctx, make, project):
    m = make(kind="event", event="bead.closed", project_id=project["id"], bead_template=QA_TEMPLATE)
    for _ in range(3):
        motivation_triggers.fire_for_event(closed_event(closed_bead(project["id"])))
    page = api.get(f"/api/v1/motivations/history?motivation_id={m['id']}&limit=2").get_json()
    assert page["total"] == 3 and len(page["items"]) == 2 and page["limit"] == 2
    assert page["items"][0]["id"] > page["items"][1]["id"] and page["items"][0]["motivation_name"] == m["name"]
    rest = api.get(f"/api/v1/motivations/history?motivation_id={m['id']}&limit=2&offset=2").get_json()["items"]
    assert len(rest) == 1
    by_project = api.get(f"/api/v1/motivations/history?project_id={project['id']}&outcome=fired").get_json()
    assert by_project["total"] == 3
    bad = api.get("/api/v1/motivations/history?outcome=maybe")
    assert bad.status_code == 422 and bad.get_json()["error"]["field"] == "outcome"


# --------------------------------------------------------------------------- exactly once under concurrency

def test_concurrent_ticks_and_events_fire_each_occasion_once(app, make, project):
    with app.app_context():
        interval = make(kind="interval", interval_s=3600, project_id=project["id"])
        calendar = make(kind="calendar", cron="*/5 * * * *", project_id=project["id"])
        threshold = make(kind="threshold", threshold={"metric": "open_beads", "value": 0}, project_id=project["id"])
        closed = make(kind="event", event="bead.closed", project_id=project["id"], bead_template=QA_TEMPLATE)
        subjects = [closed_bead(project["id"], f"race {n}") for n in range(5)]
        events = [closed_event(b) for b in subjects]
        db.session.remove()
    now = (utcnow() + timedelta(minutes=6)).replace(second=30, microsecond=0)
    threads, errors = 8, []
    barrier = threading.Barrier(threads)

    def race(n: int) -> None:
        with app.app_context():
            try:
                barrier.wait()
                if n % 2:
                    motivation_triggers.run_tick(now)
                for event in events if n % 2 == 0 else reversed(events):
                    motivation_triggers.fire_for_event(event, now=now)
                motivation_triggers.run_tick(now)
            except Exception as exc:  # noqa: BLE001 (reported below)
                errors.append(repr(exc))
            finally:
                db.session.remove()

    workers = [threading.Thread(target=race, args=(n,)) for n in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(120)
    assert errors == []
    with app.app_context():
        for m, expected in ((interval, 1), (calendar, 1), (threshold, 1), (closed, len(subjects))):
            fired = firings(m["id"])
            assert len(fired) == expected, (m["kind"], [f.dedup_key for f in fired])
            assert all(f.outcome == "fired" and f.bead_id for f in fired)
            made = beads_of(m)
            assert sorted(b.id for b in made) == sorted(f.bead_id for f in fired)  # one bead per firing
            assert db.session.get(Motivation, m["id"]).fire_count == expected
        assert db.session.scalar(select(func.count()).select_from(MotivationFiring)
                                 .where(MotivationFiring.outcome == "pending")) == 0
        db.session.remove()
