"""Ralph reclaims beads whose lease expired (their worker died): called directly and via a real Celery worker."""
from __future__ import annotations

import json
import time
from datetime import datetime, timedelta

from sqlalchemy import update

from app.extensions import db
from app.models import Bead, utcnow
from app.services import ralph
from tests.celery_worker import thread_worker
from tests.conftest import unique
from workers import maintenance


def _claimed_bead(api, project) -> tuple[dict, dict]:
    bead = api.post("/api/v1/beads", json={"project_id": project["id"], "title": unique()}).get_json()
    agent = api.post("/api/v1/agents", json={"name": unique(), "persona": "engineer",
                                             "project_id": project["id"]}).get_json()
    claimed = api.post(f"/api/v1/beads/{bead['id']}/claim", json={"agent_id": agent["id"]}).get_json()
    assert claimed["status"] == "in_progress"
    return claimed, agent


def _expire(bead_id: int) -> None:
    db.session.execute(update(Bead).where(Bead.id == bead_id).values(lease_expires_at=utcnow() - timedelta(seconds=1)))
    db.session.commit()


def test_expired_lease_is_reclaimed_and_live_one_kept(ctx, api, project):
    expired, agent = _claimed_bead(api, project)
    live, live_agent = _claimed_bead(api, project)
    _expire(expired["id"])
    summary = maintenance.ralph_tick.run(force=True)
    assert expired["id"] in summary["reclaimed"] and live["id"] not in summary["reclaimed"]
    bead = api.get(f"/api/v1/beads/{expired['id']}").get_json()
    assert bead["status"] == "open" and bead["assigned_to"] is None and "lease expired" in bead["status_reason"]
    assert api.get(f"/api/v1/agents/{agent['id']}").get_json()["status"] == "idle"
    assert api.get(f"/api/v1/beads/{live['id']}").get_json()["status"] == "in_progress"
    assert api.get(f"/api/v1/agents/{live_agent['id']}").get_json()["status"] == "working"
    # The reclaimed bead can be claimed again, with a new fencing token.
    again = api.post(f"/api/v1/beads/{expired['id']}/claim", json={"agent_id": agent["id"]}).get_json()
    assert again["fencing_token"] == expired["fencing_token"] + 1
    logs = api.get(f"/api/v1/logs?source=ralph&bead_id={expired['id']}").get_json()
    assert logs["total"] == 1 and logs["items"][0]["level"] == "WARNING"
    at = logs["items"][0]["ts"]
    assert api.get(f"/api/v1/logs?bead_id={expired['id']}&since={at}").get_json()["total"] == 1  # at or after
    assert api.get(f"/api/v1/logs?bead_id={expired['id']}&since=2h").get_json()["total"] == 1  # a span back
    later = (datetime.fromisoformat(at.replace("Z", "+00:00")) + timedelta(seconds=1)).isoformat()
    assert api.get("/api/v1/logs", query_string={"bead_id": expired["id"], "since": later}).get_json()["total"] == 0
    refused = api.get("/api/v1/logs?since=yesterday-ish")
    assert refused.status_code == 422 and refused.get_json()["error"]["field"] == "since"
    assert api.get("/api/v1/logs?since=999999w").get_json()["total"] >= 1  # further back than year 1: from 1970


def test_tick_is_skipped_while_another_holds_the_lock(ctx):
    client = ctx.extensions["loom.redis"]()
    lock = client.lock(maintenance.RALPH_LOCK, timeout=10)
    assert lock.acquire(blocking=False)
    try:
        assert maintenance.ralph_tick.run(force=True) is None
    finally:
        lock.release()
    assert maintenance.ralph_tick.run(force=True) is not None
    heartbeat = ralph.last_heartbeat(client)
    assert heartbeat and "duration_ms" in heartbeat


def test_ralph_runs_on_a_real_worker(ctx, api, project):
    bead, _ = _claimed_bead(api, project)
    _expire(bead["id"])
    redis_client = ctx.extensions["loom.redis"]()
    redis_client.delete(ralph.HEARTBEAT_KEY)
    celery_app = ctx.extensions["celery"]
    # A queue of its own: the shared test Redis may still hold other tests' messages on `default`.
    with thread_worker(celery_app, concurrency=2, queues=["ralph-test"]):
        celery_app.send_task("loom.ralph_tick", kwargs={"force": True}, queue="ralph-test")
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and not redis_client.exists(ralph.HEARTBEAT_KEY):
            time.sleep(0.1)
    assert bead["id"] in json.loads(redis_client.get(ralph.HEARTBEAT_KEY))["reclaimed"]
    db.session.expire_all()  # this test shares one session with its API calls: drop what it cached
    now = api.get(f"/api/v1/beads/{bead['id']}").get_json()
    # Reopened - or already dispatched again by Ralph's safety-net dispatch, under a newer fencing token.
    assert now["status"] == "open" or (now["status"] == "in_progress"
                                       and now["fencing_token"] > bead["fencing_token"]), now
    assert api.get(f"/api/v1/logs?source=ralph&bead_id={bead['id']}").get_json()["total"] == 1
