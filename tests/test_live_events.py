"""The live event stream: fan-out, resume from the last id, reset when the buffer lost the gap, slow clients,
private notifications, filters — through the hub directly and through the real server (SSE and websocket)."""
from __future__ import annotations

import json
import threading
import time

import httpx
import pytest
import redis
from simple_websocket import Client as WebSocketClient

from app.bus import STREAM_KEY, EventBus
from app.bus_live import KEEPALIVE, EventHub, Filter
from app.services.logs import record_log
from tests.conftest import unique


@pytest.fixture()
def bus(redis_url):
    client = redis.Redis.from_url(redis_url)
    client.delete(STREAM_KEY)
    yield EventBus(client, maxlen=50)
    client.delete(STREAM_KEY)
    client.close()


@pytest.fixture()
def hub(bus, redis_url):
    instance = EventHub(lambda: redis.Redis.from_url(redis_url), bus, queue_size=20)
    yield instance
    instance.stop()


def take(stream, n: int, timeout: float = 5.0) -> list[dict]:
    """The next n events from a hub stream (keep-alives and idle ticks skipped)."""
    out, deadline = [], time.monotonic() + timeout
    while len(out) < n and time.monotonic() < deadline:
        item = next(stream)
        if item is None or item is KEEPALIVE:
            continue
        out.append(json.loads(item))
    return out


def wait_listening(hub: EventHub) -> None:
    assert hub.connected.wait(5), "the hub did not subscribe to Redis"
    time.sleep(0.05)


def test_live_events_reach_a_subscriber_in_order(hub, bus):
    with hub.subscription(7, Filter()) as sub:
        stream = hub.stream(sub)
        wait_listening(hub)
        ids = [bus.publish("bead.created", project_id=1, bead_id=i)["id"] for i in range(5)]
        assert [e["id"] for e in take(stream, 5)] == ids


def test_filters_and_changing_them_while_streaming(hub, bus):
    with hub.subscription(7, Filter(project_id=2)) as sub:
        stream = hub.stream(sub, poll_s=0.05)
        wait_listening(hub)
        bus.publish("bead.created", project_id=1, bead_id=10)
        wanted = bus.publish("bead.created", project_id=2, bead_id=11)
        assert [e["id"] for e in take(stream, 1)] == [wanted["id"]]
        sub.filter = Filter.parse({"types": ["step.*"]})
        bus.publish("bead.created", project_id=2, bead_id=12)
        step = bus.publish("step.finished", project_id=3, bead_id=13)
        assert [e["id"] for e in take(stream, 1)] == [step["id"]]


def test_resume_replays_what_came_after_the_last_id(hub, bus):
    first = bus.publish("bead.created", bead_id=1)
    missed = [bus.publish("bead.closed", bead_id=i)["id"] for i in range(2, 5)]
    with hub.subscription(7, Filter()) as sub:
        stream = hub.stream(sub, since=first["id"])
        replayed = take(stream, 3)
        wait_listening(hub)
        live = bus.publish("bead.created", bead_id=9)
        assert [e["id"] for e in replayed] == missed
        assert take(stream, 1)[0]["id"] == live["id"]


def test_a_gap_the_buffer_no_longer_holds_means_reset(hub, bus):
    old = bus.publish("bead.created", bead_id=1)
    for i in range(60):  # maxlen 50: the event after `old` is gone
        bus.publish("bead.updated", bead_id=i)
    with hub.subscription(7, Filter()) as sub:
        first = take(hub.stream(sub, since=old["id"]), 1)[0]
    assert first["type"] == "stream.reset"


def test_a_slow_subscriber_never_blocks_and_catches_up(hub, bus):
    """Queue of 20: 40 events overflow it; the subscriber then gets all 40, in order, from the buffer."""
    with hub.subscription(7, Filter()) as sub:
        stream = hub.stream(sub)
        wait_listening(hub)
        started = time.monotonic()
        ids = [bus.publish("llm.delta", bead_id=1, data={"n": n})["id"] for n in range(40)]
        assert time.monotonic() - started < 5  # publishing never waited for the reader
        time.sleep(0.3)
        assert sub.overflowed
        assert [e["id"] for e in take(stream, 40)] == ids


