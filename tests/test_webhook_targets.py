"""Webhooks go to public addresses only, unless the installation allows its own network: refused when saved (422
naming webhook_url) and again when sent; a real receiver on this machine gets nothing unless allowed."""
from __future__ import annotations

import pytest

from app.extensions import db
from app.models import NotificationPreference, WebhookDelivery
from app.services import webhook_targets
from app.services.secrets import encrypt_secret
from tests.test_team_events import SCRIPT, Client, _person
from tests.celery_worker import call_task
from tests.webhook_receiver import WebhookReceiver

SECRET = "a-webhook-secret-of-enough-length"


@pytest.mark.parametrize("url", [
    "http://127.0.0.1:8080/hook", "http://localhost/hook", "http://10.1.2.3/hook", "http://192.168.1.20/x",
    "http://172.16.0.1/x", "http://169.254.169.254/latest/meta-data", "http://[::1]:9000/x", "http://[fd00::1]/x",
    "http://[::ffff:127.0.0.1]/x", "http://0.0.0.0/x", "http://100.64.0.1/x", "http://224.0.0.1/x",
])
def test_local_and_private_targets_are_refused(url):
    assert "private or local address" in webhook_targets.refusal(url)


@pytest.mark.parametrize("url", ["https://8.8.8.8/hook", "http://[2606:4700:4700::1111]/x",
                                 "https://no-such-host.invalid/hook"])  # a name that does not resolve: sent, fails
def test_public_targets_and_unknown_names_are_not(url):
    assert webhook_targets.refusal(url) is None


def test_saving_a_private_url_is_a_422_unless_the_installation_allows_it(make_engine):
    strict = make_engine(SCRIPT)
    _, person = _person(Client(strict.app), strict.app)
    status, body = person("put", "/notifications/preferences", json={
        "webhook_url": "http://169.254.169.254/latest", "webhook_secret": SECRET, "webhook_enabled": True})
    assert status == 422 and body["error"]["field"] == "webhook_url", body
    assert "LOOM_WEBHOOK_ALLOW_PRIVATE" in body["error"]["message"]
    assert person("get", "/notifications/preferences")[1]["webhook_url"] is None  # nothing half-saved
    relaxed = make_engine(SCRIPT, WEBHOOK_ALLOW_PRIVATE=True)
    _, person = _person(Client(relaxed.app), relaxed.app)
    assert person("put", "/notifications/preferences", json={
        "webhook_url": "http://10.0.0.7:8000/hook", "webhook_secret": SECRET, "webhook_enabled": True})[0] == 200


def test_a_stored_private_url_is_not_sent_to(make_engine):
    """A URL saved while allowed (or a name that resolves elsewhere now) is checked again at each attempt."""
    engine = make_engine(SCRIPT)
    api = Client(engine.app)
    user, _ = _person(api, engine.app)
    with WebhookReceiver(SECRET) as receiver, engine.app.app_context():
        db.session.add(NotificationPreference(user_id=user["id"], min_priority=3, webhook_enabled=True,
                                              webhook_url=receiver.url, webhook_secret=encrypt_secret(SECRET)))
        db.session.commit()
        project = api("post", "/projects", json={"name": "private-hook"})
        bead = api("post", "/beads", json={"project_id": project["id"], "title": "urgent", "priority": 0})
        for event in api("get", f"/events?bead_id={bead['id']}&type=bead.created")["items"]:
            call_task(engine.app, "loom.team_event", event)  # as the worker would: notify, then deliver
        (delivery,) = db.session.query(WebhookDelivery).all()
        call_task(engine.app, "loom.deliver_webhook", delivery.id)
        db.session.expire_all()
        delivery = db.session.get(WebhookDelivery, delivery.id)
        assert delivery.status == "failed" and delivery.last_error.startswith("not sent: 127.0.0.1 is a private")
        assert receiver.received == []
        db.session.remove()
