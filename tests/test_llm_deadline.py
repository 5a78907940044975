"""Each attempt of a chat() ends within the client's timeout, and the whole call within the caller's deadline,
against a real HTTP provider (tests/test_llm.py's fake): a provider that trickles a reply forever, or hangs on
every retry, no longer holds a worker thread for many times the step timeout (the lease ran out meanwhile and
Ralph started the bead again elsewhere)."""
from __future__ import annotations

import time

import pytest

from app.llm import LLMError
from tests.test_llm import DONE, MESSAGES, Reply, chunk, completion_body, make_client, provider, sleeps  # noqa: F401

TRICKLE = Reply(event_delay_s=0.2, events=[chunk(" ") for _ in range(25)] + [chunk("end", finish="stop"), DONE])


def test_a_reply_that_trickles_on_past_the_timeout_is_cut_there(provider, make_client):  # noqa: F811
    provider.plan(TRICKLE)
    client = make_client(timeout=1.0, max_retries=3)
    pieces: list[str] = []
    started = time.monotonic()
    with pytest.raises(LLMError) as caught:
        client.chat(MESSAGES, stream=True, on_delta=pieces.append)
    elapsed = time.monotonic() - started
    assert caught.value.kind == "timeout" and "no complete reply within 1 s" in str(caught.value)
    assert 0.9 < elapsed < 2.0 and 2 <= len(pieces) < 25, (elapsed, len(pieces))
    assert len(provider.requests) == 1  # text went out: the turn is redone by the loop, not retried here


def test_retries_stop_at_the_calls_deadline(provider, make_client, sleeps):  # noqa: F811
    provider.plan(*[Reply(delay_s=2, body=completion_body("too late")) for _ in range(4)])
    client = make_client(timeout=0.6, max_retries=3, backoff_s=0.05)
    started = time.monotonic()
    with pytest.raises(LLMError) as caught:
        client.chat(MESSAGES, deadline_s=0.9)
    assert caught.value.kind == "timeout"
    assert time.monotonic() - started < 1.4  # 4 attempts of 0.6 s each without the deadline
    assert len(provider.requests) == 2  # the second attempt got what was left of the 0.9 s


def test_a_caller_may_ask_for_a_shorter_deadline(provider, make_client):  # noqa: F811
    provider.plan(TRICKLE)
    client = make_client(timeout=30.0, max_retries=0)
    started = time.monotonic()
    with pytest.raises(LLMError) as caught:
        client.chat(MESSAGES, stream=True, deadline_s=0.8)
    assert caught.value.kind == "timeout" and time.monotonic() - started < 1.8
