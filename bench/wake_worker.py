"""An experiment, not the default: the worker app plus a 10 ms timer that keeps the consumer's event loop awake.

With the threads pool, `acks_late` and a prefetch multiplier of 1, a finished task's slot is only handed back
when the consumer's event loop next wakes up (celery/celery#6941); under load the next turn of a bead then
waits seconds. Measure the effect with `LOOM_BENCH_WORKER_APP=bench.wake_worker make bench` (see RESULTS.md).
"""
from __future__ import annotations

from celery import signals

from workers.celery_app import app, celery_app, flask_app  # noqa: F401 - the worker entry point, re-exported

WAKE_EVERY_S = 0.01


def _nothing() -> None:
    """The timer's only job is to wake the event loop."""


@signals.worker_ready.connect
def keep_event_loop_awake(sender=None, **_: object) -> None:
    sender.timer.call_repeatedly(WAKE_EVERY_S, _nothing)