def test_notifications_reach_only_their_user_whatever_the_filter(hub, bus):
    with hub.subscription(1, Filter(bead_id=99)) as mine, hub.subscription(2, Filter()) as other:
        a, b = hub.stream(mine, poll_s=0.05), hub.stream(other, poll_s=0.05)
        wait_listening(hub)
        note = bus.publish("notification.created", data={"user_id": 1, "title": "for one", "unread": 1})
        public = bus.publish("bead.created", bead_id=5)
        assert [e["id"] for e in take(a, 1)] == [note["id"]]
        assert [e["id"] for e in take(b, 1)] == [public["id"]]
        assert take(a, 1, timeout=0.5) == []


def test_redis_restart_is_caught_up(hub, bus, redis_url):
    """The hub loses its connection (killed server-side); events published meanwhile still arrive."""
    with hub.subscription(7, Filter()) as sub:
        stream = hub.stream(sub, poll_s=0.05)
        wait_listening(hub)
        before = bus.publish("bead.created", bead_id=1)
        assert take(stream, 1)[0]["id"] == before["id"]
        admin = redis.Redis.from_url(redis_url)
        for conn in admin.client_list(_type="pubsub"):
            admin.client_kill_filter(_id=conn["id"])
        during = bus.publish("bead.created", bead_id=2)
        after_reconnect = None
        deadline = time.monotonic() + 10
        while not after_reconnect and time.monotonic() < deadline:
            if hub.connected.is_set():
                after_reconnect = bus.publish("bead.created", bead_id=3)
            time.sleep(0.1)
        got = [e["id"] for e in take(stream, 2, timeout=10)]
        assert got == [during["id"], after_reconnect["id"]]
        admin.close()


# --- through the real server ------------------------------------------------------------------------------

def _api_key(server, **body) -> str:
    response = httpx.post(f"{server.url}/api/v1/auth/api-keys", json={"name": unique("k"), **body},
                          headers={"Authorization": f"Bearer {server.token()}"})
    assert response.status_code == 201, response.text
    return response.json()


def _sse(server, headers: dict, collected: list, stop: threading.Event, **params) -> None:
    with httpx.stream("GET", f"{server.url}/api/v1/events/stream", headers=headers,
                      params={"max_seconds": 20, **params}, timeout=30) as response:
        collected.append(response.status_code)
        for line in response.iter_lines():
            if line.startswith("data: "):
                collected.append(json.loads(line[6:]))
            if stop.is_set():
                return


def test_sse_with_an_api_key_streams_and_resumes(live_server):
    key = _api_key(live_server, permissions=["events:read"])["key"]
    headers = {"X-API-Key": key}
    project = httpx.post(f"{live_server.url}/api/v1/projects", json={"name": unique("sse")},
                         headers={"Authorization": f"Bearer {live_server.token()}"}).json()
    collected, stop = [], threading.Event()
    reader = threading.Thread(target=_sse, args=(live_server, headers, collected, stop),
                              kwargs={"project_id": project["id"]}, daemon=True)
    reader.start()
    time.sleep(1.0)
    admin = {"Authorization": f"Bearer {live_server.token()}"}
    bead = httpx.post(f"{live_server.url}/api/v1/beads", json={"project_id": project["id"], "title": "sse"},
                      headers=admin).json()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and not any(isinstance(e, dict) and e.get("bead_id") == bead["id"]
                                                  for e in collected):
        time.sleep(0.1)
    stop.set()
    assert collected[0] == 200
    created = next(e for e in collected[1:] if e["type"] == "bead.created")
    assert created["bead_id"] == bead["id"] and created["project_id"] == project["id"]
    # Resume with Last-Event-ID: only what came after.
    httpx.post(f"{live_server.url}/api/v1/beads/{bead['id']}/comments", json={"text": "later"}, headers=admin)
    with httpx.stream("GET", f"{live_server.url}/api/v1/events/stream", timeout=10,
                      headers={**headers, "Last-Event-ID": created["id"]},
                      params={"project_id": project["id"], "max_seconds": 2}) as response:
        replay = [json.loads(line[6:]) for line in response.iter_lines() if line.startswith("data: ")]
    assert [e["type"] for e in replay] == ["bead.commented"]


