"""Pool threads wake the worker's event loop when a task starts and when its slot frees (celery/celery#6941), and
nothing wakes an idle worker."""
from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

from tests.celery_worker import thread_worker
from tests.conftest import ROOT
from tests.test_engine import wait_for
from tests.test_engine_workers import start_workers, stop
from workers import wake


def _pending(waker: wake.LoopWaker) -> bytes:
    """Bytes written to the pipe and not drained yet (reads them)."""
    try:
        return os.read(waker.read_fd, 4096)
    except BlockingIOError:
        return b""


@contextmanager
def _one_slot_worker(make_engine) -> Iterator[tuple[object, object, wake.LoopWaker]]:
    """(Celery app, consumer, its waker) of a real one-thread worker with the wake step installed."""
    engine = make_engine({"rules": []})
    celery_app = engine.app.extensions["celery"]
    wake.install(celery_app)
    with thread_worker(celery_app, concurrency=1) as worker:
        consumer = worker.consumer
        yield celery_app, consumer, wait_for(lambda: consumer.loom_waker, timeout=30)


def test_each_task_wakes_the_loop_when_it_starts_and_when_its_slot_frees(make_engine):
    with _one_slot_worker(make_engine) as (celery_app, consumer, waker):
        assert waker.read_fd in consumer.hub.readers  # the loop listens to the pipe
        before = waker.wakes
        for _ in range(5):  # one slot: each task waits for the slot the one before it freed
            celery_app.send_task("loom.dispatch", queue="default")

        def ten_wakes():
            """2 per task: accepted, then acked"""
            return waker.wakes - before >= 10
        wait_for(ten_wakes, timeout=60)
        settled = waker.wakes
        time.sleep(1.5)  # idle now: nothing wakes the loop
        assert waker.wakes == settled
        assert _pending(waker) == b""  # the loop drained every wake-up


def test_the_reader_comes_back_after_the_hub_lost_it(make_engine):
    """A lost broker connection resets the hub (its readers go) and restarts the consumer's steps."""
    with _one_slot_worker(make_engine) as (celery_app, consumer, waker):
        step = next(s for s in consumer.blueprint.steps.values() if isinstance(s, wake.WakeEventLoop))
        step.stop(consumer)
        assert waker.read_fd not in consumer.hub.readers
        step.start(consumer)
        assert consumer.loom_waker is waker and waker.read_fd in consumer.hub.readers  # same pipe, pool wrapped once
        before = waker.wakes
        celery_app.send_task("loom.dispatch", queue="default")
        wait_for(lambda: waker.wakes - before >= 2, timeout=30)


def test_off_means_no_pipe_and_no_wrapped_pool(make_engine):
    engine = make_engine({"rules": []}, WORKER_WAKE=False)
    celery_app = engine.app.extensions["celery"]
    wake.install(celery_app)
    with thread_worker(celery_app, concurrency=1) as worker:
        wait_for(lambda: worker.consumer.connection is not None, timeout=30)
        assert worker.consumer.loom_waker is None
        assert "on_apply" not in vars(worker.consumer.pool)


def test_a_closed_waker_ignores_late_wake_ups():
    waker = wake.LoopWaker()
    waker.wake()
    assert _pending(waker) == b"\0"
    waker.close()
    waker.wake()  # a pool thread finishing after the worker stopped: no write to a closed (maybe reused) number
    assert waker.wakes == 1


def test_the_worker_entry_point_installs_it_as_configured(make_engine):
    engine = make_engine({"rules": []})
    code = ("from workers.celery_app import celery_app; from workers.wake import WakeEventLoop; "
            "print(WakeEventLoop in celery_app.steps['consumer'], celery_app.conf.loom_worker_wake)")
    for value, expected in (("", "True"), ("false", "False")):
        out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env={**engine.env(), "LOOM_WORKER_WAKE": value},
                             capture_output=True, text=True, timeout=60, check=False)
        assert out.stdout.split() == ["True", expected], out.stderr


def test_an_idle_worker_polls_slowly_yet_answers_control_at_once(make_engine, tmp_path):
    """LOOM_BROKER_POLL_SECONDS is the worker's own: clients (web, Flower, `celery inspect`) keep kombu's 1 s,
    else each of their reads of a control reply blocks that long and Flower's 1 s worker refresh comes back empty."""
    engine = make_engine({"rules": []}, BROKER_POLL_SECONDS=5)
    control = engine.app.extensions["celery"].control
    assert "polling_interval" not in engine.app.extensions["celery"].conf.broker_transport_options
    workers = start_workers(engine, 1, tmp_path)
    try:
        wait_for(lambda: control.inspect(timeout=1).ping(), timeout=60)
        conf = wait_for(lambda: control.inspect(timeout=1).conf(with_defaults=False), timeout=30)
        (worker_conf,) = conf.values()
        assert worker_conf["broker_transport_options"]["polling_interval"] == 5
        time.sleep(6)  # idle: its blocking read is past one full poll
        for _ in range(3):
            replies = control.inspect(timeout=1).ping()
            assert replies and list(replies.values()) == [{"ok": "pong"}], replies
    finally:
        stop(workers)
