"""Activity feed and notifications on the running stack: a real Celery worker, Redis, the database and the
scripted LLM over HTTP; webhooks go to a real HTTP receiver that checks their signature."""
from __future__ import annotations

import pytest

from app.extensions import db
from app.models import Activity, Notification, WebhookDelivery
from app.services import metrics
from tests.celery_worker import call_task, thread_worker
from tests.conftest import login_token, unique
from tests.test_engine import Client, wait_for
from tests.webhook_receiver import WebhookReceiver

SCRIPT = {
    "model": "test-model",
    "rules": [
        {"match": {"title": r"^ask "}, "reply": {"notes": "need a human", "actions": [
            {"type": "escalate", "reason": "which database?", "question": "PostgreSQL or SQLite?",
             "options": ["PostgreSQL", "SQLite"]}]}},
    ],
    "default": {"actions": [{"type": "done", "reason": "done"}]},
}
SECRET = "a-webhook-secret-of-32-characters"


class As:
    """The REST API as one user (bearer token), answering (status, json)."""

    def __init__(self, app, username: str, password: str) -> None:
        self.app, self.http = app, app.test_client()
        with app.app_context():
            self.headers = {"Authorization": f"Bearer {login_token(self.http, username, password)}"}

    def __call__(self, method: str, path: str, **kwargs) -> tuple[int, dict | None]:
        # A request made inside the test's app context would share its `g` (and the caller it remembers).
        with self.app.app_context():
            response = getattr(self.http, method)("/api/v1" + path, headers=self.headers, **kwargs)
            return response.status_code, response.get_json()


def _person(api: Client, app, role: str = "user") -> tuple[dict, As]:
    name, password = unique(role), "password-" + unique()
    user = api("post", "/users", json={"username": name, "password": password, "role": role})
    return user, As(app, name, password)


def _inbox(person: As, **query) -> dict:
    status, body = person("get", "/notifications?limit=100&" + "&".join(f"{k}={v}" for k, v in query.items()))
    assert status == 200, body
    return body