def test_revoked_and_narrow_keys_on_the_live_streams(live_server):
    admin = {"Authorization": f"Bearer {live_server.token()}"}
    narrow = _api_key(live_server, permissions=["beads:read"])
    refused = httpx.get(f"{live_server.url}/api/v1/events/stream", headers={"X-API-Key": narrow["key"]})
    assert refused.status_code == 403
    handshake = {"Connection": "Upgrade", "Upgrade": "websocket", "Sec-WebSocket-Version": "13",
                 "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==", "X-API-Key": narrow["key"]}
    assert httpx.get(f"{live_server.url}/ws/events", headers=handshake).status_code == 403
    good = _api_key(live_server)
    ws = WebSocketClient(live_server.url.replace("http://", "ws://") + "/ws/events",
                         headers={"X-API-Key": good["key"]})
    try:
        assert json.loads(ws.receive(timeout=20))["type"] == "stream.hello"
    finally:
        ws.close()
    assert httpx.delete(f"{live_server.url}/api/v1/auth/api-keys/{good['id']}", headers=admin).status_code == 204
    assert httpx.get(f"{live_server.url}/ws/events", headers={**handshake, "X-API-Key": good["key"]}
                     ).status_code == 401
    assert httpx.get(f"{live_server.url}/api/v1/events/stream", headers={"X-API-Key": good["key"]}
                     ).status_code == 401


def test_websocket_subscribe_message_narrows_the_stream(live_server):
    admin = {"Authorization": f"Bearer {live_server.token()}"}
    project = httpx.post(f"{live_server.url}/api/v1/projects", json={"name": unique("ws")}, headers=admin).json()
    ws = WebSocketClient(live_server.url.replace("http://", "ws://") + "/ws/events", headers=admin)
    try:
        assert json.loads(ws.receive(timeout=20))["type"] == "stream.hello"
        ws.send(json.dumps({"subscribe": {"project_id": project["id"], "types": ["bead.commented"]}}))
        time.sleep(1.5)  # applied within the handler's poll interval
        bead = httpx.post(f"{live_server.url}/api/v1/beads", json={"project_id": project["id"], "title": "w"},
                          headers=admin).json()
        httpx.post(f"{live_server.url}/api/v1/beads/{bead['id']}/comments", json={"text": "hi"}, headers=admin)
        got = []
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and not got:
            message = ws.receive(timeout=0.5)
            if message:
                event = json.loads(message)
                if event["type"] != "stream.keepalive":
                    got.append(event)
        assert [(e["type"], e["bead_id"]) for e in got] == [("bead.commented", bead["id"])]
    finally:
        ws.close()


def test_event_ids_beyond_redis_range_are_refused_not_500(api, client, admin_token):
    """Found by schemathesis: a 20-digit id passed the old pattern and Redis refused it mid-stream."""
    huge = "80981013946078220603-2163"
    listed = api.get(f"/api/v1/events?since={huge}")
    assert listed.status_code == 422 and listed.get_json()["error"]["field"] == "since"
    streamed = api.get(f"/api/v1/events/stream?since={huge}&max_seconds=0.2")
    assert streamed.status_code == 422
    header = client.get("/api/v1/events/stream?max_seconds=0.2", headers={"Authorization": f"Bearer {admin_token}",
                                                                           "Last-Event-ID": huge})
    assert header.status_code == 200 and header.get_data(as_text=True).startswith(": connected")


def test_the_log_stream_and_list_filter_by_level_and_source(ctx, api):
    start = ctx.extensions["loom.bus"]().last_id() or "0-0"
    marker = unique("log")
    for level, source in (("WARNING", "ralph"), ("INFO", "ralph"), ("WARNING", "web")):
        record_log(level, source, f"{marker} {level} {source}")
    body = api.get(f"/api/v1/logs/stream?since={start}&level=warning&source=ralph&max_seconds=1").get_data(
        as_text=True)
    streamed = [json.loads(line[6:])["data"]["message"] for line in body.splitlines() if line.startswith("data: ")]
    assert [m for m in streamed if m.startswith(marker)] == [f"{marker} WARNING ralph"]
    listed = api.get("/api/v1/logs?level=warning&source=ralph&limit=500").get_json()["items"]  # any case
    assert [e["message"] for e in listed if e["message"].startswith(marker)] == [f"{marker} WARNING ralph"]
    assert api.get("/api/v1/logs/stream?level=loud&max_seconds=0.2").get_json()["error"]["field"] == "level"
