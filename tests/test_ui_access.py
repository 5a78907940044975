"""Every route of the app declares who may use it; pages and the websocket enforce it for each role."""
from __future__ import annotations

import http.client
import json
import re
import socket
import time
from urllib.parse import urlsplit

import httpx
import pytest
from simple_websocket import Client as WebSocketClient

from app.web.api.routing import ROUTES
from app.web.ui.pages import PAGES
from app.web.ws import WS_ROUTES
from tests.conftest import ADMIN_PASSWORD, unique

# Written out independently of app/services/users.py: what each role may see.
VIEWER_CAN_NOT = {"users:admin"}
PUBLIC_PAGES = {"/login", "/logout"}


def _declared() -> set[tuple[str, str]]:
    specs = [*ROUTES, *PAGES, *WS_ROUTES]
    return {(spec.endpoint, spec.method) for spec in specs}


def test_every_route_in_the_url_map_declares_a_permission(app):
    declared = _declared()
    undeclared = []
    for rule in app.url_map.iter_rules():
        if rule.endpoint == "static":
            continue
        for method in rule.methods - {"HEAD", "OPTIONS"}:
            if (rule.endpoint, method) not in declared:
                undeclared.append(f"{method} {rule.rule} ({rule.endpoint})")
    assert not undeclared, f"routes without a declared permission: {undeclared}"


def test_a_route_added_without_declaring_is_caught(app):
    """The check above can fail: a plain Flask route is not in any registry."""
    from flask import Flask

    other = Flask("probe")
    other.add_url_rule("/sneaky", "sneaky", lambda: "x")
    endpoints = {(r.endpoint, m) for r in other.url_map.iter_rules() for m in r.methods - {"HEAD", "OPTIONS"}
                 if r.endpoint != "static"}
    assert endpoints - _declared() == {("sneaky", "GET")}


def _session(app, api, role: str):
    name, password = unique(role), "password-" + unique()
    assert api.post("/api/v1/users", json={"username": name, "password": password, "role": role}).status_code == 201
    browser = app.test_client()
    page = browser.get("/login").get_data(as_text=True)
    token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
    response = browser.post("/login", data={"username": name, "password": password, "csrf_token": token})
    assert response.status_code == 302, response.get_data(as_text=True)[:300]
    return browser


def _page_urls(app) -> list[tuple[str, str]]:
    """(url, permission) for every GET page, with ids of real rows so the page can render."""
    with app.app_context():
        from app.extensions import db
        from app.models import Bead, Persona

        bead_id = db.session.query(Bead.id).order_by(Bead.id).limit(1).scalar()
        persona = db.session.query(Persona.name).order_by(Persona.name).limit(1).scalar()
    out = []
    for spec in PAGES:
        if spec.method != "GET" or spec.rule in PUBLIC_PAGES:
            continue
        url = spec.rule.replace("<int:bead_id>", str(bead_id)).replace("<string(maxlength=64):name>", persona)
        assert "<" not in url, f"add a sample value for {spec.rule}"
        out.append((url, spec.permission))
    return out


@pytest.fixture()
def some_bead(api, project):
    response = api.post("/api/v1/beads", json={"project_id": project["id"], "title": "page probe"})
    assert response.status_code == 201
    return response.get_json()


@pytest.mark.parametrize("role", ["admin", "user", "viewer"])
def test_pages_by_role(app, api, some_bead, role):
    browser = _session(app, api, role)
    for url, permission in _page_urls(app):
        response = browser.get(url)
        allowed = role == "admin" or permission not in VIEWER_CAN_NOT
        what = f"{role} GET {url} -> {response.status_code}"
        if allowed:
            assert response.status_code == 200, what + response.get_data(as_text=True)[:500]
        else:
            assert response.status_code == 403, what


def test_anonymous_visits_redirect_to_login(app, some_bead):
    anonymous = app.test_client()
    for url, _ in _page_urls(app):
        response = anonymous.get(url)
        assert response.status_code == 302, url
        assert response.headers["Location"].startswith("/login?next=")


def test_viewer_pages_have_no_write_controls(app, api, some_bead):
    viewer = _session(app, api, "viewer")
    board = viewer.get("/beads").get_data(as_text=True)
    assert 'id="bead-form"' not in board
    detail = viewer.get(f"/beads/{some_bead['id']}").get_data(as_text=True)
    assert 'id="bead-actions"' not in detail and 'id="comment-form"' not in detail
    user = _session(app, api, "user")
    assert 'id="bead-form"' in user.get("/beads").get_data(as_text=True)
    assert 'id="bead-actions"' in user.get(f"/beads/{some_bead['id']}").get_data(as_text=True)