def test_a_run_feeds_the_activity_list_and_notifies_the_right_people(make_engine):
    engine = make_engine(SCRIPT, WEBHOOK_ALLOW_PRIVATE=True)  # the receivers listen on this machine
    api = Client(engine.app)
    alice, as_alice = _person(api, engine.app)
    bob, as_bob = _person(api, engine.app)
    with WebhookReceiver(SECRET) as receiver:
        status, prefs = as_alice("put", "/notifications/preferences",
                                 json={"webhook_url": receiver.url, "webhook_secret": SECRET, "webhook_enabled": True})
        assert status == 200 and prefs["webhook_enabled"] and prefs["webhook_secret_set"], prefs
        assert "webhook_secret" not in prefs  # she chose it: it is never echoed back
        with engine.app.app_context(), thread_worker(engine.app.extensions["celery"], concurrency=8):
            project = api("post", "/projects", json={"name": "team-events"})
            owned = api("post", "/beads", json={"project_id": project["id"], "title": "ask which database",
                                                "owner_id": alice["id"]})
            quick = [api("post", "/beads", json={"project_id": project["id"], "title": f"quick {n}"})
                     for n in range(3)]
            urgent = api("post", "/beads", json={"project_id": project["id"], "title": "prod is down",
                                                 "priority": 0})

            def decision_waits():
                """alice to be told the decision her bead escalated waits for her"""
                items = _inbox(as_alice)["items"]
                return [n for n in items if n["type"] == "decision.waiting"] or None
            [waiting] = wait_for(decision_waits, timeout=60)
            wait_for(lambda: all(api("get", f"/beads/{b['id']}")["status"] == "closed" for b in [*quick, urgent]),
                     timeout=60)
            wait_for(lambda: len(receiver.received) >= 3, timeout=30)  # assigned, decision, P0

            def closes_fed():
                """the four closes (each folded into its agent's line) to reach the feed"""
                lines = api("get", f"/activity?project_id={project['id']}&type=bead.closed&limit=100")["items"]
                return lines if sum(a["count"] for a in lines) >= 4 else None
            closes = wait_for(closes_fed, timeout=30)

    # alice: her bead, the decision it raised, the P0; bob: only the P0
    mine = {(n["type"], n["bead_id"]) for n in _inbox(as_alice)["items"]}
    assert ("bead.assigned", owned["id"]) in mine and ("bead.p0_created", urgent["id"]) in mine, mine
    assert waiting["link"] == "/decisions" and "PostgreSQL or SQLite?" in waiting["body"]
    bobs = _inbox(as_bob)
    assert [(n["type"], n["bead_id"]) for n in bobs["items"]] == [("bead.p0_created", urgent["id"])]
    assert bobs["unread"] == 1
    assert all(n["user_id"] == bob["id"] for n in bobs["items"])
    status, body = as_bob("post", f"/notifications/{waiting['id']}/read")
    assert status == 404 and body["error"]["field"] == "id"  # someone else's notification is not there

    # the webhook: alice's three, each signed with her secret, none for bob
    assert all(r.valid_signature for r in receiver.received), [r.headers for r in receiver.received]
    assert sorted(r.json["event"] for r in receiver.received) == ["bead.assigned", "bead.p0_created",
                                                                  "decision.waiting"]
    assert {r.json["user"] for r in receiver.received} == {alice["username"]}
    assert all(r.headers["X-Loom-Event"] == r.json["event"] for r in receiver.received)
    deliveries = as_alice("get", "/notifications/webhook-deliveries")[1]["items"]
    assert {d["status"] for d in deliveries} == {"delivered"} and len(deliveries) == 3

    # the feed: admin's five creations are one aggregated line; closes name the agents
    created = api("get", f"/activity?project_id={project['id']}&type=bead.created")["items"]
    admin_lines = [a for a in created if a["actor"] == "admin"]
    assert len(admin_lines) == 1 and admin_lines[0]["count"] == 5, created
    assert admin_lines[0]["summary"].startswith("admin created 5 beads"), admin_lines[0]["summary"]
    assert all(a["actor"] != "system" for a in closes), closes
    by_actor = api("get", f"/activity?actor=admin&project_id={project['id']}")["items"]
    assert {a["type"] for a in by_actor} == {"bead.created"}

    # mark read: one, then all; the unread count follows
    before = _inbox(as_alice)["unread"]
    assert before == 3
    status, one = as_alice("post", f"/notifications/{waiting['id']}/read")
    assert status == 200 and one["read"] and _inbox(as_alice)["unread"] == before - 1
    assert [n["id"] for n in _inbox(as_alice, unread="false")["items"]] == [waiting["id"]]
    status, done = as_alice("post", "/notifications/read-all")
    assert status == 200 and done == {"marked": before - 1, "unread": 0}
    assert as_alice("post", "/notifications/read-all")[1] == {"marked": 0, "unread": 0}


def test_a_redelivered_event_changes_nothing(make_engine):
    engine = make_engine(SCRIPT)
    api = Client(engine.app)
    alice, _ = _person(api, engine.app)
    with engine.app.app_context():
        project = api("post", "/projects", json={"name": "redelivery"})
        bead = api("post", "/beads", json={"project_id": project["id"], "title": "owned", "owner_id": alice["id"],
                                           "priority": 0})
        [event] = api("get", f"/events?bead_id={bead['id']}&type=bead.created")["items"]
        first = call_task(engine.app, "loom.team_event", event)  # as a worker would (none runs here)
        counts = (db.session.query(Activity).count(), db.session.query(Notification).count())
        assert call_task(engine.app, "loom.team_event", event) == call_task(engine.app, "loom.team_event", event) == []
        assert (db.session.query(Activity).count(), db.session.query(Notification).count()) == counts
        [line] = db.session.query(Activity).filter_by(project_id=project["id"]).all()
        assert line.count == 1
        assert len(first) >= 2  # alice: assigned and P0; every person: P0
        db.session.remove()


