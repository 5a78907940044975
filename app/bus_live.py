"""Live fan-out of bus events to the web process's connected clients (websocket and SSE).

One thread per process listens on the Redis channel and hands each event to every subscriber's bounded
queue without ever blocking: a subscriber whose queue is full is marked as having overflowed and catches
up from the ring buffer (or is told to reload) — a slow browser never slows the bus or a worker. A client
that reconnects with the last id it saw gets what it missed from the ring buffer, then the live stream.
Viewers cost no database queries: everything here reads Redis only.

A leaf module like `bus`: it imports nothing from the app.
"""
from __future__ import annotations

import json
import logging
import queue
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import redis

from app.bus import CHANNEL, EventBus, id_key, matches

log = logging.getLogger("loom.bus")
KEEPALIVE = object()  # yielded by `stream` when nothing happened for a while
PRIVATE_PREFIXES = ("notification.",)  # only the user named in data.user_id may see these


def visible_to(event: dict, user_id: int | None) -> bool:
    if event.get("type", "").startswith(PRIVATE_PREFIXES):
        return user_id is not None and (event.get("data") or {}).get("user_id") == user_id
    return True


def reset_event(reason: str) -> str:
    return json.dumps({"id": None, "type": "stream.reset", "data": {"reason": reason}})


@dataclass
class Filter:
    project_id: int | None = None
    bead_id: int | None = None
    types: frozenset[str] = frozenset()
    data: tuple[tuple[str, object], ...] = ()  # fields of the event's data that must be equal (the log stream's)

    @classmethod
    def parse(cls, raw: object) -> Filter:
        """From a client's `{"project_id"?, "bead_id"?, "types"?}` (bad values are ignored, not fatal)."""
        raw = raw if isinstance(raw, dict) else {}

        def as_id(value: object) -> int | None:
            return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else None

        types = raw.get("types")
        names = frozenset(t for t in types if isinstance(t, str) and len(t) <= 60) if isinstance(types, list) \
            else frozenset()
        return cls(as_id(raw.get("project_id")), as_id(raw.get("bead_id")), names)

    def accepts(self, event: dict) -> bool:
        if not matches(event, project_id=self.project_id, bead_id=self.bead_id, types=set(self.types)):
            return False
        fields = event.get("data") if isinstance(event.get("data"), dict) else {}
        return all(fields.get(key) == value for key, value in self.data)


@dataclass(eq=False)  # compared and hashed by identity: it lives in a set
class Subscription:
    user_id: int | None
    filter: Filter
    queue: queue.Queue = field(default_factory=lambda: queue.Queue(maxsize=1000))
    overflowed: bool = False  # events were dropped for this subscriber: it must catch up
    gap: bool = False  # the hub lost Redis for a while: catch up from the ring buffer
    start_id: str | None = None  # the newest buffered event when it subscribed (where a catch-up starts)

    def wants(self, event: dict) -> bool:
        """Its filter accepts it; a user's own notifications always pass (the header badge needs them)."""
        if not visible_to(event, self.user_id):
            return False
        return event.get("type", "").startswith(PRIVATE_PREFIXES) or self.filter.accepts(event)

    def offer(self, event: dict, raw: str) -> None:
        if not self.wants(event):
            return
        try:
            self.queue.put_nowait((event, raw))
        except queue.Full:
            self.overflowed = True

    def drain(self) -> None:
        while True:
            try:
                self.queue.get_nowait()
            except queue.Empty:
                return


