"""Webhooks go to public addresses only, unless the installation allows its own network: refused when saved (422
naming webhook_url) and again when sent; a real receiver on this machine gets nothing unless allowed."""
from __future__ import annotations

import socket
import ssl
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from app.extensions import db
from app.models import NotificationPreference, WebhookDelivery
from app.services import public_addresses, webhook_targets
from app.services.secrets import encrypt_secret
from tests.test_team_events import SCRIPT, Client, _person
from tests.celery_worker import call_task
from tests.webhook_receiver import WebhookReceiver

SECRET = "a-webhook-secret-of-enough-length"


@pytest.mark.parametrize("url", [
    "http://127.0.0.1:8080/hook", "http://localhost/hook", "http://10.1.2.3/hook", "http://192.168.1.20/x",
    "http://172.16.0.1/x", "http://169.254.169.254/latest/meta-data", "http://[::1]:9000/x", "http://[fd00::1]/x",
    "http://[::ffff:127.0.0.1]/x", "http://0.0.0.0/x", "http://100.64.0.1/x", "http://224.0.0.1/x",
    "http://2130706433/x", "http://0177.0.0.1/x", "http://0x7f.1/x", "http://127.1/x",  # IPv4 in other spellings
    "http://[::127.0.0.1]/x", "http://[2002:7f00:1::]/x", "http://[64:ff9b::a00:1]/x",  # IPv4 inside IPv6
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


def _resolving(monkeypatch, *answers: list[str]) -> list[str]:
    """getaddrinfo answering each call with the next list (DNS that changes its answer cannot be made here for
    real); returns the names it was asked for."""
    asked, queue = [], list(answers)

    def getaddrinfo(host, port, *args, **kwargs):
        asked.append(host)
        return [(socket.AF_INET6 if ":" in a else socket.AF_INET, socket.SOCK_STREAM, 6, "", (a, port))
                for a in queue.pop(0)]
    monkeypatch.setattr(public_addresses.socket, "getaddrinfo", getaddrinfo)
    return asked


def test_a_delivery_goes_to_the_address_it_checked(monkeypatch):
    """Resolved once, checked, then connected to: a name that answers a public address to the check and a private
    one to the connection (DNS rebinding) never gets the private one used."""
    asked = _resolving(monkeypatch, ["8.8.4.4"], ["127.0.0.1"])
    target = webhook_targets.pinned("https://user:pw@hooks.example.org/loom?x=1")
    assert asked == ["hooks.example.org"]  # one lookup
    assert target.url == "https://user:pw@8.8.4.4/loom?x=1"
    assert target.headers == {"Host": "hooks.example.org"}
    assert target.extensions == {"sni_hostname": "hooks.example.org"}
    assert webhook_targets.pinned("http://[2606:4700::1111]:8080/x").url == "http://[2606:4700::1111]:8080/x"
    _resolving(monkeypatch, ["8.8.4.4", "10.0.0.9"])  # any private answer among several refuses it
    with pytest.raises(webhook_targets.Refused, match="10.0.0.9"):
        webhook_targets.pinned("http://mixed.example.org/")


def test_tls_to_the_checked_address_still_verifies_the_name(tmp_path):
    """The pinned request connects to an address, yet the certificate is checked against the name (SNI)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "hooks.example.org")])
    now = datetime.now(UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - timedelta(minutes=1))
            .not_valid_after(now + timedelta(hours=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("hooks.example.org")]), critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    (tmp_path / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (tmp_path / "key.pem").write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                                         serialization.PrivateFormat.PKCS8,
                                                         serialization.NoEncryption()))
    with WebhookReceiver(SECRET) as receiver:
        server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        server_ctx.load_cert_chain(tmp_path / "cert.pem", tmp_path / "key.pem")
        receiver.server.socket = server_ctx.wrap_socket(receiver.server.socket, server_side=True)
        port = receiver.server.server_address[1]
        client_ctx = ssl.create_default_context(cafile=str(tmp_path / "cert.pem"))
        with httpx.Client(verify=client_ctx) as http:
            right = webhook_targets.Target(f"https://127.0.0.1:{port}/hook", {"Host": "hooks.example.org"},
                                           {"sni_hostname": "hooks.example.org"})
            assert http.post(right.url, content=b"{}", headers=right.headers,
                             extensions=right.extensions).status_code == 200
            assert receiver.received[0].headers["Host"] == "hooks.example.org"
            with pytest.raises(httpx.ConnectError, match="certificate"):  # another name: refused by TLS
                http.post(right.url, content=b"{}", headers={"Host": "evil.example.org"},
                          extensions={"sni_hostname": "evil.example.org"})
