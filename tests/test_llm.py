"""The provider client against a real OpenAI-compatible HTTP server running in a thread (no mocks)."""
from __future__ import annotations

import json
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest

from app.llm import LLMClient, LLMError

API_KEY = "sk-test-secret-0123456789abcdef"
MESSAGES = [{"role": "system", "content": "You are terse."}, {"role": "user", "content": "Say hello, please."}]
DONE = "data: [DONE]\n\n"
KEEP_ALIVE = ": keep-alive\n\n"


@dataclass
class Reply:
    """One planned answer of the fake provider."""

    status: int = 200
    body: Any = None  # a dict or list is sent as JSON, a str as text/html
    headers: dict[str, str] = field(default_factory=dict)
    events: list[str] | None = None  # raw SSE text, sent as a chunked text/event-stream
    delay_s: float = 0.0  # before the status line
    event_delay_s: float = 0.0  # between two events
    drop: bool = False  # close the connection mid-body, without the last chunk


@dataclass
class Request:
    method: str
    path: str
    headers: dict[str, str]
    body: Any


class FakeProvider(ThreadingHTTPServer):
    """An OpenAI-compatible server that answers each request with the next planned Reply and records it."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), ProviderHandler)
        self.base_url = f"http://127.0.0.1:{self.server_address[1]}/v1"
        self.replies: deque[Reply] = deque()
        self.requests: list[Request] = []
        self.stopping = threading.Event()  # wakes handlers that are "slow" when the test ends

    def plan(self, *replies: Reply) -> None:
        self.replies.extend(replies)

    def next_reply(self) -> Reply:
        try:
            return self.replies.popleft()
        except IndexError:
            return Reply(500, {"error": {"message": "the test planned no reply for this request"}})


class ProviderHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    server: FakeProvider

    def do_GET(self) -> None:
        self.answer()

    def do_POST(self) -> None:
        self.answer()

    def log_message(self, format: str, *args: Any) -> None:  # keep test output quiet
        pass

    def answer(self) -> None:
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        headers = {name.lower(): value for name, value in self.headers.items()}
        self.server.requests.append(Request(self.command, self.path, headers, json.loads(raw) if raw else None))
        reply = self.server.next_reply()
        try:
            self.send(reply)
        except (BrokenPipeError, ConnectionResetError):  # the client gave up first (timeout tests)
            self.close_connection = True

    def send(self, reply: Reply) -> None:
        if reply.delay_s and self.server.stopping.wait(reply.delay_s):
            return
        self.send_response(reply.status)
        for name, value in reply.headers.items():
            self.send_header(name, value)
        if reply.events is None:
            is_text = isinstance(reply.body, str)
            payload = reply.body.encode() if is_text else json.dumps(reply.body).encode()
            self.send_header("Content-Type", "text/html" if is_text else "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)
            return
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        for index, event in enumerate(reply.events):
            if index and reply.event_delay_s and self.server.stopping.wait(reply.event_delay_s):
                return
            data = event.encode()
            self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
            self.wfile.flush()
        if reply.drop:
            self.close_connection = True  # the socket closes with the chunked body unfinished
        else:
            self.wfile.write(b"0\r\n\r\n")


def completion_body(content: str | None, usage: tuple[int, int] | None = (12, 3)) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": "chatcmpl-1", "object": "chat.completion", "model": "test-model-2024",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}],
    }
    if usage:
        body["usage"] = {"prompt_tokens": usage[0], "completion_tokens": usage[1], "total_tokens": sum(usage)}
    return body


def event(payload: dict[str, Any]) -> str:
    return f"data: {json.dumps(payload)}\n\n"


def chunk(content: str | None = None, finish: str | None = None) -> str:
    delta = {"content": content} if content is not None else {"role": "assistant"}
    return event({"object": "chat.completion.chunk", "model": "test-model-2024",
                  "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})


def usage_chunk(prompt: int, completion: int) -> str:
    return event({"object": "chat.completion.chunk", "choices": [],
                  "usage": {"prompt_tokens": prompt, "completion_tokens": completion}})


@pytest.fixture()
def provider() -> Iterator[FakeProvider]:
    server = FakeProvider()
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield server
    server.stopping.set()
    server.shutdown()
    server.server_close()
    thread.join()


@pytest.fixture()
def sleeps() -> list[float]:
    return []


@pytest.fixture()
def make_client(provider: FakeProvider, sleeps: list[float]) -> Iterator[Callable[..., LLMClient]]:
    """LLMClients pointed at the fake provider, recording their backoff sleeps instead of sleeping."""
    clients: list[LLMClient] = []

    def make(**overrides: Any) -> LLMClient:
        options = {"api_key": API_KEY, "model": "test-model", "sleep": sleeps.append, "backoff_s": 0.1} | overrides
        client = LLMClient(options.pop("base_url", provider.base_url + "/"), **options)
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()


@pytest.fixture()
def llm(make_client: Callable[..., LLMClient]) -> LLMClient:
    return make_client()


def test_chat_returns_content_usage_and_sends_the_request(provider, llm):
    provider.plan(Reply(body=completion_body("Hello!")))
    completion = llm.chat(MESSAGES, max_tokens=50, temperature=0.2)
    assert (completion.content, completion.model, completion.finish_reason) == ("Hello!", "test-model-2024", "stop")
    assert (completion.prompt_tokens, completion.completion_tokens, completion.estimated_usage) == (12, 3, False)
    assert completion.latency_ms > 0
    [request] = provider.requests
    assert (request.method, request.path) == ("POST", "/v1/chat/completions")
    assert request.headers["authorization"] == f"Bearer {API_KEY}"
    assert request.body == {"model": "test-model", "messages": MESSAGES, "stream": False,
                            "max_tokens": 50, "temperature": 0.2}


def test_missing_usage_is_estimated_from_characters(provider, llm):
    provider.plan(Reply(body=completion_body("x" * 20, usage=None)), Reply(body=completion_body(None, usage=None)))
    completion = llm.chat([{"role": "user", "content": "y" * 40}])
    assert (completion.prompt_tokens, completion.completion_tokens, completion.estimated_usage) == (10, 5, True)
    empty = llm.chat([{"role": "user", "content": "hi"}])
    assert (empty.content, empty.prompt_tokens, empty.completion_tokens) == ("", 1, 1)
    assert "max_tokens" not in provider.requests[0].body and "temperature" not in provider.requests[0].body


def test_stream_delivers_deltas_in_order_as_they_arrive(provider, llm):
    provider.plan(Reply(event_delay_s=0.05, events=[
        KEEP_ALIVE, chunk(), chunk("Hel"), "\n", chunk(""), chunk("lo"), chunk(" world", finish="stop"),
        usage_chunk(7, 4), DONE,
    ]))
    arrivals: list[tuple[str, float]] = []
    completion = llm.chat(MESSAGES, stream=True, on_delta=lambda piece: arrivals.append((piece, time.monotonic())))
    assert [piece for piece, _ in arrivals] == ["Hel", "lo", " world"]
    assert arrivals[-1][1] - arrivals[0][1] >= 0.1  # delivered while the stream was still running
    assert (completion.content, completion.finish_reason) == ("Hello world", "stop")
    assert completion.model == "test-model-2024"
    assert (completion.prompt_tokens, completion.completion_tokens, completion.estimated_usage) == (7, 4, False)
    [request] = provider.requests
    assert request.body["stream"] is True and request.body["stream_options"] == {"include_usage": True}
    assert request.headers["accept"] == "text/event-stream"


def test_stream_without_usage_is_estimated(provider, llm):
    provider.plan(Reply(events=[chunk("abcdefgh", finish="stop"), DONE]))
    completion = llm.chat([{"role": "user", "content": "z" * 16}], stream=True)
    assert (completion.prompt_tokens, completion.completion_tokens, completion.estimated_usage) == (4, 2, True)


@pytest.mark.parametrize(("header", "expected_sleep"), [("2", 2.0), ("120", 30.0)])
def test_rate_limit_waits_for_retry_after_then_succeeds(provider, llm, sleeps, header, expected_sleep):
    provider.plan(Reply(429, {"error": {"message": "slow down"}}, headers={"Retry-After": header}),
                  Reply(body=completion_body("ok")))
    assert llm.chat(MESSAGES).content == "ok"
    assert sleeps == [expected_sleep]
    assert len(provider.requests) == 2


@pytest.mark.parametrize("stream", [False, True])
def test_unavailable_twice_then_success_backs_off_exponentially(provider, llm, sleeps, stream):
    ok = Reply(events=[chunk("ok", finish="stop"), DONE]) if stream else Reply(body=completion_body("ok"))
    provider.plan(Reply(503, {"error": "overloaded"}), Reply(503, {"error": "overloaded"}), ok)
    assert llm.chat(MESSAGES, stream=stream).content == "ok"
    assert len(provider.requests) == 3
    assert len(sleeps) == 2
    assert 0.1 <= sleeps[0] <= 0.125 and 0.2 <= sleeps[1] <= 0.25  # backoff_s * 2**attempt, jitter <= 25%


def test_exhausted_retries_raise_the_last_error(provider, make_client, sleeps):
    provider.plan(Reply(502, "bad gateway"), Reply(500, "oops"), Reply(504, "gateway timeout"))
    with pytest.raises(LLMError) as caught:
        make_client(max_retries=2).chat(MESSAGES)
    assert (caught.value.kind, caught.value.status, caught.value.retryable) == ("provider", 504, True)
    assert "504" in str(caught.value) and "gateway timeout" in str(caught.value)
    assert len(provider.requests) == 3 and len(sleeps) == 2


@pytest.mark.parametrize("drop", [False, True], ids=["ended-without-done", "connection-dropped"])
def test_cut_stream_is_a_provider_error_not_retried_after_text(provider, make_client, drop):
    provider.plan(Reply(events=[chunk("Hel"), chunk("lo")], drop=drop))
    deltas: list[str] = []
    with pytest.raises(LLMError) as caught:
        make_client(max_retries=3).chat(MESSAGES, stream=True, on_delta=deltas.append)
    assert (caught.value.kind, caught.value.retryable) == ("provider", False)
    assert deltas == ["Hel", "lo"] and len(provider.requests) == 1  # no second copy of the text


def test_stream_failing_before_any_text_is_retried(provider, llm, sleeps):
    provider.plan(Reply(status=503, body={"error": "busy"}), Reply(events=[chunk("Hello", finish="stop"), DONE]))
    deltas: list[str] = []
    assert llm.chat(MESSAGES, stream=True, on_delta=deltas.append).content == "Hello"
    assert deltas == ["Hello"] and len(sleeps) == 1


def test_server_ignoring_stream_answers_json(provider, llm):
    provider.plan(Reply(body=completion_body("plain JSON reply")))
    deltas: list[str] = []
    completion = llm.chat(MESSAGES, stream=True, on_delta=deltas.append)
    assert completion.content == "plain JSON reply" and deltas == ["plain JSON reply"]


def test_stream_ending_after_finish_reason_without_done_is_accepted(provider, llm):
    provider.plan(Reply(events=[chunk("Hi"), chunk(" there", finish="length")]))
    completion = llm.chat(MESSAGES, stream=True)
    assert (completion.content, completion.finish_reason) == ("Hi there", "length")


def test_error_event_inside_a_stream_is_classified(provider, make_client):
    provider.plan(Reply(events=[event({"error": {"message": "context window exceeded"}})]))
    with pytest.raises(LLMError) as caught:
        make_client(max_retries=0).chat(MESSAGES, stream=True)
    assert caught.value.kind == "context_length"


def test_models_and_resolve_model_asks_once(provider, make_client):
    models = {"object": "list", "data": [{"id": "alpha", "object": "model"}, {"id": "beta", "object": "model"}]}
    provider.plan(Reply(body=models), Reply(body=models), Reply(body=completion_body("hi")))
    client = make_client(model=None, api_key=None)
    assert client.models() == ["alpha", "beta"]
    assert client.resolve_model() == "alpha"
    assert client.resolve_model() == "alpha"
    client.chat(MESSAGES)
    assert [(r.method, r.path) for r in provider.requests] == [
        ("GET", "/v1/models"), ("GET", "/v1/models"), ("POST", "/v1/chat/completions")]
    assert provider.requests[-1].body["model"] == "alpha"
    assert all("authorization" not in r.headers for r in provider.requests)


def test_configured_model_needs_no_request(provider, llm):
    assert llm.resolve_model() == "test-model"
    assert provider.requests == []


@pytest.mark.parametrize("body", [{"object": "list", "data": []}, {"models": ["a"]}])
def test_resolve_model_without_usable_models_is_bad_response(provider, make_client, body):
    provider.plan(Reply(body=body))
    with pytest.raises(LLMError) as caught:
        make_client(model=None).resolve_model()
    assert caught.value.kind == "bad_response"


def test_close_leaves_an_injected_client_open(provider):
    with httpx.Client() as http:
        provider.plan(Reply(body=completion_body("via injected client")))
        llm = LLMClient(provider.base_url, model="m", http=http)
        assert llm.chat(MESSAGES).content == "via injected client"
        llm.close()
        assert not http.is_closed
    owned = LLMClient(provider.base_url, model="m")
    owned.close()
    assert owned._http.is_closed
