"""The HTTP side of the scripted provider: the OpenAI routes, and the server state they share.

`ProviderHTTPServer` is a ThreadingHTTPServer (one daemon thread per connection, a deep listen backlog)
that holds the script, the optional API key, the request log and the open connections. `ChatHandler`
speaks HTTP/1.1 keep-alive with Nagle off: with it on, the header write and body write of every reply
wait ~40 ms for the client's delayed ACK. Streams use chunked encoding so the connection survives them.
"""
from __future__ import annotations

import hmac
import json
import socket
import sys
import threading
import time
from collections import deque
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from app.scripted_llm import completions
from app.scripted_llm.script import RequestContext, Script

REQUEST_LOG_SIZE = 1000


class ProviderHTTPServer(ThreadingHTTPServer):
    """The listening socket plus what every handler thread shares; all shared state is behind a lock."""

    daemon_threads = True
    request_queue_size = 512  # the listen() backlog: 100+ clients connect at once in benchmarks

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that hangs up mid-request is normal (timeouts, shutdowns): not worth a traceback."""
        if isinstance(sys.exc_info()[1], ConnectionError):
            return
        super().handle_error(request, client_address)

    def __init__(self, address: tuple[str, int], script: Script, *, api_key: str | None = None,
                 latency_ms: int | None = None) -> None:
        self.script = script
        self.api_key = api_key
        self.latency_ms = script.latency_ms if latency_ms is None else latency_ms
        self.lock = threading.Lock()
        self.requests: deque[dict[str, Any]] = deque(maxlen=REQUEST_LOG_SIZE)
        self.connections: set[socket.socket] = set()
        super().__init__(address, ChatHandler)

    def authorized(self, header: str | None) -> bool:
        if self.api_key is None:
            return True
        return hmac.compare_digest((header or "").encode(), f"Bearer {self.api_key}".encode())

    def record(self, request: dict[str, Any]) -> None:
        with self.lock:
            self.requests.append(request)

    def track(self, connection: socket.socket, open_: bool) -> None:
        with self.lock:
            if open_:
                self.connections.add(connection)
            else:
                self.connections.discard(connection)

    def cut_connections(self) -> None:
        """Shut down every open connection, idle keep-alive or mid-reply, so no handler thread lingers."""
        with self.lock:
            connections = list(self.connections)
        for connection in connections:
            try:
                connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


class ChatHandler(BaseHTTPRequestHandler):
    """One connection: routes, auth, and the scripted reply (whole, streamed, or a fault)."""

    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    server_version = "LoomScriptedLLM/1.0"
    timeout = 300  # an idle keep-alive connection is dropped after this many seconds
    server: ProviderHTTPServer

    def setup(self) -> None:
        super().setup()
        self.server.track(self.connection, open_=True)

    def finish(self) -> None:
        try:
            super().finish()
        except OSError:
            pass
        finally:
            self.server.track(self.connection, open_=False)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the stdlib's signature
        """Quiet: a provider under benchmark load must not spend its time printing access logs."""

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_PUT(self) -> None:
        self._dispatch("PUT")

    def do_PATCH(self) -> None:
        self._dispatch("PATCH")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    def _dispatch(self, method: str) -> None:
        provider = self.server
        try:
            body = self._read_body()
            path = self.path.split("?", 1)[0].rstrip("/") or "/"
            if body is None:
                self.close_connection = True
                self._send_json(400, completions.error_body("cannot read the request body"))
            elif path == "/health":
                self._send_json(200, {"status": "ok"})
            elif not provider.authorized(self.headers.get("Authorization")):
                self._send_json(401, completions.error_body("invalid api key"))
            elif method == "GET" and path == "/v1/models":
                self._send_json(200, {"object": "list", "data": [
                    {"id": provider.script.model, "object": "model", "created": 0, "owned_by": "loom"}]})
            elif method == "POST" and path == "/v1/chat/completions":
                self._chat_completion(body)
            else:
                self._send_json(404, completions.error_body(f"no route for {method} {path}", code="not_found"))
        except OSError:  # the client went away (or stop() cut the connection) mid-reply
            self.close_connection = True

    def _read_body(self) -> bytes | None:
        """The request body (Content-Length or chunked); None when it cannot be framed."""
        try:
            if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
                parts = []
                while size := int(self.rfile.readline().split(b";")[0].strip() or b"0", 16):
                    if size < 0:
                        return None
                    parts.append(self.rfile.read(size))
                    self.rfile.readline()
                while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                    pass  # trailers
                return b"".join(parts)
            length = int(self.headers.get("Content-Length") or 0)
            return self.rfile.read(length) if length >= 0 else None
        except ValueError:
            return None

    def _chat_completion(self, body: bytes) -> None:
        provider = self.server
        try:
            request = json.loads(body)
        except ValueError:
            self._send_json(400, completions.error_body("request body is not valid JSON"))
            return
        if not isinstance(request, dict) or not isinstance(request.get("messages"), list):
            self._send_json(400, completions.error_body("'messages' must be a list", code="invalid_messages"))
            return
        provider.record(request)
        choice = provider.script.choose(RequestContext.from_messages(request["messages"]))
        fault = choice.fault
        delay_ms = provider.latency_ms + (fault.delay_ms if fault else 0)
        if delay_ms:
            time.sleep(delay_ms / 1000)
        model = request.get("model") if isinstance(request.get("model"), str) and request["model"] else None
        model = model or provider.script.model
        stream = request.get("stream") is True
        if fault is not None and fault.status is not None:
            headers = {"Retry-After": fault.retry_after} if fault.retry_after is not None else {}
            message = fault.message or f"scripted fault: HTTP {fault.status}"
            self._send_json(fault.status, completions.error_body(
                message, completions.error_type_for(fault.status), fault.status), headers)
        elif fault is not None and fault.invalid_json_body is not None:
            if stream:
                self._send_stream([f"data: {fault.invalid_json_body}\n\n", "data: [DONE]\n\n"], None)
            else:
                self._send_bytes(200, fault.invalid_json_body.encode(), "application/json")
        else:
            truncate = fault.truncate if fault is not None else None
            options = request.get("stream_options")
            with_usage = stream and isinstance(options, dict) and options.get("include_usage") is True
            token_usage = completions.usage(request["messages"], choice.content)
            if stream:
                chunks = completions.stream_chunks(choice.content, model, token_usage if with_usage else None)
                events = [f"data: {json.dumps(chunk)}\n\n" for chunk in chunks] + ["data: [DONE]\n\n"]
                self._send_stream(events, truncate)
            else:
                self._send_json(200, completions.completion_body(choice.content, model, token_usage),
                                truncate_half=truncate is not None)

    def _send_json(self, status: int, payload: dict[str, Any], headers: dict[str, str] | None = None,
                   truncate_half: bool = False) -> None:
        self._send_bytes(status, json.dumps(payload).encode(), "application/json", headers, truncate_half)

    def _send_bytes(self, status: int, data: bytes, content_type: str, headers: dict[str, str] | None = None,
                    truncate_half: bool = False) -> None:
        """One reply with a Content-Length; `truncate_half` sends half of it and drops the connection."""
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        if truncate_half:
            self.wfile.write(data[:len(data) // 2])
            self.close_connection = True
        else:
            self.wfile.write(data)

    def _send_stream(self, events: list[str], truncate: int | None) -> None:
        """Server-sent events in chunked encoding; `truncate` drops the connection after that many events."""
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        pause = self.server.script.stream_chunk_delay_ms / 1000
        for index, event in enumerate(events):
            if truncate is not None and index >= truncate:
                self.close_connection = True  # no terminating chunk: the client sees a cut stream
                return
            if pause and index:
                time.sleep(pause)
            data = event.encode()
            self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        self.wfile.write(b"0\r\n\r\n")