def test_login_form_needs_its_csrf_token(app):
    browser = app.test_client()
    browser.get("/login")
    response = browser.post("/login", data={"username": "admin", "password": ADMIN_PASSWORD})
    assert response.status_code == 401 and "expired" in response.get_data(as_text=True)
    assert browser.get("/").status_code == 302


def test_change_password_in_the_browser(app, api):
    name, password = unique("pw"), "password-" + unique()
    api.post("/api/v1/users", json={"username": name, "password": password, "role": "user"})
    browser = app.test_client()
    token = re.search(r'name="csrf_token" value="([^"]+)"', browser.get("/login").get_data(as_text=True)).group(1)
    browser.post("/login", data={"username": name, "password": password, "csrf_token": token})
    other = app.test_client()
    token2 = re.search(r'name="csrf_token" value="([^"]+)"', other.get("/login").get_data(as_text=True)).group(1)
    other.post("/login", data={"username": name, "password": password, "csrf_token": token2})
    assert other.get("/account").status_code == 200
    form = {"current_password": password, "new_password": "brand-new-pass", "confirm_password": "brand-new-pass",
            "csrf_token": token}
    page = browser.get("/account").get_data(as_text=True)
    form["csrf_token"] = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
    changed = browser.post("/account", data=form)
    assert changed.status_code == 200 and "Password changed" in changed.get_data(as_text=True)
    assert browser.get("/account").status_code == 200  # this session lives on
    assert other.get("/account").status_code == 302  # the other session ended
    mismatch = browser.post("/account", data={**form, "current_password": "brand-new-pass", "confirm_password": "x"})
    assert mismatch.status_code == 400 and "do not match" in mismatch.get_data(as_text=True)


# --- the websocket handshake, against the real server -----------------------------------------------------

HANDSHAKE = {"Connection": "Upgrade", "Upgrade": "websocket", "Sec-WebSocket-Version": "13",
             "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ=="}
AGENT = {"User-Agent": "loom-tests"}  # flask-login's strong session protection binds a session to its agent


def _handshake(server, **headers) -> httpx.Response:
    """A websocket upgrade request as a browser sends it; a refusal is a plain HTTP answer."""
    return httpx.get(server.url + "/ws/events", headers={**HANDSHAKE, **AGENT, **headers}, timeout=5)


def test_websocket_needs_a_credential_and_the_right(live_server):
    anonymous = _handshake(live_server)
    assert anonymous.status_code == 401 and anonymous.json()["error"]["code"] == "unauthorized"
    bad_key = _handshake(live_server, **{"X-API-Key": "loom_00000000_" + "x" * 43})
    assert bad_key.status_code == 401 and bad_key.json()["error"]["code"] == "bad_key"
    token = live_server.token("viewer", "viewer-password")
    assert _handshake(live_server, Authorization=f"Bearer {token}").status_code == 101
    viewer = WebSocketClient(live_server.url.replace("http://", "ws://") + "/ws/events",
                             headers={"Authorization": f"Bearer {token}"})
    try:
        assert json.loads(viewer.receive(timeout=20))["type"] == "stream.hello"
    finally:
        viewer.close()


def test_websocket_refuses_a_cross_site_cookie_handshake(live_server):
    with httpx.Client(base_url=live_server.url, headers=AGENT) as browser:
        response = browser.post("/api/v1/auth/login", json={"username": "admin", "password": ADMIN_PASSWORD})
        assert response.status_code == 200
        cookie = "; ".join(f"{k}={v}" for k, v in browser.cookies.items())
    forged = _handshake(live_server, Cookie=cookie, Origin="https://evil.example")
    assert forged.status_code == 403 and forged.json()["error"]["code"] == "bad_origin"
    assert _handshake(live_server, Cookie=cookie, Origin=live_server.url).status_code == 101