def test_webhook_retries_back_off_until_delivered_and_give_up_on_a_refusal(make_engine):
    engine = make_engine(SCRIPT, WEBHOOK_BACKOFF=0.3, WEBHOOK_TIMEOUT=1.0, WEBHOOK_MAX_ATTEMPTS=4,
                         WEBHOOK_ALLOW_PRIVATE=True)
    api = Client(engine.app)
    flaky_user, as_flaky = _person(api, engine.app)
    strict_user, as_strict = _person(api, engine.app)
    slow_user, as_slow = _person(api, engine.app)
    with WebhookReceiver(SECRET, statuses=[500, 503]) as flaky, WebhookReceiver(SECRET, statuses=[401]) as strict, \
            WebhookReceiver(SECRET, delay_s=3.0) as slow:
        for person, receiver in ((as_flaky, flaky), (as_strict, strict), (as_slow, slow)):
            assert person("put", "/notifications/preferences", json={
                "webhook_url": receiver.url, "webhook_secret": SECRET, "webhook_enabled": True})[0] == 200
        with engine.app.app_context(), thread_worker(engine.app.extensions["celery"], concurrency=4):
            project = api("post", "/projects", json={"name": "webhook-retries"})
            for user in (flaky_user, strict_user, slow_user):
                api("post", "/beads", json={"project_id": project["id"], "title": f"for {user['username']}",
                                            "owner_id": user["id"], "priority": 3})

            def settled():
                """every delivery to be delivered or given up, with Beat's retry tick standing in for Beat"""
                call_task(engine.app, "loom.webhooks_tick", True)
                db.session.remove()
                rows = db.session.query(WebhookDelivery).all()
                return rows if len(rows) == 3 and all(r.status != "pending" for r in rows) else None
            rows = wait_for(settled, timeout=60, interval=0.3)
    by_url = {r.url: r for r in rows}
    assert (by_url[flaky.url].status, by_url[flaky.url].attempts) == ("delivered", 3)
    assert [r.json["attempt"] for r in flaky.received] == [1, 2, 3]
    assert all(r.valid_signature for r in flaky.received)
    assert (by_url[strict.url].status, by_url[strict.url].attempts, by_url[strict.url].last_status) == \
        ("failed", 1, 401)  # the receiver refused it: no retry
    assert (by_url[slow.url].status, by_url[slow.url].attempts) == ("failed", 4)  # timed out each time
    assert "Timeout" in by_url[slow.url].last_error
    with engine.app.app_context():
        [family] = [f for f in metrics.database_metrics() if f.name == "loom_webhook_deliveries"]
        assert {s.labels["status"]: s.value for s in family.samples} == {"pending": 0, "delivered": 1, "failed": 2}
        db.session.remove()


def test_a_provider_going_down_alerts_the_admins(make_engine):
    engine = make_engine(SCRIPT)
    api = Client(engine.app)
    _, as_user = _person(api, engine.app)
    with socket_nobody_listens() as dead_url:
        provider = api("post", "/providers", json={"name": unique("dead"), "endpoint": dead_url})
        with engine.app.app_context(), thread_worker(engine.app.extensions["celery"], concurrency=4):
            api("post", f"/providers/{provider['id']}/check")

            def alerted():
                """the admin to be told the provider is down"""
                return [n for n in api("get", "/notifications")["items"] if n["type"] == "provider.down"] or None
            [alert] = wait_for(alerted, timeout=30)
    assert provider["name"] in alert["title"] and alert["link"] == "/providers"
    assert all(n["type"] != "provider.down" for n in _inbox(as_user)["items"])  # system alerts: admins only
    feed = api("get", "/activity?type=provider.health")["items"]
    assert any(provider["name"] in a["summary"] and "(down)" in a["summary"] for a in feed), feed


def socket_nobody_listens():
    """A URL on a port that refuses connections."""
    import contextlib
    import socket

    @contextlib.contextmanager
    def url():
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            yield f"http://127.0.0.1:{sock.getsockname()[1]}/v1"  # bound, never listening: refused
    return url()


