"""The only worker entry point: `celery -A workers.celery_app worker|beat|flower|inspect`.

Builds the Flask app (config from LOOM_* variables) and exposes its Celery app; importing the task
modules registers their tasks. Logging is Loom's own (LOOM_LOG_LEVEL, LOOM_LOG_FORMAT) for every
Celery command: answering `setup_logging` tells Celery not to install its handlers. Two consumer
bootsteps (installed by app/factory.py) adjust Celery to the threads pool: task events batched without
losing any (workers/task_events.py) and the event loop woken by pool threads when a task starts and
ends (workers/wake.py, LOOM_WORKER_WAKE).
"""
from __future__ import annotations

from celery.signals import setup_logging, worker_init

from app import create_app
from app.logging_setup import configure_logging
from workers import dispatch, loop, maintenance, motivations, team, turn_control  # noqa: F401 (tasks, loom_turns)

flask_app = create_app()
celery_app = flask_app.extensions["celery"]
app = celery_app


@setup_logging.connect(weak=False)
def _loom_logging(**_: object) -> None:
    """Celery's --loglevel is ignored on purpose: LOOM_LOG_LEVEL is the one knob for every process."""
    cfg = flask_app.config
    configure_logging(cfg["LOG_LEVEL"], cfg["LOG_FORMAT"])


@worker_init.connect(weak=False)
def _idle_poll(**_: object) -> None:
    """Only a worker waits LOOM_BROKER_POLL_SECONDS in each blocking read of its queues (fewer wake-ups when idle);
    set before its consumer connects. Other commands of this app keep kombu's 1 s (app/config.py)."""
    options = dict(celery_app.conf.broker_transport_options or {})
    options["polling_interval"] = celery_app.conf.loom_worker_poll_seconds
    celery_app.conf.broker_transport_options = options
