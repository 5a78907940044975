"""A provider that answers without end never fills a worker's memory (a real HTTP server): a stream is read up to
the reply limit and no further, and an answer body or a stream line larger than a reply may be is not read to its
end either. Each comes back as a reply cut at the limit (finish_reason "length"), which the loop records as too
large and tells the LLM so; any other oversized answer (a model list) is a `bad_response` error."""
from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from app.llm import LLMClient, LLMError

LIMIT = 10_000
SENT_AT_MOST = 30_000_000  # what the server may write before it sees the hang-up (the kernel buffers some MB)
MESSAGES = [{"role": "user", "content": "go"}]


class Flood:
    """`mode`: "stream" (SSE pieces without end), "line" (one SSE line without end) or "body" (a JSON body without
    end); counts what it managed to send before the client hung up."""

    def __init__(self, mode: str) -> None:
        self.mode, self.sent = mode, 0
        flood = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's name)
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                self.send_response(200)
                kind = "application/json" if flood.mode == "body" else "text/event-stream"
                self.send_header("Content-Type", kind)
                self.end_headers()
                piece = json.dumps({"choices": [{"delta": {"content": "x" * 1000}}]})
                chunks = {"stream": f"data: {piece}\n\n".encode(), "line": b"data: " + b"y" * 65_536,
                          "body": b'{"choices": [{"message": {"content": "' + b"z" * 65_536}[flood.mode]
                try:
                    for _ in range(100_000 if flood.mode == "stream" else 2_000):  # over 100 MB in all
                        self.wfile.write(chunks)
                        flood.sent += len(chunks)
                except (BrokenPipeError, ConnectionResetError):
                    pass

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"

    def __enter__(self) -> Flood:
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_a_stream_is_read_up_to_the_limit_and_no_further():
    with Flood("stream") as flood:
        client = LLMClient(flood.url, model="m", max_retries=0, max_reply_chars=LIMIT)
        completion = client.chat(MESSAGES, stream=True)
        client.close()
    assert len(completion.content) == LIMIT + 1 and completion.finish_reason == "length"
    assert flood.sent < SENT_AT_MOST  # it hung up long before the 105 MB the server had to send


@pytest.mark.parametrize("mode,stream", [("line", True), ("body", False), ("body", True)])
def test_an_answer_larger_than_a_reply_may_be_is_cut_unread(mode, stream):
    with Flood(mode) as flood:
        client = LLMClient(flood.url, model="m", max_retries=0, max_reply_chars=LIMIT)
        completion = client.chat(MESSAGES, stream=stream)
        client.close()
    assert len(completion.content) == LIMIT + 1 and completion.finish_reason == "length"
    assert flood.sent < SENT_AT_MOST


def test_an_oversized_answer_that_is_not_a_reply_is_an_error():
    with Flood("body") as flood:
        flood.server.RequestHandlerClass.do_GET = flood.server.RequestHandlerClass.do_POST
        client = LLMClient(flood.url, max_retries=0, max_reply_chars=LIMIT)
        with pytest.raises(LLMError) as refused:
            client.resolve_model()  # GET /models, to learn the provider's first model
        client.close()
    assert refused.value.kind == "bad_response" and "larger than" in refused.value.message


def test_without_a_limit_a_normal_reply_is_whole():
    with Flood("stream") as flood:
        flood.server.RequestHandlerClass.do_POST = _one_reply
        client = LLMClient(flood.url, model="m", max_retries=0)
        assert client.chat(MESSAGES, stream=True).content == "hello"
        assert client.chat(MESSAGES).content == "hello"
        client.close()


def _one_reply(handler: BaseHTTPRequestHandler) -> None:
    payload = json.loads(handler.rfile.read(int(handler.headers.get("Content-Length") or 0)))
    handler.send_response(200)
    if payload.get("stream"):
        handler.send_header("Content-Type", "text/event-stream")
        handler.end_headers()
        handler.wfile.write(b'data: {"choices": [{"delta": {"content": "hel"}}]}\r\n\r\n'
                            b'data: {"choices": [{"delta": {"content": "lo"}, "finish_reason": "stop"}]}\n\n'
                            b"data: [DONE]\n\n")
    else:
        body = json.dumps({"choices": [{"message": {"content": "hello"}}]}).encode()
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        handler.wfile.write(body)
