"""What one turn of the action loop asks of the database, against the real database and the scripted LLM over
HTTP: three transactions (the lease renewal with the reads the call needs, the reply with its LLMRequest row, the
applied results), the run's steps read once, and nothing left open after the turn. A person who pauses the run
while the turn is out is seen by a read inside the turn's last transaction: the loop parks after that turn."""
from __future__ import annotations

import threading
from collections import Counter

from sqlalchemy import event, select

from app.extensions import db
from app.llm import LLMClient
from app.models import Step
from app.services import loop
from app.services import pair as pair_service
from app.services import turns
from app.services.loop import LoopSettings
from tests.test_engine import Client
from tests.test_pair import run_of

SCRIPT = {"rules": [{"match": {"turn": [1, 2, 3]},
                     "reply": {"actions": [{"type": "write_file", "path": "turn.txt", "content": "turn {turn}"}]}}],
          "default": {"actions": [{"type": "done", "reason": "ok"}]}}


class StatementLog:
    """Transactions and statements on the app's engine while it is on."""

    def __init__(self, engine) -> None:
        self.engine, self.counts, self.statements = engine, Counter(), []

    def _begin(self, conn) -> None:
        self.counts["begin"] += 1

    def _commit(self, conn) -> None:
        self.counts["commit"] += 1

    def _rollback(self, conn) -> None:
        self.counts["rollback"] += 1

    def _statement(self, conn, cursor, statement, *args) -> None:
        self.statements.append(" ".join(statement.split()))

    def __enter__(self) -> StatementLog:
        for name in ("begin", "commit", "rollback"):
            event.listen(self.engine, name, getattr(self, f"_{name}"))
        event.listen(self.engine, "before_cursor_execute", self._statement)
        return self

    def __exit__(self, *exc) -> None:
        for name in ("begin", "commit", "rollback"):
            event.remove(self.engine, name, getattr(self, f"_{name}"))
        event.remove(self.engine, "before_cursor_execute", self._statement)

    def reading(self, table: str) -> int:
        return sum(1 for s in self.statements if s.startswith("SELECT") and f" FROM {table} " in f"{s} ")


def steps_of(run_id: int) -> list[Step]:
    return list(db.session.scalars(select(Step).where(Step.run_id == run_id).order_by(Step.seq)))


def started(engine, name: str):
    api = Client(engine.app)
    project = api("post", "/projects", json={"name": name, "git_strategy": "branch"})
    bead = api("post", "/beads", json={"project_id": project["id"], "title": name})
    agent = api("get", f"/agents?project_id={project['id']}")["items"][0]
    settings = LoopSettings(data_dir=str(engine.data_dir))
    return api, bead, loop.start_run(bead["id"], agent["id"], settings).id, settings


def test_a_turn_is_three_transactions_and_reads_its_steps_once(make_engine):
    engine = make_engine(SCRIPT, AUTO_DISPATCH=False)
    llm = LLMClient(engine.llm.url, max_retries=0)
    with engine.app.app_context():
        _, bead, run_id, settings = started(engine, "three-transactions")
        assert loop.run_step(run_id, llm, settings).next_step  # the first turn also makes the worktree
        db.session.remove()
        for _ in range(2):
            with StatementLog(db.engine) as seen:
                outcome = loop.run_step(run_id, llm, settings)
                db.session.remove()  # as the worker ends its task: nothing may be left to roll back
            assert outcome.next_step and outcome.person_holds is False
            assert seen.counts == Counter(begin=3, commit=3), seen.statements
            assert seen.reading("steps") == 1 and seen.reading("budgets") == 1, seen.statements
        assert [s.status for s in steps_of(run_id)] == ["applied"] * 3
    llm.close()


class PausedMeanwhileLLM(LLMClient):
    """The real client; while its call is out, a person pauses the run from another thread (their own session)."""

    def __init__(self, url: str, app, bead_id: int) -> None:
        super().__init__(url, max_retries=0)
        self.app, self.bead_id = app, bead_id

    def chat(self, *args, **kwargs):
        def person() -> None:
            with self.app.app_context():
                pair_service.pause(self.bead_id, "alice", 3600)
                db.session.remove()
        thread = threading.Thread(target=person)
        thread.start()
        thread.join()
        return super().chat(*args, **kwargs)


def test_a_pause_during_the_turn_parks_the_loop_after_it(make_engine):
    engine = make_engine(SCRIPT, AUTO_DISPATCH=False)
    with engine.app.app_context():
        _, bead, run_id, settings = started(engine, "paused-meanwhile")
        llm = PausedMeanwhileLLM(engine.llm.url, engine.app, bead["id"])
        outcome = loop.run_step(run_id, llm, settings)
        assert (outcome.next_step, outcome.reason) == (False, "paused for pairing")
        assert [s.status for s in steps_of(run_id)] == ["applied"]  # the turn itself finished
        run = run_of(engine, run_id)
        assert run.paused_by == "alice" and run.counters.get(turns.PARKED) is True
        llm.close()
        db.session.remove()
