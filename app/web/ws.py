"""`/ws/events`: the live event stream over a websocket (flask-sock), authenticated like the UI or the API.

The handshake is refused (401/403 JSON, before any upgrade) without the `events:read` permission, and a
cookie-authenticated handshake must come from our own origin (no cross-site websocket hijacking).
Clients send `{"subscribe": {"project_id"?, "bead_id"?, "types"?: [...]}}` to narrow the stream and may
connect with `?since=<last event id>` to get what they missed first.
"""
from __future__ import annotations

import json
import logging
import queue
import random
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

from flask import Blueprint, current_app, g, jsonify, request
from simple_websocket import ConnectionClosed

from app.bus import valid_event_id
from app.bus_live import KEEPALIVE, Filter
from app.extensions import db, sock
from app.services.errors import ServiceError
from app.web.pair_ws import start_pair
from app.web.security import current_principal, granted_permissions, stream_check

bp = Blueprint("ws", __name__)
log = logging.getLogger("loom.ws")
PERMISSION = "events:read"


@dataclass(frozen=True)
class StreamSpec:
    endpoint: str
    rule: str
    method: str
    permission: str


WS_ROUTES = [StreamSpec("ws.events", "/ws/events", "GET", PERMISSION)]


def _same_origin() -> bool:
    origin = request.headers.get("Origin")
    if origin is None:  # not a browser: browsers always send Origin on websocket handshakes
        return True
    allowed = {request.host_url.rstrip("/")} | set(current_app.config["ALLOWED_ORIGINS"])
    parts = urlsplit(origin)
    return f"{parts.scheme}://{parts.netloc}" in {a.rstrip("/") for a in allowed}


def _refuse(status: int, code: str, message: str):
    return jsonify({"error": {"code": code, "message": message}}), status


@bp.before_request
def authenticate_handshake():
    """Runs before the upgrade: the caller needs events:read; cookie callers must be same-origin."""
    try:
        user = current_principal()
    except ServiceError as exc:
        return jsonify(exc.to_dict()), exc.status
    if user is None:
        return _refuse(401, "unauthorized", "authentication required: log in or send Authorization: Bearer <key>")
    if PERMISSION not in granted_permissions(user):
        return _refuse(403, "forbidden", f"lacks the permission {PERMISSION}")
    if not g.get("via_header") and not _same_origin():
        return _refuse(403, "bad_origin", "cross-origin websocket refused")
    g.stream_user_id = user.id
    g.stream_user, g.stream_permissions = user.username, granted_permissions(user)  # for pair messages
    g.stream_check = stream_check(PERMISSION)
    db.session.remove()  # hold no database connection for the life of the socket
    return None


def _apply_message(text: str | bytes | None, sub, outbox: queue.SimpleQueue) -> None:
    try:
        message = json.loads(text) if text else None
    except ValueError:
        return
    if isinstance(message, dict) and "subscribe" in message:
        sub.filter = Filter.parse(message["subscribe"])
    if isinstance(message, dict) and "pair" in message:  # a pair turn: its events come back over the bus
        start_pair(message["pair"], g.stream_user, g.stream_permissions, lambda m: outbox.put(json.dumps(m)))


@sock.route("/ws/events", bp=bp)
def events(ws) -> None:
    hub = current_app.extensions["loom.hub"]()
    since = request.args.get("since") or None
    if since is not None and not valid_event_id(since):
        since = None
    outbox: queue.SimpleQueue = queue.SimpleQueue()  # messages for this client alone (pair refusals)
    recheck_s = float(current_app.config["STREAM_RECHECK_SECONDS"])
    next_check = time.monotonic() + recheck_s * random.uniform(0.5, 1.0)  # sockets opened together spread out
    with hub.subscription(g.stream_user_id, Filter()) as sub:
        ws.send(json.dumps({"id": None, "type": "stream.hello", "data": {"since": since}}))
        try:
            for item in hub.stream(sub, since, poll_s=min(1.0, recheck_s)):
                if time.monotonic() >= next_check:  # the login may have ended since the handshake
                    if (ended := g.stream_check()) is not None:
                        log.info("websocket of %s closed: %s", g.stream_user, ended)
                        ws.send(json.dumps({"id": None, "type": "stream.closed", "data": {"reason": ended}}))
                        ws.close(reason=1008, message="credential no longer valid")
                        return
                    next_check = time.monotonic() + recheck_s
                if item is KEEPALIVE:
                    ws.send('{"id":null,"type":"stream.keepalive","data":{}}')
                elif item is not None:
                    ws.send(item)
                while True:  # subscription changes from the client, without waiting
                    incoming = ws.receive(timeout=0)
                    if incoming is None:
                        break
                    _apply_message(incoming, sub, outbox)
                while not outbox.empty():
                    ws.send(outbox.get())
                if not ws.connected:
                    return
        except ConnectionClosed:
            return

