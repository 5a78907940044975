"""Tasks that run bead action loops: ids in, ids out. Each `step` is one LLM turn and enqueues the next."""
from __future__ import annotations

import logging

import redis

from celery import shared_task
from kombu.exceptions import OperationalError as BrokerUnavailable
from flask import current_app
from sqlalchemy.exc import OperationalError

from app.extensions import db
from app.logging_setup import log_context
from app.models import Project
from app.services import dispatch as dispatch_service
from app.services import llm_clients, provider_health
from app.services import settings as runtime
from app.services import loop as loop_service
from app.services.errors import ServiceError
from app.services.loop import LoopSettings
from app.services.sandbox import SandboxPolicy

log = logging.getLogger("loom.worker")


def loop_settings() -> LoopSettings:
    """The engine's settings: LOOM_* config, with the runtime overrides of PUT /config (lease, iterations)."""
    cfg = current_app.config
    lease = runtime.get_setting("lease_seconds", cfg["LEASE_SECONDS"])
    iterations = runtime.get_setting("loop.max_iterations", min(100, cfg["MAX_ITERATIONS"]))
    return LoopSettings(data_dir=cfg["DATA_DIR"], lease_seconds=lease,
                        max_iterations=iterations, context_chars=cfg["CONTEXT_CHARS"],
                        command_timeout=cfg["COMMAND_TIMEOUT"], error_backoff_s=cfg["ERROR_BACKOFF"],
                        sandbox=SandboxPolicy.from_settings(cfg["SANDBOX"], cfg["SANDBOX_NETWORK"],
                                                            cfg["SANDBOX_UID"]))


def queue_for(project_id: int | None, dedicated: bool | None = None) -> str:
    """`project.<id>` for projects with dedicated workers, else the default queue (`dedicated`: already known)."""
    if project_id is not None and dedicated is None:
        project = db.session.get(Project, project_id)
        dedicated = project is not None and project.dedicated
    return f"project.{project_id}" if project_id is not None and dedicated else "default"


# Ride out a broker restart of up to ~30 s when enqueueing the next turn; past that, Ralph resumes the run.
PUBLISH_RETRY = {"max_retries": 10, "interval_start": 0.5, "interval_step": 1.0, "interval_max": 5.0}


# How Flower, `celery inspect` and the worker log show a task's arguments: named, e.g. `run_id=12`.
ARG_NAMES = {"loom.step": ("run_id",), "loom.start_run": ("bead_id", "agent_id"),
             "loom.deliver_webhook": ("delivery_id",)}


def args_repr(task_name: str, args: tuple) -> str:
    names = ARG_NAMES.get(task_name, ())
    if len(names) != len(args):
        return repr(tuple(args))
    return ", ".join(f"{name}={value!r}" for name, value in zip(names, args, strict=True))


def send(task_name: str, args: tuple = (), queue: str = "default", countdown: float | None = None) -> None:
    """Enqueue through this Flask app's own Celery app (never a process-global default)."""
    current_app.extensions["celery"].send_task(task_name, args=args, queue=queue, countdown=countdown,
                                               retry=True, retry_policy=PUBLISH_RETRY,
                                               argsrepr=args_repr(task_name, args))


def enqueue_step(run_id: int, project_id: int | None, delay_s: float = 0.0, dedicated: bool | None = None) -> None:
    send("loom.step", (run_id,), queue=queue_for(project_id, dedicated), countdown=delay_s or None)


@shared_task(name="loom.start_run", ignore_result=True)
def start_run(bead_id: int, agent_id: int) -> int | None:
    """Claim a bead for an agent and start its loop (a no-op when the claim is lost)."""
    with log_context(bead_id=bead_id, agent_id=agent_id):
        try:
            run = loop_service.start_run(bead_id, agent_id, loop_settings())
        except ServiceError as exc:
            log.info("start_run(%s, %s) refused: %s", bead_id, agent_id, exc.message)
            return None
        enqueue_step(run.id, run.project_id)
        return run.id


@shared_task(name="loom.step", bind=True, ignore_result=True, max_retries=8)
def step(self, run_id: int) -> str | None:
    """One LLM turn of a run; the next turn is enqueued only after this one is committed."""
    with log_context(run_id=run_id, task_id=self.request.id):
        return _step(self, run_id)


def _step(task, run_id: int) -> str | None:
    try:  # the turn adds its bead, agent and project to the log context once it has read the run
        settings = loop_settings()
        url, api_key, model = llm_clients.provider_settings(current_app.config)
        llm = llm_clients.client_for(url, api_key, model, float(current_app.config["STEP_TIMEOUT"]),
                                     current_app.config["LLM_RETRY_BACKOFF"])
        outcome = loop_service.run_step(run_id, llm, settings)
    except OperationalError as exc:  # the database blinked: try the same step again shortly
        db.session.rollback()
        raise task.retry(exc=exc, countdown=min(60, 2 ** task.request.retries)) from exc
    except LookupError as exc:  # no provider configured: retry later rather than lose the run
        log.error("run %s waits: %s", run_id, exc)
        raise task.retry(exc=exc, countdown=30) from exc
    with log_context(project_id=outcome.project_id, bead_id=outcome.bead_id, agent_id=outcome.agent_id):
        log.info("run %s: step done, %s", run_id,
                 "next step queued" if outcome.next_step else f"run ended ({outcome.reason})")
        if outcome.next_step:
            try:
                enqueue_step(run_id, outcome.project_id, outcome.delay_s, outcome.dedicated)
            except BrokerUnavailable as exc:  # the step itself is committed; Ralph resumes the run later
                log.error("run %s: next step not enqueued (broker unavailable: %s); Ralph will resume it",
                          run_id, exc)
        elif outcome.reason == "done" and outcome.agent_id:
            _hand_off(outcome.agent_id)
    return outcome.reason


def _hand_off(agent_id: int) -> None:
    """The agent goes straight on to its next ready bead (app/services/dispatch.py: hand_off)."""
    cfg = current_app.config
    try:
        if not provider_health.provider_available(cfg, current_app.extensions["loom.redis"]()):
            return  # every provider is down: nothing starts until one is healthy (as in a dispatch pass)
        run = dispatch_service.hand_off(agent_id, loop_settings(), cfg["MAX_CONCURRENT"], cfg["MAX_PER_PROJECT"])
        if run is not None:
            log.info("agent %s handed on to bead %s: run %s", agent_id, run.bead_id, run.id)
            enqueue_step(run.id, run.project_id)
    except (OperationalError, BrokerUnavailable, redis.RedisError) as exc:  # the dispatcher picks it up instead
        db.session.rollback()
        log.warning("agent %s: hand-off failed (%s); the dispatcher will start its next bead", agent_id, exc)