def test_missing_pages_keep_the_layout_and_escape_what_they_echo(app, api):
    browser = _session(app, api, "user")
    for url, says in (("/beads/99999", "bead 99999 not found"), ("/beads/abc", "There is no page at /beads/abc"),
                      ("/no/such/<script>x</script>", "There is no page at")):
        response = browser.get(url)
        page = response.get_data(as_text=True)
        assert response.status_code == 404 and response.mimetype == "text/html", url
        assert says in page and 'id="main-nav"' in page and "Back to the dashboard" in page, (url, page[:500])
        assert "<script>x</script>" not in page
    anonymous = app.test_client().get("/nowhere")
    assert anonymous.status_code == 404 and "Back to the dashboard" in anonymous.get_data(as_text=True)
    api_missing = api.get("/api/v1/nowhere")
    assert api_missing.status_code == 404 and api_missing.get_json()["error"]["code"] == "not_found"


def test_a_long_query_string_gets_the_apis_json_answer(live_server):
    """gunicorn's own 4 KiB request-line limit answered with an HTML 414; up to 8 KiB reaches the API now."""
    token = live_server.token()
    long_tag = "x" * 6000
    answer = httpx.get(f"{live_server.url}/api/v1/beads", params={"tag": long_tag},
                       headers={"Authorization": f"Bearer {token}"}, timeout=10)
    assert answer.status_code == 422 and answer.json()["error"]["field"] == "tag"


def test_a_chunked_body_over_the_limit_is_a_413_not_half_a_body(live_server, api, some_bead):
    """Without Content-Length, Werkzeug reads LOOM_MAX_CONTENT_LENGTH bytes and stops without a word: the first
    2 MiB of this body are valid JSON, and the bead used to be created from them."""
    token = live_server.token()
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    project_id = some_bead["project_id"]
    head = json.dumps({"project_id": project_id, "title": "chunked"}).encode()

    def chunks(padding: int, tail: bytes = b""):
        yield head
        for _ in range(padding):
            yield b" " * 65_536
        yield tail
    with httpx.Client(base_url=live_server.url, headers=headers, timeout=30) as http:
        big = http.post("/api/v1/beads", content=chunks(48, b"GARBAGE"))  # 3 MiB against the 2 MiB limit
        assert big.status_code == 413 and big.json()["error"]["code"], big.text[:200]
        small = http.post("/api/v1/beads", content=chunks(1))  # chunked and small: as any other body
        assert small.status_code == 201 and small.json()["title"] == "chunked"
        limit = 2 * 1024 * 1024
        exact = http.post("/api/v1/beads", content=[head, b" " * (limit - len(head))])  # exactly the limit: whole
        assert exact.status_code == 201 and exact.json()["title"] == "chunked", exact.text[:200]
        titles = [b["title"] for b in http.get("/api/v1/beads", params={"project_id": project_id,
                                                                         "limit": 500}).json()["items"]]
    assert titles.count("chunked") == 2  # the small body and the one of exactly the limit; nothing of the cut one


@pytest.mark.parametrize("framing", ["chunked", "content-length"])
def test_a_refused_body_leaves_the_connection_usable(live_server, some_bead, framing):
    """gunicorn answers the 413 with keep-alive, then closed the connection because the body was not read: the
    client's next request on it failed now and then (a race with the close). The rest of the body is read now."""
    address = urlsplit(live_server.url)
    headers = {"Authorization": f"Bearer {live_server.token()}", "Content-Type": "application/json"}
    head = json.dumps({"project_id": some_bead["project_id"], "title": f"after a refused {framing} body"}).encode()
    big = head + b" " * (3 * 1024 * 1024)  # 3 MiB against the 2 MiB limit
    conn = http.client.HTTPConnection(address.hostname, address.port, timeout=30)
    try:
        if framing == "chunked":
            conn.request("POST", "/api/v1/beads", body=(big[i:i + 65_536] for i in range(0, len(big), 65_536)),
                         headers=headers, encode_chunked=True)
        else:
            conn.request("POST", "/api/v1/beads", body=big, headers=headers)
        refused = conn.getresponse()
        assert refused.status == 413 and json.loads(refused.read())["error"]["code"] == "too_large"
        first_socket = conn.sock
        time.sleep(0.5)  # time enough for the server to close the connection, were it going to
        first_socket.setblocking(False)
        try:
            closed = first_socket.recv(1, socket.MSG_PEEK) == b""
        except BlockingIOError:
            closed = False
        first_socket.setblocking(True)
        assert not closed, "the server closed the connection after answering keep-alive"
        conn.request("POST", "/api/v1/beads", body=head, headers=headers)
        created = conn.getresponse()
        assert created.status == 201, created.read()[:200]
        assert json.loads(created.read())["title"] == f"after a refused {framing} body"
        assert conn.sock is first_socket  # the same connection served both
    finally:
        conn.close()
