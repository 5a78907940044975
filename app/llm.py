"""OpenAI-compatible chat client: retries with backoff, SSE streaming, context trimming (errors: app/llm_errors.py)."""
from __future__ import annotations

import json
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import httpx

from app.llm_answers import Oversize, read_capped
from app.llm_answers import lines as answer_lines
from app.llm_context import content_chars, trim_messages
from app.llm_errors import ErrorReporter, LLMError, mentions_context_length

log = logging.getLogger(__name__)
T = TypeVar("T")

CHARS_PER_TOKEN = 4
STREAM_CALL = "POST /chat/completions (stream)"


@dataclass
class Completion:
    """One finished chat completion and what it cost."""

    content: str
    model: str
    prompt_tokens: int
    completion_tokens: int
    latency_ms: float
    finish_reason: str | None = None
    estimated_usage: bool = False  # the server sent no usage: tokens estimated at ~4 chars/token


class LLMClient:
    """Talks to one OpenAI-compatible endpoint (OpenAI, vLLM, Ollama, LiteLLM, ...) over an httpx client."""

    def __init__(self, base_url: str, api_key: str | None = None, model: str | None = None, *,
                 http: httpx.Client | None = None, timeout: float = 120.0, connect_timeout: float = 10.0,
                 max_retries: int = 3, backoff_s: float = 0.5, max_reply_chars: int | None = None,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        """`max_reply_chars`: a streamed reply is not read past this (it ends there with finish_reason "length"),
        and no answer body or stream line is held in memory past about eight times as many bytes."""
        self.base_url = base_url.rstrip("/")
        self.max_reply_chars = max_reply_chars
        self._max_body_bytes = None if max_reply_chars is None else max_reply_chars * 8 + 1_000_000
        self._api_key = api_key  # sent as a bearer header, never put in messages
        self._errors = ErrorReporter(api_key)
        self.model = model
        self.timeout = httpx.Timeout(timeout, connect=connect_timeout)
        self.call_seconds = float(timeout)  # one attempt of a chat() in all, however slowly the reply comes
        self._connect_timeout = connect_timeout
        self.max_retries = max(0, max_retries)
        self.backoff_s = backoff_s
        self._sleep = sleep
        self._owns_http = http is None
        self._http = http if http is not None else httpx.Client(timeout=self.timeout)
        self._resolved_model: str | None = None

    def close(self) -> None:
        """Close the httpx client if this object created it; an injected one belongs to the caller."""
        if self._owns_http:
            self._http.close()

    def models(self) -> list[str]:
        """The model ids the endpoint serves (GET /models)."""
        body = self._with_retries(lambda: self._request_json("GET", "/models"))
        try:
            return [str(item["id"]) for item in body["data"]]
        except (KeyError, TypeError) as exc:
            raise self._errors.shape_error("GET /models", body) from exc

    def resolve_model(self) -> str:
        """The configured model, or else the endpoint's first model (asked once, then cached)."""
        if self.model:
            return self.model
        if self._resolved_model is None:
            available = self.models()
            if not available:
                raise self._errors.error("bad_response", "GET /models: the provider lists no models")
            self._resolved_model = available[0]
        return self._resolved_model

    def chat(self, messages: list[dict], *, stream: bool = False, on_delta: Callable[[str], None] | None = None,
             max_tokens: int | None = None, temperature: float | None = None,
             deadline_s: float | None = None) -> Completion:
        """One completion; with stream=True every non-empty content piece goes to on_delta as it arrives.

        Each attempt ends within the client's timeout, however the provider trickles its reply, and the whole
        call, retries included, within `deadline_s` when given: a provider that hangs or never finishes its
        stream raises a `timeout` LLMError then."""
        deadline = time.monotonic() + max(0.1, deadline_s) if deadline_s is not None else None
        payload: dict[str, Any] = {"model": self.resolve_model(), "messages": messages, "stream": stream}
        if max_tokens is not None:
            payload["max_tokens"] = max_tokens
        if temperature is not None:
            payload["temperature"] = temperature
        if stream:
            payload["stream_options"] = {"include_usage": True}
            delivered: list[int] = [0]

            def counting(piece: str) -> None:
                delivered[0] += 1
                if on_delta:
                    on_delta(piece)

            def attempt() -> Completion:
                try:
                    return self._stream_once(payload, counting, self._attempt_deadline(deadline))
                except LLMError as error:
                    if delivered[0]:  # text already went out: the caller redoes the turn, we do not repeat it
                        error.retryable = False
                    raise
            return self._with_retries(attempt, deadline)
        return self._with_retries(lambda: self._complete_once(payload, self._attempt_deadline(deadline)), deadline)

    def _attempt_deadline(self, call_deadline: float | None) -> float:
        """When this attempt must end: the client's timeout from now, or the call's deadline if sooner."""
        ends = time.monotonic() + self.call_seconds
        return ends if call_deadline is None else min(ends, call_deadline)

    def _timeout_until(self, deadline: float | None) -> httpx.Timeout:
        """The per-read timeout, cut to what is left of the call's deadline."""
        if deadline is None:
            return self.timeout
        left = max(0.1, deadline - time.monotonic())
        return httpx.Timeout(min(self.call_seconds, left), connect=min(self._connect_timeout, left))

    def _request_json(self, method: str, path: str, payload: dict[str, Any] | None = None,
                      deadline: float | None = None) -> Any:
        what = f"{method} {path}"
        with self._errors.transport_errors(what), self._http.stream(
                method, f"{self.base_url}{path}", json=payload, headers=self._headers(),
                timeout=self._timeout_until(deadline)) as response:
            self._errors.raise_for_status(response, what)
            try:
                body = read_capped(response, self._max_body_bytes)
            except Oversize:
                if path == "/chat/completions":
                    raise  # a reply: the caller keeps its beginning and refuses it as too large
                too_big = f"{what}: the answer is larger than {self._max_body_bytes} bytes"
                raise self._errors.error("bad_response", too_big, response.status_code) from None
        try:
            return json.loads(body)
        except ValueError as exc:
            quoted = self._errors.excerpt(body.decode("utf-8", errors="replace"))
            raise self._errors.error("bad_response", f"{what}: HTTP {response.status_code}, body is not JSON: "
                                                     f"{quoted}", response.status_code) from exc

    def _oversize(self, big: Oversize, model: Any, usage: Any, payload: dict[str, Any], started: float
                  ) -> Completion:
        """A reply past max_reply_chars: its first max_reply_chars + 1 characters (for the record: the caller
        refuses it as too large), finish_reason "length"."""
        return self._completion(big.prefix[:(self.max_reply_chars or 0) + 1], model, usage, "length", payload,
                                started)

    def _unstreamed_reply(self, response: httpx.Response, payload: dict[str, Any],
                          on_delta: Callable[[str], None] | None, started: float) -> Completion:
        """A server that ignores `stream: true` and answers one JSON body: read it as a normal reply."""
        try:
            raw = read_capped(response, self._max_body_bytes)
        except Oversize as big:
            return self._oversize(big, None, None, payload, started)
        try:
            body = json.loads(raw)
        except ValueError as exc:
            text = raw.decode("utf-8", errors="replace")
            raise self._errors.error("bad_response", f"{STREAM_CALL}: body is not JSON: {self._errors.excerpt(text)}",
                                     response.status_code) from exc
        completion = self._completion_from_body(body, payload, started)
        if on_delta and completion.content:
            on_delta(completion.content)
        return completion

    def _complete_once(self, payload: dict[str, Any], deadline: float | None = None) -> Completion:
        started = time.monotonic()
        try:
            body = self._request_json("POST", "/chat/completions", payload, deadline)
        except Oversize as big:
            return self._oversize(big, None, None, payload, started)
        return self._completion_from_body(body, payload, started)

    def _completion_from_body(self, body: Any, payload: dict[str, Any], started: float) -> Completion:
        try:
            choice = body["choices"][0]
            content = choice["message"].get("content") or ""
            if not isinstance(content, str):
                raise TypeError("content is not a string")
        except (KeyError, IndexError, TypeError, AttributeError) as exc:
            raise self._errors.shape_error("POST /chat/completions", body) from exc
        return self._completion(content, body.get("model"), body.get("usage"), choice.get("finish_reason"),
                                payload, started)

    def _stream_once(self, payload: dict[str, Any], on_delta: Callable[[str], None] | None,
                     deadline: float | None = None) -> Completion:
        started = time.monotonic()
        pieces: list[str] = []
        model = usage = finish_reason = None
        done = too_long = False
        size = 0
        with self._errors.transport_errors(STREAM_CALL), self._http.stream(
                "POST", f"{self.base_url}/chat/completions", json=payload,
                headers=self._headers(stream=True), timeout=self._timeout_until(deadline)) as response:
            self._errors.raise_for_status(response, STREAM_CALL)
            if response.headers.get("content-type", "").startswith("application/json"):
                return self._unstreamed_reply(response, payload, on_delta, started)
            lines = answer_lines(response, self._max_body_bytes)
            while True:
                try:
                    line = next(lines)
                except StopIteration:
                    break
                except Oversize as big:  # one line of the stream is larger than a whole reply may be
                    pieces.append(big.prefix)
                    too_long = True
                    break
                if deadline is not None and time.monotonic() > deadline:  # it streams, but never finishes
                    raise self._errors.error("timeout", f"{STREAM_CALL}: no complete reply within "
                                                        f"{deadline - started:.0f} s ({len(pieces)} pieces so far)")
                if not line.startswith("data:"):
                    continue  # SSE comments (":keep-alive"), blank lines, other fields
                if (data := line[5:].strip()) == "[DONE]":
                    done = True
                    break
                chunk, piece, finish = self._parse_chunk(data)
                model = chunk.get("model") or model
                usage = chunk.get("usage") or usage
                finish_reason = finish or finish_reason
                if piece:
                    pieces.append(piece)
                    size += len(piece)
                    if on_delta:
                        on_delta(piece)
                    if self.max_reply_chars is not None and size > self.max_reply_chars:
                        too_long = True  # read no further: what came is all the caller may keep anyway
                        break
        if too_long:
            return self._oversize(Oversize("".join(pieces)), model, usage, payload, started)
        if not done and finish_reason is None:
            raise self._errors.error("provider", f"{STREAM_CALL}: cut before [DONE] after {len(pieces)} pieces",
                                     None, True)
        return self._completion("".join(pieces), model, usage, finish_reason, payload, started)

    def _parse_chunk(self, data: str) -> tuple[dict[str, Any], str, str | None]:
        """One SSE event: (the chunk, its content piece, its finish_reason)."""
        try:
            chunk = json.loads(data)
            choice = (chunk.get("choices") or [{}])[0]
            piece = (choice.get("delta") or {}).get("content") or ""
        except (ValueError, AttributeError, TypeError, IndexError) as exc:
            raise self._errors.shape_error(STREAM_CALL, data) from exc
        if chunk.get("error"):  # some providers report a failure inside a 200 stream
            kind = "context_length" if mentions_context_length(data) else "provider"
            raise self._errors.error(kind, f"{STREAM_CALL}: error event: {self._errors.excerpt(data)}", None,
                                     kind == "provider")
        return chunk, piece if isinstance(piece, str) else "", choice.get("finish_reason")

    def _completion(self, content: str, model: Any, usage: Any, finish_reason: Any,
                    payload: dict[str, Any], started: float) -> Completion:
        prompt_tokens = completion_tokens = None
        if isinstance(usage, dict):
            prompt_tokens, completion_tokens = usage.get("prompt_tokens"), usage.get("completion_tokens")
        estimated = not (isinstance(prompt_tokens, int) and isinstance(completion_tokens, int))
        if estimated:
            prompt_chars = sum(content_chars(message) for message in payload["messages"])
            prompt_tokens = max(1, prompt_chars // CHARS_PER_TOKEN)
            completion_tokens = max(1, len(content) // CHARS_PER_TOKEN)
        return Completion(content, model if isinstance(model, str) and model else payload["model"],
                          prompt_tokens, completion_tokens, (time.monotonic() - started) * 1000,
                          finish_reason if isinstance(finish_reason, str) else None, estimated)

    def _with_retries(self, attempt: Callable[[], T], deadline: float | None = None) -> T:
        for attempt_no in range(self.max_retries + 1):
            try:
                return attempt()
            except LLMError as error:
                if not error.retryable or attempt_no >= self.max_retries:
                    raise
                delay = error.retry_after if error.retry_after is not None else (
                    self.backoff_s * 2 ** attempt_no * (1 + random.uniform(0, 0.25)))  # jitter: up to +25%
                if deadline is not None and time.monotonic() + delay >= deadline:  # no time left for another
                    raise
                log.warning("LLM call failed (%s), retry %d/%d in %.2fs: %s",
                            error.kind, attempt_no + 1, self.max_retries, delay, error)
                self._sleep(delay)
        raise AssertionError("unreachable")

    def _headers(self, stream: bool = False) -> dict[str, str]:
        headers = {"Accept": "text/event-stream" if stream else "application/json"}
        if self._api_key:
            headers["Authorization"] = f"Bearer {self._api_key}"
        return headers


__all__ = ["Completion", "LLMClient", "LLMError", "trim_messages"]