@pytest.mark.parametrize("body, field", [
    ({"quiet_start": "25:00", "quiet_end": "07:00"}, "quiet_start"),
    ({"quiet_start": "22:00"}, "quiet_end"),
    ({"webhook_url": "ftp://example.com/x"}, "webhook_url"),
    ({"webhook_enabled": True}, "webhook_url"),
    ({"webhook_secret": "short"}, "webhook_secret"),
    ({"types": ["bead.nothing"]}, "types.0"),
    ({"min_priority": 7}, "min_priority"),
    ({"colour": "red"}, "colour"),
])
def test_bad_preferences_are_a_422_naming_the_field_and_change_nothing(app, api, body, field):
    before = api.get("/api/v1/notifications/preferences").get_json()
    response = api.put("/api/v1/notifications/preferences", json=body)
    assert response.status_code == 422, response.get_json()
    assert response.get_json()["error"]["field"] == field, response.get_json()
    assert api.get("/api/v1/notifications/preferences").get_json() == before


def test_a_webhook_url_without_a_secret_gets_one_generated_and_shown_once(app, client):
    name, password = unique("u"), "password-" + unique()
    admin = {"Authorization": f"Bearer {login_token(client)}"}
    assert client.post("/api/v1/users", json={"username": name, "password": password, "role": "viewer"},
                       headers=admin).status_code == 201
    me = {"Authorization": f"Bearer {login_token(client, name, password)}"}
    answer = client.put("/api/v1/notifications/preferences", headers=me,
                        json={"webhook_url": "https://hooks.example.com/loom", "webhook_enabled": True,
                              "types": ["bead.p0_created"], "min_priority": 1, "quiet_start": "22:00",
                              "quiet_end": "07:00"}).get_json()
    assert len(answer["webhook_secret"]) >= 32 and answer["webhook_secret_set"]
    again = client.get("/api/v1/notifications/preferences", headers=me).get_json()
    assert "webhook_secret" not in again
    assert (again["types"], again["min_priority"], again["quiet_start"], again["quiet_end"]) == \
        (["bead.p0_created"], 1, "22:00", "07:00")
    reset = client.put("/api/v1/notifications/preferences", headers=me, json={"types": None}).get_json()
    assert reset["types"] is None and reset["quiet_start"] == "22:00"  # only the fields sent change


def test_activity_filters_are_checked(api):
    for query, field in (("type=bead.nothing", "type"), ("since=yesterday-ish", "since"),
                         ("project_id=0", "project_id"),
                         ("limit=0", "limit"), ("colour=red", "colour")):
        response = api.get(f"/api/v1/activity?{query}")
        assert response.status_code == 422, (query, response.get_json())
        assert response.get_json()["error"]["field"] == field, (query, response.get_json())
    assert api.get("/api/v1/activity?since=15m&type=bead.closed").status_code == 200


def test_an_owner_must_be_an_active_user(api, project):
    response = api.post("/api/v1/beads", json={"project_id": project["id"], "title": "x", "owner_id": 999_999})
    assert response.status_code == 422 and response.get_json()["error"]["field"] == "owner_id"
    bead = api.post("/api/v1/beads", json={"project_id": project["id"], "title": "x"}).get_json()
    assert api.patch(f"/api/v1/beads/{bead['id']}", json={"owner_id": 999_999}).status_code == 422
    assert api.get(f"/api/v1/beads/{bead['id']}").get_json()["owner_id"] is None


def test_webhook_signature_is_hmac_sha256_of_the_raw_body():
    from app.services.webhooks import sign, verify
    body = b'{"event":"bead.assigned"}'
    assert sign(body, "k" * 16) == "sha256=" + __import__("hmac").new(b"k" * 16, body, "sha256").hexdigest()
    assert verify(body, "k" * 16, sign(body, "k" * 16)) and not verify(body + b" ", "k" * 16, sign(body, "k" * 16))
    assert not verify(body, "j" * 16, sign(body, "k" * 16))


