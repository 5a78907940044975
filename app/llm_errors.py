"""How a provider call failed, as an LLMError the caller can act on (retry, shrink the prompt, give up): classified
from HTTP statuses and transport failures, quoted briefly, the API key never in a message."""
from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx

from app.llm_answers import head

ERROR_KINDS = frozenset({"auth", "rate_limit", "provider", "timeout", "connection", "context_length", "bad_response"})
RETRYABLE_STATUSES = frozenset({500, 502, 503, 504})
CONTEXT_LENGTH_MARKERS = ("context_length_exceeded", "maximum context length", "context window", "too many tokens")
MAX_RETRY_AFTER_S = 30.0
EXCERPT_CHARS = 300
ERROR_BODY_BYTES = 65_536  # of an error answer, read to classify and quote it


class LLMError(Exception):
    """A failed provider call, classified so the caller can retry, shrink the prompt or give up."""

    retry_after: float | None = None  # seconds the server asked for (429 Retry-After), capped

    def __init__(self, kind: str, message: str, status: int | None = None, retryable: bool = False):
        if kind not in ERROR_KINDS:
            raise ValueError(f"unknown LLMError kind {kind!r}")
        super().__init__(message)
        self.kind = kind
        self.message = message
        self.status = status
        self.retryable = retryable

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.kind, self.message, self.status, self.retryable))


class ErrorReporter:
    """Makes one client's LLMErrors: its API key redacted from every message (error bodies may echo it)."""

    def __init__(self, api_key: str | None) -> None:
        self._api_key = api_key

    def raise_for_status(self, response: httpx.Response, what: str) -> None:
        status = response.status_code
        if 200 <= status < 300:
            return
        body = head(response, ERROR_BODY_BYTES)  # an error page is never read whole
        kind = ("auth" if status in (401, 403) else "rate_limit" if status == 429
                else "context_length" if 400 <= status < 500 and mentions_context_length(body) else "provider")
        retryable = status == 429 or status in RETRYABLE_STATUSES
        error = self.error(kind, f"{what}: HTTP {status}: {self.excerpt(body)}", status, retryable)
        if status == 429:
            error.retry_after = retry_after_seconds(response.headers.get("retry-after"))
        raise error

    @contextmanager
    def transport_errors(self, what: str) -> Iterator[None]:
        """Turn httpx transport failures into LLMError kinds; HTTP statuses are handled elsewhere."""
        try:
            yield
        except httpx.TimeoutException as exc:
            raise self.error("timeout", f"{what}: timed out ({type(exc).__name__})", retryable=True) from exc
        except httpx.ConnectError as exc:
            raise self.error("connection", f"{what}: cannot connect: {exc}", retryable=True) from exc
        except httpx.UnsupportedProtocol as exc:  # a misconfigured URL: retrying will not help
            raise self.error("connection", f"{what}: bad provider URL: {exc}") from exc
        except httpx.TransportError as exc:
            raise self.error("provider", f"{what}: connection broke: {type(exc).__name__}: {exc}",
                             retryable=True) from exc

    def error(self, kind: str, message: str, status: int | None = None, retryable: bool = False) -> LLMError:
        """An LLMError whose message never contains the API key (error bodies may echo it)."""
        return LLMError(kind, self.redact(message), status, retryable)

    def shape_error(self, what: str, body: Any) -> LLMError:
        text = body if isinstance(body, str) else json.dumps(body)
        return self.error("bad_response", f"{what}: unexpected response shape: {self.excerpt(text)}")

    def excerpt(self, text: str) -> str:
        """At most EXCERPT_CHARS of a body for an error message: one line, the key redacted before cutting."""
        text = " ".join(self.redact(text).split())
        return text if len(text) <= EXCERPT_CHARS else text[:EXCERPT_CHARS - 3] + "..."

    def redact(self, text: str) -> str:
        return text.replace(self._api_key, "<api key>") if self._api_key else text


def mentions_context_length(text: str) -> bool:
    return any(marker in text.lower() for marker in CONTEXT_LENGTH_MARKERS)


def retry_after_seconds(value: str | None) -> float | None:
    """Retry-After in seconds (the HTTP-date form is ignored), capped at MAX_RETRY_AFTER_S."""
    try:
        return min(max(float(value), 0.0), MAX_RETRY_AFTER_S) if value is not None else None
    except ValueError:
        return None
