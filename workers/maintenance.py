"""Periodic tasks fired by Beat. Each runs at most once per interval, however many Beats send it (a
per-tick Redis marker), and never twice at the same time (a short lock)."""
from __future__ import annotations

from celery import shared_task
from flask import current_app

from app.services import dispatch as dispatch_service
from app.services import motivation_triggers, provider_health, ralph, workspace_cleanup
from workers.dispatch import request_dispatch
from workers.loop import enqueue_step

RALPH_LOCK = "loom:lock:ralph_tick"
RALPH_TICK = "loom:tick:ralph"
RALPH_RUNS = "loom:ralph:runs"  # how many ticks really ran (for operators and tests)
HEALTH_TICK = "loom:tick:provider_health"
MOTIVATIONS_LOCK = "loom:lock:motivations_tick"
MOTIVATIONS_TICK = "loom:tick:motivations"
MOTIVATIONS_RUNS = "loom:motivations:runs"  # how many ticks really ran (for operators and tests)
CLEANUP_LOCK = "loom:lock:workspace_cleanup"
CLEANUP_TICK = "loom:tick:workspace_cleanup"


def first_this_tick(client, key: str, interval_s: float) -> bool:
    """True for the first caller in this interval (80% of it, so a late tick is not lost)."""
    return bool(client.set(key, "1", nx=True, px=max(100, int(interval_s * 800))))


def ralph_settings() -> ralph.RalphSettings:
    cfg = current_app.config
    return ralph.RalphSettings(lease_seconds=cfg["LEASE_SECONDS"], zombie_seconds=cfg["ZOMBIE_SECONDS"],
                               recover_transient_seconds=cfg["RECOVER_TRANSIENT_SECONDS"],
                               recover_auth_seconds=cfg["RECOVER_AUTH_SECONDS"], max_resumes=cfg["MAX_RESUMES"],
                               max_dispatches=cfg["MAX_DISPATCHES"],
                               reservation_seconds=cfg["BUDGET_RESERVATION_SECONDS"])


@shared_task(name="loom.ralph_tick", ignore_result=True)
def ralph_tick(force: bool = False) -> dict | None:
    client = current_app.extensions["loom.redis"]()
    if not force and not first_this_tick(client, RALPH_TICK, current_app.config["RALPH_INTERVAL"]):
        return None  # another Beat's message for this tick already ran
    lock = client.lock(RALPH_LOCK, timeout=60, blocking=False)
    if not lock.acquire():
        return None  # the previous tick is still running
    try:
        healthy = provider_health.provider_available(current_app.config, client)
        summary = ralph.run_tick(client, ralph_settings(), provider_healthy=healthy)
        client.incr(RALPH_RUNS)
    finally:
        lock.release()
    for run_id, project_id in summary.pop("resume"):
        enqueue_step(run_id, project_id)
    if dispatch_service.work_waiting():  # the safety net: anything ready that no event woke is dispatched now
        request_dispatch()
    return summary


@shared_task(name="loom.provider_health", ignore_result=True)
def provider_health_task() -> list[dict] | None:
    client = current_app.extensions["loom.redis"]()
    if not first_this_tick(client, HEALTH_TICK, current_app.config["HEALTH_INTERVAL"]):
        return None
    return provider_health.check_all(current_app.config, client)


@shared_task(name="loom.motivations_tick", ignore_result=True)
def motivations_tick(force: bool = False) -> dict | None:
    """Evaluate interval/calendar/idle/threshold motivations and catch up missed bead.closed events. The marker
    and lock keep it to one run per tick; the firings' dedup keys make each occasion fire once regardless."""
    client = current_app.extensions["loom.redis"]()
    if not force and not first_this_tick(client, MOTIVATIONS_TICK, current_app.config["MOTIVATIONS_INTERVAL"]):
        return None
    lock = client.lock(MOTIVATIONS_LOCK, timeout=120, blocking=False)
    if not lock.acquire():
        return None
    try:
        summary = motivation_triggers.run_tick(wake=request_dispatch)
        client.incr(MOTIVATIONS_RUNS)
    finally:
        lock.release()
    return summary


@shared_task(name="loom.workspace_cleanup", ignore_result=True)
def workspace_cleanup_task(force: bool = False) -> dict | None:
    """Remove the worktrees of beads closed for LOOM_WORKTREE_RETENTION_SECONDS, or deleted (0: none is removed)."""
    cfg = current_app.config
    client = current_app.extensions["loom.redis"]()
    if cfg["WORKTREE_RETENTION_SECONDS"] <= 0 or (
            not force and not first_this_tick(client, CLEANUP_TICK, cfg["CLEANUP_INTERVAL"])):
        return None
    lock = client.lock(CLEANUP_LOCK, timeout=600, blocking=False)
    if not lock.acquire():
        return None  # the previous clean-up is still at work
    try:
        return workspace_cleanup.prune_worktrees(cfg["DATA_DIR"], cfg["WORKTREE_RETENTION_SECONDS"])
    finally:
        lock.release()
