"""A real Celery worker (threads pool) inside the test process — the one way the suite starts one.

celery.contrib.testing's `start_worker` leaves its module-global shutdown flag set when a worker fails to stop
in time, and every worker started after that exits before it is ready (its start waits forever), so one slow
test used to hang each later test until pytest-timeout killed it. This wrapper gives workers time to finish the
tasks in hand and always clears that flag, before and after.
"""
from __future__ import annotations

from contextlib import contextmanager
from collections.abc import Iterator

from celery.contrib.testing.worker import start_worker
from celery.worker import state

SHUTDOWN_TIMEOUT = 60.0  # seconds for the tasks in hand (a slow scripted turn, a pair reply) to finish


@contextmanager
def thread_worker(celery_app, concurrency: int = 4, **kwargs) -> Iterator[object]:
    """Run a worker for the block; `queues=[...]` and other WorkController options pass through."""
    kwargs.setdefault("loglevel", "WARNING")
    kwargs.setdefault("shutdown_timeout", SHUTDOWN_TIMEOUT)
    state.should_terminate = None  # whatever an earlier test left behind
    try:
        with start_worker(celery_app, pool="threads", concurrency=concurrency, perform_ping_check=False,
                          **kwargs) as worker:
            yield worker
    finally:
        state.should_terminate = None


def call_task(flask_app, name: str, *args: object) -> object:
    """Run a task's body now, as a worker of this Flask app would (inside its app context).

    `workers.x.task(...)` would run it on Celery's *default* app, which is whichever Flask app was built last
    in the test process: another test's database."""
    return flask_app.extensions["celery"].tasks[name](*args)
