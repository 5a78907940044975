"""Whose turn it is on a run: the loop waits for a person's turn, parks for a person's hold, leaves duplicate
deliveries to the step ledger, and the run lock's watchdog keeps a turn's lock past its TTL."""
from __future__ import annotations

import threading
import time

from app.extensions import db
from app.llm import LLMClient
from app.services import loop as loop_service
from app.services import pair as pair_service
from app.services import turns
from tests.conftest import unique
from tests.test_engine import Client
from tests.test_pair import SCRIPT, run_of
from workers.loop import loop_settings


def test_the_loop_waits_for_a_person_parks_for_a_hold_and_leaves_duplicates_to_the_ledger(make_engine):
    engine = make_engine(SCRIPT)
    api = Client(engine.app)
    project = api("post", "/projects", json={"name": unique("turns"), "git_strategy": "branch"})
    bead = api("post", "/beads", json={"project_id": project["id"], "title": "held directly"})
    agent = api("get", f"/agents?project_id={project['id']}")["items"][0]
    with engine.app.app_context():
        settings = loop_settings()
        run_id = loop_service.start_run(bead["id"], agent["id"], settings).id
        llm = LLMClient(engine.llm.url)

        person = turns.RunLock(run_id, "pair")
        assert person.acquire(0) and not turns.RunLock(run_id, "pair").acquire(0)
        outcome = loop_service.run_step(run_id, llm, settings)  # the chain's step waits for the person's turn
        assert (outcome.next_step, outcome.reason, outcome.delay_s) == (True, "waiting for a pair turn",
                                                                      turns.PERSON_POLL_S)
        releaser = threading.Thread(target=person.release)  # a lock may be released by another thread
        releaser.start()
        releaser.join()
        assert person.holder() is None

        duplicate = turns.RunLock(run_id, "loop")  # another delivery of the loop holds it: go on, as before
        assert duplicate.acquire(0)
        outcome = loop_service.run_step(run_id, llm, settings)
        assert outcome.next_step and outcome.reason is None
        duplicate.release()
        assert api("get", f"/beads/{bead['id']}/steps")["total"] == 1

        pair_service.pause(bead["id"], "alice", 3600)
        outcome = loop_service.run_step(run_id, llm, settings)
        assert (outcome.next_step, outcome.reason) == (False, "paused for pairing")
        assert api("get", f"/beads/{bead['id']}/steps")["total"] == 1
        assert run_of(engine, run_id).counters.get(turns.PARKED) is True
        run, enqueue = pair_service.resume(bead["id"], "alice", 300)
        assert enqueue is True and turns.PARKED not in run_of(engine, run_id).counters

        pair_service.pause(bead["id"], "alice", 3600)  # handed back before the loop noticed: its chain lives on
        assert pair_service.resume(bead["id"], "alice", 300)[1] is False
        assert run_of(engine, run_id).paused_by is None

        kept = turns.RunLock(run_id, "pair", ttl_s=1.0, renew_every_s=0.2)  # the watchdog outlives the TTL
        assert kept.acquire(0)
        time.sleep(2.0)
        assert kept.holder() == "pair"
        kept.release()
        assert kept.holder() is None
        llm.close()
        db.session.remove()