@pytest.mark.parametrize("start, end, now, until", [
    ("22:00", "07:00", "23:30", "2026-01-02T07:00"),  # across midnight, before it
    ("22:00", "07:00", "03:00", "2026-01-01T07:00"),  # across midnight, after it
    ("22:00", "07:00", "07:00", None),  # the end minute is no longer quiet
    ("22:00", "07:00", "12:00", None),
    ("12:00", "13:00", "12:59", "2026-01-01T13:00"),
    ("12:00", "12:00", "12:00", None),  # an empty window is never quiet
])
def test_quiet_hours_hold_webhooks_until_they_end(start, end, now, until):
    from datetime import UTC, datetime

    from app.models import NotificationPreference
    from app.services.notification_prefs import quiet_until
    pref = NotificationPreference(quiet_start=start, quiet_end=end)
    moment = datetime.fromisoformat(f"2026-01-01T{now}").replace(tzinfo=UTC)
    expected = datetime.fromisoformat(until).replace(tzinfo=UTC) if until else None
    assert quiet_until(pref, moment) == expected


def test_preferences_choose_types_priorities_and_quiet_hours(make_engine):
    from datetime import UTC, datetime, timedelta
    engine = make_engine(SCRIPT, WEBHOOK_ALLOW_PRIVATE=True)
    api = Client(engine.app)
    picky, as_picky = _person(api, engine.app)
    sleeper, as_sleeper = _person(api, engine.app)
    now = datetime.now(UTC)
    assert as_picky("put", "/notifications/preferences", json={"types": ["bead.assigned"], "min_priority": 1})[0] == 200
    quiet = {"quiet_start": (now - timedelta(hours=1)).strftime("%H:%M"),
             "quiet_end": (now + timedelta(hours=1)).strftime("%H:%M")}
    hook = {"webhook_url": "http://127.0.0.1:9/never", "webhook_secret": SECRET, "webhook_enabled": True}
    assert as_sleeper("put", "/notifications/preferences", json={**quiet, **hook})[0] == 200
    with engine.app.app_context():
        project = api("post", "/projects", json={"name": "preferences"})
        beads = {
            "p0 for nobody": api("post", "/beads", json={"project_id": project["id"], "title": "p0", "priority": 0}),
            "p2 for picky": api("post", "/beads", json={"project_id": project["id"], "title": "p2",
                                                        "owner_id": picky["id"], "priority": 2}),
            "p1 for picky": api("post", "/beads", json={"project_id": project["id"], "title": "p1",
                                                        "owner_id": picky["id"], "priority": 1}),
            "p3 for sleeper": api("post", "/beads", json={"project_id": project["id"], "title": "p3",
                                                          "owner_id": sleeper["id"], "priority": 3}),
        }
        for bead in beads.values():
            for event in api("get", f"/events?bead_id={bead['id']}&type=bead.created")["items"]:
                call_task(engine.app, "loom.team_event", event)  # as the worker would
        held = {d.next_attempt_at for d in db.session.query(WebhookDelivery).all()}
        assert len(db.session.query(WebhookDelivery).all()) == 2  # her P0 and her assignment
        assert call_task(engine.app, "loom.webhooks_tick", True) == []  # not due: her quiet hours hold it back
        db.session.remove()
    # picky: only assignments, only P0-P1; the P0 creation is not a type she wants
    assert [n["bead_id"] for n in _inbox(as_picky)["items"]] == [beads["p1 for picky"]["id"]]
    # sleeper: everything in the inbox at once; the webhook waits for the end of her quiet hours
    assert {n["bead_id"] for n in _inbox(as_sleeper)["items"]} == {beads["p0 for nobody"]["id"],
                                                                   beads["p3 for sleeper"]["id"]}
    [held_until] = held
    assert held_until.strftime("%H:%M") == quiet["quiet_end"] and held_until > now
