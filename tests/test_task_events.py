"""Task events under the threads pool: a real worker process (8 threads) runs 240 tasks while a Celery event
receiver on the same Redis records every event. Each task must reach task-succeeded (none dropped by a flush
racing the threads that buffer events), and the worker must send them in batches (far fewer messages than
events)."""
from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections import defaultdict

from tests.conftest import ROOT
from tests.test_engine import wait_for
from tests.test_engine_workers import SCRIPT, stop

TASKS = 240


class Recorder:
    """Every event of worker `ev@...` by task id, and how many broker messages carried them."""

    def __init__(self, celery) -> None:
        self.celery = celery
        self.by_task: dict[str, set[str]] = defaultdict(set)
        self.worker_messages = self.worker_events = 0
        self.ready = threading.Event()
        self.receiver = None
        self.thread = threading.Thread(target=self._capture, daemon=True)

    def _capture(self) -> None:
        with self.celery.connection_for_read() as conn:
            self.receiver = self.celery.events.Receiver(conn, handlers={"*": self._on_event})
            receive = self.receiver._receive

            def counting(body, message):  # one call per broker message; a batch is a list of events
                events = body if isinstance(body, list) else [body]
                if events and str(events[0].get("hostname", "")).startswith("ev@"):
                    self.worker_messages += 1
                return receive(body, message)
            self.receiver._receive = counting
            self.receiver.capture(limit=None, timeout=None, wakeup=False)

    def _on_event(self, event: dict) -> None:
        self.ready.set()
        if str(event.get("hostname", "")).startswith("ev@") and "uuid" in event:
            self.worker_events += 1
            self.by_task[event["uuid"]].add(event["type"])

    def stop(self) -> None:
        if self.receiver is not None:
            self.receiver.should_stop = True
        self.thread.join(10)


def test_every_task_event_arrives_and_they_come_in_batches(make_engine, tmp_path):
    engine = make_engine(SCRIPT)
    celery = engine.app.extensions["celery"]
    recorder = Recorder(celery)
    recorder.thread.start()
    with open(tmp_path / "worker.log", "wb") as log:
        worker = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "workers.celery_app", "worker", "-P", "threads", "-c", "8",
             "-n", "ev@%h", "-Q", "default", "--without-gossip", "--without-mingle"],
            cwd=ROOT, env=engine.env(), stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_for(lambda: recorder.ready.is_set(), timeout=60, interval=0.2)  # the worker's first heartbeat
        ids = [celery.send_task("loom.dispatch", queue="default").id for _ in range(TASKS)]

        def all_succeeded():
            """every task to have sent task-succeeded"""
            return all("task-succeeded" in recorder.by_task.get(task_id, ()) for task_id in ids) or None
        try:
            wait_for(all_succeeded, timeout=90, interval=0.5)
        finally:
            missing = [t for t in ids if "task-succeeded" not in recorder.by_task.get(t, ())]
            assert not missing, (f"{len(missing)} of {TASKS} tasks never reported success, e.g. "
                                 f"{recorder.by_task.get(missing[0]) if missing else None}; "
                                 + (tmp_path / "worker.log").read_text()[-2000:])
        time.sleep(0.5)  # the last batches
        for task_id in ids:
            assert {"task-received", "task-started", "task-succeeded"} <= recorder.by_task[task_id]
        assert recorder.worker_messages * 2 < recorder.worker_events, (recorder.worker_messages,
                                                                       recorder.worker_events)
    finally:
        stop([worker])
        recorder.stop()
