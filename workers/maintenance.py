"""Periodic tasks fired by Beat. Each takes a short Redis lock, so a second Beat cannot double the work."""
from __future__ import annotations

from celery import shared_task
from flask import current_app

from app.services import ralph
from workers.dispatch import request_dispatch

RALPH_LOCK = "loom:lock:ralph_tick"


@shared_task(name="loom.ralph_tick", ignore_result=True)
def ralph_tick() -> dict | None:
    redis_client = current_app.extensions["loom.redis"]()
    lock = redis_client.lock(RALPH_LOCK, timeout=60, blocking=False)
    if not lock.acquire():
        return None  # the previous tick (or another Beat's) is still running
    try:
        summary = ralph.run_tick(redis_client)
    finally:
        lock.release()
    request_dispatch()  # the safety net: anything ready that no event woke gets dispatched now
    return summary