class EventHub:
    """The process's single listener on the bus channel and its subscribers."""

    def __init__(self, client_factory: Callable[[], redis.Redis], bus: EventBus, queue_size: int = 1000) -> None:
        self._client_factory = client_factory
        self.bus = bus
        self.queue_size = queue_size
        self._subs: set[Subscription] = set()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self.connected = threading.Event()

    # -- subscribers
    def subscribe(self, user_id: int | None, flt: Filter) -> Subscription:
        sub = Subscription(user_id, flt, queue.Queue(maxsize=self.queue_size))
        with self._lock:
            self._subs.add(sub)
            if self._thread is None or not self._thread.is_alive():
                self._stop.clear()
                self._thread = threading.Thread(target=self._listen, name="loom-event-hub", daemon=True)
                self._thread.start()
        try:  # read after registering: anything newer is in the queue or in a later catch-up
            sub.start_id = self.bus.last_id() or "0-0"  # empty buffer: all that comes is newer
        except redis.RedisError:
            sub.start_id = None
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        with self._lock:
            self._subs.discard(sub)

    def subscriber_count(self) -> int:
        with self._lock:
            return len(self._subs)

    def stop(self) -> None:
        self._stop.set()

    # -- the listener thread
    def _listen(self) -> None:
        backoff, connected_before = 0.2, False
        while not self._stop.is_set():
            pubsub = None
            try:
                pubsub = self._client_factory().pubsub(ignore_subscribe_messages=True)
                pubsub.subscribe(CHANNEL)
                self.connected.set()
                if connected_before:  # events published while we were away: everyone catches up
                    self._mark_gap()
                connected_before, backoff = True, 0.2
                while not self._stop.is_set():
                    message = pubsub.get_message(timeout=1.0)
                    if message is not None and message.get("type") == "message":
                        self._dispatch(message["data"])
            except (redis.RedisError, OSError) as exc:
                self.connected.clear()
                log.warning("event hub lost Redis (%s); reconnecting in %.1f s", exc, backoff)
                self._stop.wait(backoff)
                backoff = min(5.0, backoff * 2)
            finally:
                if pubsub is not None:
                    try:
                        pubsub.close()
                    except (redis.RedisError, OSError):
                        pass
        self.connected.clear()

    def _mark_gap(self) -> None:
        with self._lock:
            subs = list(self._subs)
        for sub in subs:
            sub.gap = True

    def _dispatch(self, data: bytes | str) -> None:
        raw = data.decode() if isinstance(data, bytes) else data
        try:
            event = json.loads(raw)
        except ValueError:
            return
        with self._lock:
            subs = list(self._subs)
        for sub in subs:
            sub.offer(event, raw)

    # -- what a client consumes
    @contextmanager
    def subscription(self, user_id: int | None, flt: Filter) -> Iterator[Subscription]:
        """A subscription for one client; its `filter` may be replaced while streaming."""
        sub = self.subscribe(user_id, flt)
        try:
            yield sub
        finally:
            self.unsubscribe(sub)

    def stream(self, sub: Subscription, since: str | None = None, keepalive_s: float = 15.0,
               poll_s: float = 1.0) -> Iterator[str | object | None]:
        """Raw event JSON strings in id order: first what came after `since` (from the ring buffer), then live.

        Yields KEEPALIVE after `keepalive_s` without events, and None every `poll_s` while idle so the
        caller can look at its connection.
        """
        last = since  # the newest id this client has; live events at or before it are duplicates
        if since is not None:
            replayed, last, reset = self._replay(sub, since)
            if reset:
                last = None
                yield reset_event("the events after your last id are no longer in the buffer")
            yield from replayed
        yield from self._live(sub, last, keepalive_s, poll_s)

    def _replay(self, sub: Subscription, after: str | None) -> tuple[list[str], str | None, bool]:
        """History after `after` visible to this subscriber: (raw events, last id, whether a reset is needed)."""
        if after is None:
            return [], None, False
        if self.bus.trimmed_after(after):  # the buffer no longer holds everything after `after`
            return [], None, True
        out, last = [], after
        for event in self.bus.history(after=after, limit=self.bus.maxlen):
            if sub.wants(event):
                out.append(json.dumps(event, default=str))
            last = event["id"]
        return out, last, False

    def _live(self, sub: Subscription, last: str | None, keepalive_s: float,
              poll_s: float) -> Iterator[str | object | None]:
        quiet_since = time.monotonic()
        while True:
            if sub.overflowed or sub.gap:
                reason = "overflow" if sub.overflowed else "gap"
                sub.overflowed = sub.gap = False
                sub.drain()
                replayed, new_last, reset = self._replay(sub, last or sub.start_id)
                if reset or (last or sub.start_id) is None:
                    last = None
                    yield reset_event(f"missed events ({reason})")
                else:
                    last = new_last or last
                    yield from replayed
            try:
                event, raw = sub.queue.get(timeout=poll_s)
            except queue.Empty:
                if time.monotonic() - quiet_since >= keepalive_s:
                    quiet_since = time.monotonic()
                    yield KEEPALIVE
                else:
                    yield None
                continue
            event_id = event.get("id")
            if last is not None and event_id and id_key(event_id) <= id_key(last):
                continue  # already sent during a replay
            last = event_id or last
            quiet_since = time.monotonic()
            yield raw
