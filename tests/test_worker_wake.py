"""The worker's event loop is kept awake while it holds tasks (celery/celery#6941), and only then."""
from __future__ import annotations

import subprocess
import sys
import time

from tests.celery_worker import thread_worker
from tests.conftest import ROOT
from tests.test_engine import wait_for
from tests.test_engine_workers import start_workers, stop
from workers import wake


def _scheduled(consumer, fun) -> bool:
    return any(item[2].fun == fun and not item[2].canceled for item in list(consumer.timer.queue))


def test_a_busy_worker_wakes_its_loop_and_an_idle_one_does_not(make_engine):
    engine = make_engine({"rules": []}, WORKER_WAKE_MS=20)
    celery_app = engine.app.extensions["celery"]
    wake.install(celery_app)
    with thread_worker(celery_app, concurrency=2) as worker:
        consumer = worker.consumer
        waker = wait_for(lambda: consumer.loom_waker, timeout=30)
        assert waker.period_s == 0.02
        assert not waker.armed and not _scheduled(consumer, waker.tick)  # idle: nothing scheduled
        celery_app.send_task("loom.dispatch", queue="default")
        wait_for(lambda: waker.armed, timeout=30)  # a task received arms the timer on the loop
        assert _scheduled(consumer, waker.tick)

        def disarmed():
            """the timer to stop once the worker has held no task for a while"""
            return not waker.armed
        wait_for(disarmed, timeout=30)
        assert not _scheduled(consumer, waker.tick)


def test_zero_turns_the_wake_up_off(make_engine):
    engine = make_engine({"rules": []}, WORKER_WAKE_MS=0)
    celery_app = engine.app.extensions["celery"]
    wake.install(celery_app)
    with thread_worker(celery_app, concurrency=1) as worker:
        wait_for(lambda: worker.consumer.connection is not None, timeout=30)
        assert worker.consumer.loom_waker is None


def test_the_worker_entry_point_installs_it_with_the_configured_period(make_engine):
    engine = make_engine({"rules": []})
    code = ("from workers.celery_app import celery_app; from workers.wake import WakeEventLoop; "
            "print(WakeEventLoop in celery_app.steps['consumer'], celery_app.conf.loom_worker_wake_ms)")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env={**engine.env(), "LOOM_WORKER_WAKE_MS": "35"},
                         capture_output=True, text=True, timeout=60, check=False)
    assert out.stdout.split() == ["True", "35"], out.stderr


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
