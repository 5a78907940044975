"""The transactions around an LLM call, with the real client against the scripted LLM over HTTP and the real
database: none is held open while the call is out (with or without budgets), and the reply, its LLMRequest
row and the budget settlement commit together, the call still counted when another delivery's reply wins."""
from __future__ import annotations

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.extensions import db
from app.llm import LLMClient
from app.models import Step
from app.services import loop
from app.services.loop import LoopSettings
from tests.test_budgets import SPEND_SCRIPT, requests_of
from tests.test_engine import Client


class WatchfulLLM(LLMClient):
    """The real client; it notes, as each call is made, whether the worker holds a transaction or a connection."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.seen: list[tuple[bool, int]] = []

    def chat(self, *args, **kwargs):
        self.seen.append((db.session().in_transaction(), db.engine.pool.checkedout()))
        return super().chat(*args, **kwargs)


@pytest.mark.parametrize("with_budgets", [False, True])
def test_the_llm_is_called_holding_no_transaction_nor_connection(make_engine, with_budgets):
    """Under PgBouncer's transaction pooling a transaction left open over a call of many seconds would pin a
    server connection for that long; the budget lookup before the call must not leave one open."""
    engine = make_engine(SPEND_SCRIPT, AUTO_DISPATCH=False)
    api = Client(engine.app)
    settings = LoopSettings(data_dir=str(engine.data_dir))
    llm = WatchfulLLM(engine.llm.url, max_retries=0)
    with engine.app.app_context():
        project = api("post", "/projects", json={"name": "no-open-transaction"})
        bead = api("post", "/beads", json={"project_id": project["id"], "title": "spend-twice"})
        if with_budgets:
            api("put", f"/projects/{project['id']}/budget", json={"total_tokens": 1_000_000})
        agent = api("get", f"/agents?project_id={project['id']}")["items"][0]
        run = loop.start_run(bead["id"], agent["id"], settings)
        for _ in range(2):
            assert loop.run_step(run.id, llm, settings).next_step
        assert llm.seen == [(False, 0), (False, 0)]
        assert len(requests_of(api, bead["id"])) == 2  # both calls were made and recorded
    llm.close()


class OvertakenLLM(LLMClient):
    """The real client; while its first call is out, another delivery of the same step stores its reply first."""

    def __init__(self, url: str, run_id: int, bead_id: int) -> None:
        super().__init__(url, max_retries=0)
        self.run_id, self.bead_id = run_id, bead_id

    def chat(self, *args, **kwargs):
        completion = super().chat(*args, **kwargs)
        with Session(db.engine) as other:  # the other worker's own connection and transaction
            other.add(Step(run_id=self.run_id, bead_id=self.bead_id, seq=1, response='{"actions": []}'))
            other.commit()
        return completion


def test_a_call_overtaken_by_another_delivery_still_counts(make_engine):
    """The reply, its LLMRequest row and the budget settlement commit together; when the reply loses to another
    delivery's, the call is recorded and settled all the same."""
    engine = make_engine(SPEND_SCRIPT, AUTO_DISPATCH=False)
    api = Client(engine.app)
    settings = LoopSettings(data_dir=str(engine.data_dir))
    with engine.app.app_context():
        project = api("post", "/projects", json={"name": "overtaken"})
        bead = api("post", "/beads", json={"project_id": project["id"], "title": "spend-raced"})
        api("put", f"/projects/{project['id']}/budget", json={"total_tokens": 1_000_000})
        agent = api("get", f"/agents?project_id={project['id']}")["items"][0]
        run = loop.start_run(bead["id"], agent["id"], settings)
        llm = OvertakenLLM(engine.llm.url, run.id, bead["id"])
        outcome = loop.run_step(run.id, llm, settings)
        assert (outcome.next_step, outcome.reason) == (False, "duplicate delivery")
        steps = db.session.scalars(select(Step).where(Step.run_id == run.id)).all()
        assert [(s.seq, s.response) for s in steps] == [(1, '{"actions": []}')]  # the other delivery's reply
        requests = requests_of(api, bead["id"])
        assert len(requests) == 1 and requests[0]["prompt_tokens"] > 0
        budget = api("get", f"/projects/{project['id']}/budget")
        assert (budget["reserved_tokens"], budget["spent_tokens"]) == (
            0, requests[0]["prompt_tokens"] + requests[0]["completion_tokens"])
        llm.close()
