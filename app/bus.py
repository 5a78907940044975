"""The event bus: every event goes to a capped Redis stream (the ring buffer) and to Redis pub/sub.

A leaf module: it imports nothing from the app. The stream entry id is the event id, so ids are
monotonic and a reconnecting client can ask for everything after the last id it saw.
Event shape: {"id", "type", "ts", "project_id", "bead_id"?, "agent_id"?, "data"}.
"""
from __future__ import annotations

import json
import re
from datetime import datetime, UTC
from typing import Any
from collections.abc import Callable, Iterable

import redis

STREAM_KEY = "loom:events"
# What an event id may look like: Redis stream ids are two unsigned 64-bit numbers; 15 and 19 digits always fit.
EVENT_ID_PATTERN = r"^\d{1,15}-\d{1,19}$"
_EVENT_ID = re.compile(EVENT_ID_PATTERN)
CHANNEL = "loom:events:live"
# Append to the ring buffer and fan out in one round trip; the stream id is spliced into the JSON.
_PUBLISH = """
local id = redis.call('XADD', KEYS[1], 'MAXLEN', ARGV[1], '*', 'e', ARGV[2])
redis.call('PUBLISH', KEYS[2], '{"id":"' .. id .. '",' .. string.sub(ARGV[2], 2))
return id
"""


class EventBus:
    def __init__(self, client: redis.Redis, maxlen: int = 1000) -> None:
        self.client = client
        self.maxlen = maxlen
        self._publish = client.register_script(_PUBLISH)

    def publish(self, type: str, *, project_id: int | None = None, bead_id: int | None = None,
                agent_id: int | None = None, data: dict[str, Any] | None = None) -> dict:
        """Append to the ring buffer, then fan out live. Returns the event with its id."""
        event: dict[str, Any] = {"type": type, "ts": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
                                 "project_id": project_id}
        if bead_id is not None:
            event["bead_id"] = bead_id
        if agent_id is not None:
            event["agent_id"] = agent_id
        event["data"] = data or {}
        body = json.dumps(event, default=str)
        event_id = self._publish(keys=[STREAM_KEY, CHANNEL], args=[self.maxlen, body])
        return {"id": event_id.decode() if isinstance(event_id, bytes) else event_id, **event}

    def history(self, *, after: str | None = None, limit: int = 100, project_id: int | None = None,
                bead_id: int | None = None, types: Iterable[str] | None = None) -> list[dict]:
        """Events from the ring buffer, oldest first, after the given id (exclusive), filtered."""
        return self.history_page(after=after, limit=limit, project_id=project_id, bead_id=bead_id, types=types)[0]

    def history_page(self, *, after: str | None = None, limit: int = 100, project_id: int | None = None,
                     bead_id: int | None = None, types: Iterable[str] | None = None,
                     keep: Callable[[dict], bool] | None = None) -> tuple[list[dict], str | None, int]:
        """(events, cursor, total): as history() (`keep`: a further filter), the id to pass as `after` next time so
        that nothing is skipped (the last event returned when the page is full, else the last entry looked at;
        None: nothing looked at), and how many events after `after` match in all (the buffer is read to its end:
        it holds at most `maxlen`)."""
        wanted = set(types or ())
        start = f"({after}" if after else "-"
        cursor, total = after, 0
        out: list[dict] = []
        while True:  # in pages of 500 entries, never the whole buffer at once
            entries = self.client.xrange(STREAM_KEY, min=start, max="+", count=500)
            if not entries:
                break
            for raw_id, fields in entries:
                event = decode_entry(raw_id, fields)
                if len(out) < limit:
                    cursor = event["id"]
                if matches(event, project_id=project_id, bead_id=bead_id, types=wanted) and (keep is None
                                                                                             or keep(event)):
                    total += 1
                    if len(out) < limit:
                        out.append(event)
            start = f"({entries[-1][0].decode() if isinstance(entries[-1][0], bytes) else entries[-1][0]}"
        return out, cursor, total

    def oldest_id(self) -> str | None:
        entries = self.client.xrange(STREAM_KEY, count=1)
        if not entries:
            return None
        raw = entries[0][0]
        return raw.decode() if isinstance(raw, bytes) else raw

    def trimmed_after(self, after: str) -> bool:
        """Whether events newer than `after` may have been trimmed: the buffer is full and starts after it."""
        if self.client.xlen(STREAM_KEY) < self.maxlen:
            return False  # never full, so never trimmed (XADD MAXLEN trims exactly)
        oldest = self.oldest_id()
        return oldest is not None and id_key(after) < id_key(oldest)

    def last_id(self) -> str | None:
        entries = self.client.xrevrange(STREAM_KEY, count=1)
        if not entries:
            return None
        raw = entries[0][0]
        return raw.decode() if isinstance(raw, bytes) else raw


def valid_event_id(value: object) -> bool:
    return isinstance(value, str) and _EVENT_ID.match(value) is not None


def id_key(event_id: str) -> tuple[int, int]:
    """Stream ids ("<ms>-<seq>") in their real order."""
    ms, _, seq = event_id.partition("-")
    return int(ms), int(seq or 0)


def decode_entry(raw_id: bytes | str, fields: dict) -> dict:
    body = fields.get(b"e") or fields.get("e")
    event = json.loads(body)
    return {"id": raw_id.decode() if isinstance(raw_id, bytes) else raw_id, **event}


def matches(event: dict, *, project_id: int | None = None, bead_id: int | None = None,
            types: set[str] | None = None) -> bool:
    if project_id is not None and event.get("project_id") != project_id:
        return False
    if bead_id is not None and event.get("bead_id") != bead_id:
        return False
    if types and event.get("type") not in types and not any(
            t.endswith(".*") and event.get("type", "").startswith(t[:-1]) for t in types):
        return False
    return True
