"""How the provider client classifies a failed call (app/llm_errors.py): auth, context length, other 4xx,
timeouts, refused connections and answers of the wrong shape, never showing the API key; against the real HTTP
server of tests/test_llm.py."""
from __future__ import annotations

import pickle
import socket
import time

import pytest

from app.llm import LLMError
from tests.test_llm import (API_KEY, DONE, MESSAGES, Reply, chunk, completion_body, llm, make_client,  # noqa: F401
                            provider, sleeps)


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("status", [401, 403])
def test_auth_error_is_not_retried_and_never_shows_the_key(provider, llm, sleeps, status, stream):  # noqa: F811
    provider.plan(Reply(status, {"error": {"message": f"Incorrect API key provided: {API_KEY}."}}))
    with pytest.raises(LLMError) as caught:
        llm.chat(MESSAGES, stream=stream)
    error = caught.value
    assert (error.kind, error.status, error.retryable) == ("auth", status, False)
    assert str(status) in str(error) and "Incorrect API key" in str(error)
    assert API_KEY not in str(error) and API_KEY not in repr(error) and API_KEY[:12] not in error.message
    assert len(provider.requests) == 1 and sleeps == []


@pytest.mark.parametrize("stream", [False, True])
def test_context_length_400_is_its_own_kind(provider, llm, sleeps, stream):  # noqa: F811
    message = "This model's maximum context length is 8192 tokens. However, you requested 9000 tokens."
    provider.plan(Reply(400, {"error": {"message": message, "code": "context_length_exceeded"}}))
    with pytest.raises(LLMError) as caught:
        llm.chat(MESSAGES, stream=stream)
    assert (caught.value.kind, caught.value.status, caught.value.retryable) == ("context_length", 400, False)
    assert len(provider.requests) == 1 and sleeps == []


def test_other_4xx_is_a_provider_error_without_retry(provider, llm, sleeps):  # noqa: F811
    provider.plan(Reply(400, {"error": {"message": "temperature must be <= 2. " + "x" * 1000}}))
    with pytest.raises(LLMError) as caught:
        llm.chat(MESSAGES, temperature=5)
    assert (caught.value.kind, caught.value.status, caught.value.retryable) == ("provider", 400, False)
    assert "temperature must be" in str(caught.value) and len(str(caught.value)) < 400  # a short excerpt
    assert sleeps == []


@pytest.mark.parametrize("reply", [
    Reply(delay_s=2, body=completion_body("too late")),
    Reply(event_delay_s=2, events=[chunk("first"), chunk("too late", finish="stop"), DONE]),
], ids=["before-headers", "mid-stream"])
def test_slow_server_times_out(provider, make_client, reply):  # noqa: F811
    provider.plan(reply)
    client = make_client(timeout=0.5, max_retries=0)
    started = time.monotonic()
    with pytest.raises(LLMError) as caught:
        client.chat(MESSAGES, stream=bool(reply.events), on_delta=lambda piece: None)
    # Before any text arrived the call may be retried; once text was streamed, the loop redoes the turn.
    assert caught.value.kind == "timeout"
    assert time.monotonic() - started < 1.5


def test_connection_refused_is_retried_then_raised(make_client, sleeps):  # noqa: F811
    with socket.socket() as probe:  # a port that was free a moment ago: nothing listens on it
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(LLMError) as caught:
        make_client(base_url=f"http://127.0.0.1:{port}/v1", max_retries=1).chat(MESSAGES)
    assert (caught.value.kind, caught.value.status, caught.value.retryable) == ("connection", None, True)
    assert len(sleeps) == 1
    assert API_KEY not in str(caught.value)


@pytest.mark.parametrize("body", ["<html>welcome to the captive portal</html>", {"unexpected": "shape"},
                                  {"choices": []}, {"choices": [{"message": {"content": 42}}]}])
def test_ok_status_with_unexpected_body_is_bad_response(provider, llm, sleeps, body):  # noqa: F811
    provider.plan(Reply(body=body))
    with pytest.raises(LLMError) as caught:
        llm.chat(MESSAGES)
    assert (caught.value.kind, caught.value.retryable) == ("bad_response", False)
    assert len(provider.requests) == 1 and sleeps == []


def test_stream_with_a_non_json_event_is_bad_response(provider, llm):  # noqa: F811
    provider.plan(Reply(events=[chunk("Hi"), "data: {not json\n\n", DONE]))
    with pytest.raises(LLMError) as caught:
        llm.chat(MESSAGES, stream=True)
    assert caught.value.kind == "bad_response"


def test_llm_error_survives_pickling():
    error = pickle.loads(pickle.dumps(LLMError("rate_limit", "HTTP 429", 429, True)))
    assert (error.kind, error.message, error.status, error.retryable) == ("rate_limit", "HTTP 429", 429, True)
    with pytest.raises(ValueError):
        LLMError("nonsense", "unknown kinds are refused")
