"""Wake the worker's event loop the moment a pool thread starts or finishes a task (celery/celery#6941).

With `-P threads`, `task_acks_late` and `worker_prefetch_multiplier = 1` a worker reserves at most
`concurrency` messages. A pool thread that finishes a task acks it, but the slot only goes back to the
broker on the consumer's next event-loop pass, and the loop sleeps in `epoll` until a socket or a timer
wakes it (the 2 s event heartbeat at best): under load the next turn of a bead sat in Redis for seconds.
Task events a thread buffers (task-started, task-succeeded: workers/task_events.py) wait for that pass too.

This step gives the loop a self-pipe. A pool thread writes one byte to it right after a task is accepted
(its task-started event goes out) and right after the task's callback has acked it (the freed slot goes
back to the broker); the loop wakes, drains the pipe and makes its pass at once. Nothing else writes to
it, so an idle worker is never woken. (It replaces a 20 ms timer that ran while tasks were in hand: that
added 10 ms on average to every freed slot and 50 loop passes a second to a busy worker.)

`LOOM_WORKER_WAKE=false` turns it off (to measure the engine without it).
"""
from __future__ import annotations

import os
import threading

from celery import bootsteps
from celery.concurrency.thread import TaskPool as ThreadTaskPool

CONF_KEY = "loom_worker_wake"  # in the Celery settings (app/config.py: WORKER_WAKE)
READ_CHUNK = 4096


class LoopWaker:
    """A non-blocking self-pipe: `wake` may be called from any thread, `drain` runs on the event loop."""

    def __init__(self) -> None:
        self.read_fd, self.write_fd = os.pipe()
        os.set_blocking(self.read_fd, False)
        os.set_blocking(self.write_fd, False)
        self.wakes = 0  # how often a pool thread woke the loop (tests, diagnostics)
        self.closed = False
        self._closing = threading.Lock()  # never a write to a number closed (and maybe reused) meanwhile

    def wake(self) -> None:
        """Make the loop's current or next `epoll` return at once."""
        with self._closing:
            if self.closed:
                return
            self.wakes += 1
            try:
                os.write(self.write_fd, b"\0")
            except BlockingIOError:  # the pipe is full of wake-ups the loop has not read yet: it is awake
                pass

    def drain(self) -> None:
        """Read every pending wake-up (the loop pass that follows is the point)."""
        try:
            while len(os.read(self.read_fd, READ_CHUNK)) == READ_CHUNK:
                pass
        except BlockingIOError:  # nothing (more) to read
            pass

    def close(self) -> None:
        with self._closing:
            if self.closed:
                return
            self.closed = True
            os.close(self.read_fd)
            os.close(self.write_fd)


def _waking(callback, waker: LoopWaker):
    """`callback`, then a wake-up (also when it raises)."""
    if callback is None:
        return None

    def call_then_wake(*args, **kwargs):
        try:
            return callback(*args, **kwargs)
        finally:
            waker.wake()
    return call_then_wake


def wrap_pool(pool: ThreadTaskPool, waker: LoopWaker) -> None:
    """Every task the pool runs from now on wakes the loop once accepted and once its callback (the ack) ran."""
    submit = pool.on_apply  # the pool's own (a subclass's, if it has one)

    def on_apply(target, args=None, kwargs=None, callback=None, accept_callback=None, **rest):
        return submit(target, args, kwargs, _waking(callback, waker), _waking(accept_callback, waker), **rest)

    pool.on_apply = on_apply


class WakeEventLoop(bootsteps.StartStopStep):
    """Consumer bootstep: the waker's pipe on the consumer's event loop, and the threads pool wrapped to use it."""

    requires = ("celery.worker.consumer.tasks:Tasks",)

    def __init__(self, c, **kwargs) -> None:
        super().__init__(c, **kwargs)
        self.enabled = bool(c.app.conf.get(CONF_KEY, True))
        c.loom_waker = None

    def start(self, c) -> None:
        """Also after each reconnect: the hub dropped its readers when the connection failed."""
        if c.hub is None or not isinstance(c.pool, ThreadTaskPool):  # no event loop, or not the threads pool
            return
        if c.loom_waker is None:
            c.loom_waker = LoopWaker()
            wrap_pool(c.pool, c.loom_waker)
        c.hub.add_reader(c.loom_waker.read_fd, c.loom_waker.drain)

    def stop(self, c) -> None:
        # At shutdown the Hub step has closed the hub already: asking it then would open a new epoll (a leaked fd).
        if c.loom_waker is not None and c.hub is not None and getattr(c.hub, "_poller", None) is not None:
            c.hub.remove_reader(c.loom_waker.read_fd)

    def shutdown(self, c) -> None:
        self.stop(c)
        if c.loom_waker is not None:
            c.loom_waker.close()


def install(celery_app) -> None:
    """Add the step to a Celery app's consumer (it does nothing when `loom_worker_wake` is off)."""
    celery_app.steps["consumer"].add(WakeEventLoop)
