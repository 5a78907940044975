"""A login that ends stops working everywhere, against the real web server (gunicorn) and Redis: after a logout
its session cookie (replayed from a copy) and its bearer token are refused, and open websocket and SSE streams
close within the re-check interval when their login is logged out, their user disabled or their key revoked."""
from __future__ import annotations

import json
import time

import httpx
import pytest
from simple_websocket import Client as WebSocketClient
from simple_websocket import ConnectionClosed

from tests.conftest import ADMIN_PASSWORD, start_live_server, unique

RECHECK_S = 1.0


@pytest.fixture(scope="module")
def server(app, primary_database_url, redis_url, tmp_path_factory):
    proc, live = start_live_server(primary_database_url, redis_url, tmp_path_factory.mktemp("logins-end"),
                                   extra_env={"LOOM_STREAM_RECHECK_SECONDS": str(RECHECK_S)})
    yield live
    proc.terminate()
    proc.wait(10)


def admin(server) -> dict:
    return {"Authorization": f"Bearer {server.token('admin', ADMIN_PASSWORD)}"}


def new_user(server, role: str = "user") -> tuple[int, str, str]:
    name, password = unique("u"), "password-" + unique()
    made = httpx.post(f"{server.url}/api/v1/users", json={"username": name, "password": password, "role": role},
                      headers=admin(server))
    assert made.status_code == 201, made.text
    return made.json()["id"], name, password


def login(server, name: str, password: str) -> httpx.Client:
    client = httpx.Client(base_url=f"{server.url}/api/v1", timeout=20)
    answer = client.post("/auth/login", json={"username": name, "password": password})
    assert answer.status_code == 200, answer.text
    client.token = answer.json()["token"]  # type: ignore[attr-defined]
    return client


def closed_within(ws: WebSocketClient, seconds: float) -> str:
    """Why the server closed the socket: its stream.closed message, or the close frame (policy violation)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            message = ws.receive(timeout=0.5)
        except ConnectionClosed as exc:
            assert exc.reason == 1008, exc
            return exc.message
        if message and (event := json.loads(message))["type"] == "stream.closed":
            return event["data"]["reason"]
    raise AssertionError(f"the websocket was not closed within {seconds} s")


def test_after_a_logout_the_cookie_and_the_token_of_that_login_are_refused(server):
    _, name, password = new_user(server)
    browser, other = login(server, name, password), login(server, name, password)
    try:
        check_logout(server, browser, other)
    finally:
        browser.close()
        other.close()


def check_logout(server, browser: httpx.Client, other: httpx.Client) -> None:
    copied = dict(browser.cookies)
    assert browser.get("/auth/me").status_code == 200
    assert browser.post("/auth/logout").status_code == 200
    with httpx.Client(base_url=f"{server.url}/api/v1", cookies=copied) as replay:
        assert replay.get("/auth/me").status_code == 401  # the copied cookie of the ended login
    token = browser.token  # type: ignore[attr-defined]
    refused = httpx.get(f"{server.url}/api/v1/auth/me", headers={"Authorization": f"Bearer {token}"})
    assert refused.status_code == 401 and refused.json()["error"]["code"] == "bad_token"
    kept = other.token  # type: ignore[attr-defined]
    assert httpx.get(f"{server.url}/api/v1/auth/me", headers={"Authorization": f"Bearer {kept}"}).status_code == 200
    assert other.get("/auth/me").status_code == 200  # another login of the same user goes on
    ended = httpx.post(f"{server.url}/api/v1/auth/logout", headers={"Authorization": f"Bearer {kept}"})
    assert ended.status_code == 200  # `loom logout` logs out its token
    assert httpx.get(f"{server.url}/api/v1/auth/me", headers={"Authorization": f"Bearer {kept}"}).status_code == 401


@pytest.mark.parametrize("how", ["logged out", "disabled"])
def test_an_open_websocket_closes_when_its_login_ends(server, how):
    user_id, name, password = new_user(server)
    session = login(server, name, password)
    session.close()
    token = session.token  # type: ignore[attr-defined]
    ws = WebSocketClient(server.url.replace("http://", "ws://") + "/ws/events",
                         headers={"Authorization": f"Bearer {token}"})
    try:
        assert json.loads(ws.receive(timeout=20))["type"] == "stream.hello"
        time.sleep(RECHECK_S * 2)  # a valid login is re-checked and kept
        if how == "logged out":
            httpx.post(f"{server.url}/api/v1/auth/logout", headers={"Authorization": f"Bearer {token}"})
        else:
            changed = httpx.patch(f"{server.url}/api/v1/users/{user_id}", json={"is_active": False},
                                  headers=admin(server))
            assert changed.status_code == 200
        assert closed_within(ws, RECHECK_S * 5 + 15)  # the re-check comes with the stream's next poll
    finally:
        if ws.connected:
            ws.close()


def test_an_sse_stream_ends_when_its_api_key_is_revoked(server):
    headers = admin(server)
    key = httpx.post(f"{server.url}/api/v1/auth/api-keys", json={"name": unique("k"), "permissions": ["events:read"]},
                     headers=headers).json()
    lines: list[str] = []
    started = time.monotonic()
    with httpx.stream("GET", f"{server.url}/api/v1/events/stream", headers={"X-API-Key": key["key"]},
                      timeout=30) as stream:
        for line in stream.iter_lines():
            lines.append(line)
            if line == ": connected":
                assert httpx.delete(f"{server.url}/api/v1/auth/api-keys/{key['id']}",
                                    headers=headers).status_code == 204
            if line.startswith("event: stream.closed"):
                break
            assert time.monotonic() - started < 30, lines
    assert "event: stream.closed" in lines, lines


def test_streams_of_one_login_share_its_recheck(app, admin_token):
    """200 dashboards of one user re-checking every interval would cost the database 200 reads an interval
    (the event fan-out benchmark saw 31 transactions/s): they share one answer per interval."""
    from sqlalchemy import event

    from app.extensions import db
    from app.web.security import stream_check
    with app.test_request_context("/ws/events", headers={"Authorization": f"Bearer {admin_token}"}):
        checks = [stream_check("events:read") for _ in range(50)]  # fifty sockets of the same login
    with app.app_context():
        engine = db.engine
    reads: list[str] = []
    listener = lambda conn, cursor, statement, *rest: reads.append(statement)  # noqa: E731
    event.listen(engine, "before_cursor_execute", listener)
    try:
        assert [check() for check in checks] == [None] * 50
    finally:
        event.remove(engine, "before_cursor_execute", listener)
    assert 1 <= len([s for s in reads if "FROM users" in s]) <= 2, reads
