"""Keep the worker's event loop awake while it holds tasks: the threads-pool stall (celery/celery#6941).

With `-P threads`, `task_acks_late` and `worker_prefetch_multiplier = 1` a worker reserves at most
`concurrency` messages. A pool thread that finishes a task acks it, but the slot only goes back to the
broker when the consumer's event loop next wakes up (a timer or another socket event: the 2 s event
heartbeat at best), so under load the next turn of a bead sat in Redis for seconds (turn gap p50 ~5 s
with 50 ms LLM turns; bench/RESULTS.md). The loop sleeps in `epoll` and nothing wakes it from a pool
thread, so this step schedules a short repeating timer on the loop (`WORKER_WAKE_MS`, default 20 ms)
while the worker holds a task, and none while it is idle: an idle worker costs nothing more, a busy
one pays one cheap loop pass per period (a 20 ms period adds ~10 ms on average to a freed slot's wait).

The timer is armed by `task_received` (sent on the loop's own thread, so the timer heap is never
touched from a pool thread) and disarms itself once the worker has held no task for `LINGER_S`
(a thread marks its task ready a moment before it acks it: the last ack still gets its wake-up).
`LOOM_WORKER_WAKE_MS=0` turns it off.
"""
from __future__ import annotations

import time

from celery import bootsteps, signals
from celery.worker import state as worker_state

LINGER_S = 0.25  # keep waking this long after the last task in hand finished
CONF_KEY = "loom_worker_wake_ms"  # in the Celery settings (app/config.py: WORKER_WAKE_MS)


class LoopWaker:
    """A self-rescheduling timer entry on the consumer's timer; `tick` runs on the event loop's thread."""

    def __init__(self, timer, period_s: float) -> None:
        self.timer, self.period_s = timer, period_s
        self.armed = False
        self.stopped = False
        self.last_busy = 0.0

    def arm(self) -> None:
        self.last_busy = time.monotonic()
        if not self.armed and not self.stopped:
            self.armed = True
            self.timer.call_after(self.period_s, self.tick)

    def tick(self) -> None:
        """Nothing to do but be called: the loop pass around it hands freed slots back to the broker."""
        now = time.monotonic()
        if worker_state.reserved_requests:
            self.last_busy = now
        if self.stopped or now - self.last_busy > LINGER_S:
            self.armed = False
            return
        self.timer.call_after(self.period_s, self.tick)

    def stop(self) -> None:
        self.stopped = True


class WakeEventLoop(bootsteps.StartStopStep):
    """Consumer bootstep: a LoopWaker on the consumer's timer, armed by each task received."""

    requires = ("celery.worker.consumer.tasks:Tasks",)

    def __init__(self, c, **kwargs) -> None:
        super().__init__(c, **kwargs)
        self.period_s = float(c.app.conf.get(CONF_KEY) or 0) / 1000
        self.enabled = self.period_s > 0
        c.loom_waker = None

    def start(self, c) -> None:
        if c.timer is not None:  # no timer: no event loop (e.g. the solo pool), nothing to wake
            c.loom_waker = LoopWaker(c.timer, self.period_s)

    def stop(self, c) -> None:
        if c.loom_waker is not None:
            c.loom_waker.stop()
            c.loom_waker = None

    shutdown = stop


@signals.task_received.connect(weak=False)
def _arm_on_receipt(sender=None, **_: object) -> None:
    """Runs in the consumer's thread for every task message taken from the broker."""
    waker = getattr(sender, "loom_waker", None)
    if waker is not None:
        waker.arm()


def install(celery_app) -> None:
    """Add the step to a Celery app's consumer; its period is the app's `loom_worker_wake_ms` setting."""
    celery_app.steps["consumer"].add(WakeEventLoop)
