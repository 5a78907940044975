"""Task events (for Flower and `celery events`) sent in batches, safely under the threads pool.

With an event loop (the Redis transport) Celery buffers task events: pool threads append them to a
list and the loop thread publishes the list as one `task.multi` message on its next pass (a pool
thread wakes the loop when its task starts and when it ends: workers/wake.py). One publish per batch instead of
one per event: unbatched, the four events of each task (sent, received, started, succeeded) cost about a
fifth of a worker's CPU (bench/RESULTS.md).

Celery's own flush publishes the list and then empties it, so under the threads pool an event a
thread appends in between is dropped and Flower shows a finished task as STARTED forever. The flush
below takes the batch first and removes exactly what it took (list copy and slice delete are atomic
under the GIL; appends land after the batch). It also runs when the consumer stops, because Celery's
Events step closes its dispatcher without publishing what it buffered.

The `task-sent` event of a task a worker enqueues (the next turn of a bead, `task_send_sent_event`)
joins the same batches: Celery would publish it on its own, at once, from the sending thread.
"""
from __future__ import annotations

import logging
import types

from celery import bootsteps
from celery.events.dispatcher import EventDispatcher

log = logging.getLogger("loom.worker")


def flush_whole_batches(self: EventDispatcher, errors: bool = True, groups: bool = True) -> None:
    """EventDispatcher.flush, except that an event buffered while a batch is published stays for the next."""
    if errors:  # events that failed to publish (broker down), oldest first; a new failure is queued again
        with self.mutex:
            for _ in range(len(self._outbound_buffer)):
                event, routing_key, _exc = self._outbound_buffer.popleft()
                self._publish(event, self.producer, routing_key)
    if groups:
        with self.mutex:
            for group, events in list(self._group_buffer.items()):
                batch = events[:]
                if not batch:
                    continue
                del events[:len(batch)]
                self._publish(batch, self.producer, f"{group}.multi")  # offline: kept in the outbound buffer


def make_safe(dispatcher: EventDispatcher) -> EventDispatcher:
    """Give one dispatcher the batch-safe flush (the consumer and pool threads call `dispatcher.flush()`)."""
    dispatcher.flush = types.MethodType(flush_whole_batches, dispatcher)
    return dispatcher


class SentEventsToBatch:
    """Stands in for Celery's dispatcher of `task-sent` events (app.amqp._event_dispatcher) in a worker: the
    event goes into the consumer's batch; while the consumer has no dispatcher sending task events (it is
    reconnecting, or runs without task events), Celery's own publishes it."""

    def __init__(self, consumer, own: EventDispatcher) -> None:
        self.consumer, self.own = consumer, own

    def publish(self, type: str, fields: dict, producer, **kwargs) -> None:  # noqa: A002 (Celery's name)
        batch = self.consumer.event_dispatcher
        if batch is None or not batch.enabled or (batch.groups and "task" not in batch.groups):
            self.own.publish(type, fields, producer, **kwargs)
        else:
            batch.send(type, **fields)


class BatchedTaskEvents(bootsteps.StartStopStep):
    """Consumer bootstep: the consumer's event dispatcher (made anew on each reconnect) flushes safely, and
    the worker's `task-sent` events go through it."""

    requires = ("celery.worker.consumer.events:Events",)

    def start(self, c) -> None:
        if c.event_dispatcher is not None:
            make_safe(c.event_dispatcher)
        amqp = c.app.amqp
        if not isinstance(amqp._event_dispatcher, SentEventsToBatch):
            amqp._event_dispatcher = SentEventsToBatch(c, amqp._event_dispatcher)
            del amqp.send_task_message  # Celery's sender keeps the dispatcher it was made with: make it anew

    def stop(self, c) -> None:
        """Publish what is buffered before the Events step closes the dispatcher (it would be lost)."""
        dispatcher = c.event_dispatcher
        if dispatcher is not None and dispatcher.enabled and dispatcher.producer is not None:
            try:
                dispatcher.flush()
            except Exception as exc:  # noqa: BLE001 (broker gone at shutdown: monitoring events only)
                log.warning("task events buffered at shutdown were not published: %s", exc)

    shutdown = stop


def install(celery_app) -> None:
    celery_app.steps["consumer"].add(BatchedTaskEvents)
