"""The OpenAI chat-completions wire format: completion bodies, stream chunks, usage and error bodies.

Pure functions over plain data, so the server only decides *what* to send and this module *how* it looks.
Token counts are an estimate (about four characters per token, at least one), as documented.
"""
from __future__ import annotations

import re
import time
import uuid
from typing import Any

from app.scripted_llm.script import message_text

WORDS_PER_CHUNK = 3
_WORD_START = re.compile(r"(?<=\s)(?=\S)")  # split before each word; whitespace stays with the word before


def count_tokens(text: str) -> int:
    return max(1, (len(text) + 3) // 4)


def usage(messages: list[Any], content: str) -> dict[str, int]:
    prompt = count_tokens("".join(message_text(message) for message in messages))
    completion = count_tokens(content)
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def completion_id() -> str:
    return "chatcmpl-" + uuid.uuid4().hex[:24]


def completion_body(content: str, model: str, token_usage: dict[str, int]) -> dict[str, Any]:
    """A whole (non-streaming) `chat.completion` object."""
    return {"id": completion_id(), "object": "chat.completion", "created": int(time.time()), "model": model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": content},
                         "finish_reason": "stop"}],
            "usage": token_usage}


def split_words(content: str, words_per_chunk: int = WORDS_PER_CHUNK) -> list[str]:
    """Pieces of a few words each that concatenate back to exactly `content`."""
    words = [word for word in _WORD_START.split(content) if word]
    return ["".join(words[i:i + words_per_chunk]) for i in range(0, len(words), words_per_chunk)] or [""]


def stream_chunks(content: str, model: str, token_usage: dict[str, int] | None) -> list[dict[str, Any]]:
    """The `chat.completion.chunk` objects of a stream, in order (the `[DONE]` sentinel is not included).

    Content deltas (the first one also carries the role), a finish chunk, then, when `token_usage` is
    given (stream_options.include_usage), a chunk with empty choices and the usage, as OpenAI sends them.
    """
    base = {"id": completion_id(), "object": "chat.completion.chunk", "created": int(time.time()), "model": model}
    if token_usage is not None:
        base["usage"] = None
    chunks: list[dict[str, Any]] = []
    for index, piece in enumerate(split_words(content)):
        delta = {"role": "assistant", "content": piece} if index == 0 else {"content": piece}
        chunks.append({**base, "choices": [{"index": 0, "delta": delta, "finish_reason": None}]})
    chunks.append({**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
    if token_usage is not None:
        chunks.append({**base, "choices": [], "usage": token_usage})
    return chunks


def error_body(message: str, error_type: str = "invalid_request_error", code: str | int | None = None
               ) -> dict[str, Any]:
    error: dict[str, Any] = {"message": message, "type": error_type}
    if code is not None:
        error["code"] = code
    return {"error": error}


def error_type_for(status: int) -> str:
    """The OpenAI error type a real provider would send with this status."""
    if status == 401:
        return "authentication_error"
    if status == 429:
        return "rate_limit_error"
    return "server_error" if status >= 500 else "invalid_request_error"
