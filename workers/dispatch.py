"""The dispatcher task and the event hook that wakes it: event-driven, deduplicated, one at a time."""
from __future__ import annotations

import logging

import redis
from redis.exceptions import LockError
from celery import shared_task
from kombu.exceptions import OperationalError as BrokerUnavailable
from flask import current_app

from app.logging_setup import log_context
from app.services import dispatch as dispatch_service
from app.services import provider_health
from workers.loop import enqueue_step, loop_settings, send

log = logging.getLogger("loom.dispatch")
PENDING_KEY = "loom:dispatch:pending"
LOCK_KEY = "loom:lock:dispatch"
AGAIN_KEY = "loom:dispatch:again"  # a pass was asked for while the lock was held
MAX_PASSES = 20  # passes one task runs back to back before handing over to a fresh message


WAKING_EVENTS = frozenset({"bead.created", "bead.closed", "bead.status_changed", "agent.status_changed"})


def on_event(event: dict) -> None:
    """Event hook: anything that may make work possible (a bead created, unblocked or closed; an agent
    idle) asks for one dispatch pass."""
    if event["type"] in WAKING_EVENTS:
        request_dispatch()


def request_dispatch() -> None:
    """Enqueue a dispatch pass unless one is already waiting (a Redis flag dedups bursts of events)."""
    try:
        client = current_app.extensions["loom.redis"]()
        if client.set(PENDING_KEY, "1", nx=True, ex=30):
            send("loom.dispatch")
    except (redis.RedisError, BrokerUnavailable, OSError) as exc:  # Ralph's tick dispatches again within 10 s
        log.warning("dispatch request not sent: %s", exc)


@shared_task(name="loom.dispatch", ignore_result=True)
def dispatch() -> list[tuple[int, int]]:
    """Start runs for ready beads; each new run's first step is enqueued after its commit.

    Passes never wait for each other: a pass that finds the lock taken leaves a note (AGAIN_KEY) and
    returns, and the holder runs one more pass for it before letting go (a blocking wait here held a
    worker thread per queued pass: under load a quarter of the pool sat on this lock; bench/RESULTS.md).
    """
    client = current_app.extensions["loom.redis"]()
    client.delete(PENDING_KEY)  # events from now on ask for another pass
    lock = client.lock(LOCK_KEY, timeout=60)
    if not lock.acquire(blocking=False):
        client.set(AGAIN_KEY, "1", ex=60)
        if not lock.acquire(blocking=False):  # still held: its holder sees the note after releasing
            return []
    started: list[tuple[int, int]] = []
    try:
        for _ in range(MAX_PASSES):
            client.delete(AGAIN_KEY)
            started += _dispatch_pass(client)
            if not client.exists(AGAIN_KEY):
                break
            lock.reacquire()  # one more pass: its 60 s start again
    finally:
        try:
            lock.release()
        except LockError:  # it expired during a slow pass: someone may hold it now, their release is theirs
            log.warning("dispatch lock expired during a pass")
        if client.exists(AGAIN_KEY):  # asked for after the last pass (or the pass failed): never lose a note
            request_dispatch()
    return started


def _dispatch_pass(client) -> list[tuple[int, int]]:
    cfg = current_app.config
    if not provider_health.provider_available(cfg, client):
        log.warning("every LLM provider is down: nothing dispatched until one is healthy")
        return []
    started = dispatch_service.dispatch_ready(loop_settings(), cfg["MAX_CONCURRENT"], cfg["MAX_PER_PROJECT"])
    for run_id, project_id in started:
        with log_context(run_id=run_id, project_id=project_id):
            log.info("run %s started: first step queued", run_id)
            enqueue_step(run_id, project_id)
    return started
