"""An independently written OpenAI-compatible server for tests: WSGI (wsgiref), no streaming (it ignores
`stream`), a required API key, replies without code fences, and its own tiny policy: write a file,
commit, finish. It shares no code with app/scripted_llm."""
from __future__ import annotations

import json
import threading
from socketserver import ThreadingMixIn
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server


class _ThreadingServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _Quiet(WSGIRequestHandler):
    def log_message(self, *args):
        pass


class FakeOpenAI:
    def __init__(self, api_key: str, model: str = "independent-1") -> None:
        self.api_key, self.model, self.calls = api_key, model, []
        self.server: WSGIServer = make_server("127.0.0.1", 0, self.app, server_class=_ThreadingServer,
                                                 handler_class=_Quiet)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_port}/v1"

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()

    def policy(self, messages: list[dict]) -> dict:
        turns = sum(1 for m in messages if m["role"] == "assistant")
        if turns == 0:
            return {"actions": [{"type": "write_file", "path": "independent.txt", "content": "hello\n"}]}
        if turns == 1:
            return {"actions": [{"type": "git_commit", "message": "independent work"}], "notes": "commit"}
        return {"actions": [{"type": "done", "reason": "independent server says done"}]}

    def app(self, environ, start_response):
        def answer(status: str, body: dict):
            data = json.dumps(body).encode()
            start_response(status, [("Content-Type", "application/json"), ("Content-Length", str(len(data)))])
            return [data]

        if environ.get("HTTP_AUTHORIZATION") != f"Bearer {self.api_key}":
            return answer("401 Unauthorized", {"error": {"message": "bad key"}})
        path = environ["PATH_INFO"]
        if path == "/v1/models":
            return answer("200 OK", {"data": [{"id": self.model}]})
        if path != "/v1/chat/completions":
            return answer("404 Not Found", {"error": {"message": "no such route"}})
        size = int(environ.get("CONTENT_LENGTH") or 0)
        request = json.loads(environ["wsgi.input"].read(size))
        self.calls.append(request)
        content = json.dumps(self.policy(request["messages"]))
        return answer("200 OK", {"id": "x", "object": "chat.completion", "model": self.model,
                                 "choices": [{"index": 0, "finish_reason": "stop",
                                              "message": {"role": "assistant", "content": content}}],
                                 "usage": {"prompt_tokens": 10, "completion_tokens": 5}})
