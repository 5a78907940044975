"""Reading a provider's answer with bounded memory: a body, the lines of an SSE stream, the head of an error page.

A leaf module (imports nothing from the app), used by app/llm.py. A provider that answers without end (a stream
that never stops, one line of many megabytes, a huge JSON body) is read no further than `max_bytes`: what came so
far goes up as Oversize, for the client to keep the beginning of and its caller to refuse as too large.
"""
from __future__ import annotations

from collections.abc import Iterator

import httpx


class Oversize(Exception):  # noqa: N818 (not an error: a reply to keep the beginning of)
    """An answer larger than a reply may be, cut where the reading stopped."""

    def __init__(self, head: bytes | bytearray | str) -> None:
        super().__init__("oversize")
        self.prefix = head if isinstance(head, str) else bytes(head).decode("utf-8", errors="replace")


def read_capped(response: httpx.Response, max_bytes: int | None) -> bytes:
    """The whole body, unless it is longer than `max_bytes` (then Oversize: read no further)."""
    body = bytearray()
    for chunk in response.iter_bytes():
        body += chunk
        if max_bytes is not None and len(body) > max_bytes:
            raise Oversize(body)
    return bytes(body)


def lines(response: httpx.Response, max_bytes: int | None) -> Iterator[str]:
    """The stream's lines (LF or CRLF), never more than one line, of at most `max_bytes`, held in memory."""
    pending = bytearray()
    for chunk in response.iter_bytes():
        pending += chunk
        start = 0
        while (end := pending.find(b"\n", start)) >= 0:
            yield pending[start:end].rstrip(b"\r").decode("utf-8", errors="replace")
            start = end + 1
        del pending[:start]
        if max_bytes is not None and len(pending) > max_bytes:
            raise Oversize(pending)
    if pending:
        yield pending.rstrip(b"\r").decode("utf-8", errors="replace")


def head(response: httpx.Response, max_bytes: int) -> str:
    """The first `max_bytes` of the body (an error page: enough to classify and quote it), never the rest."""
    read = bytearray()
    for chunk in response.iter_bytes():
        read += chunk
        if len(read) >= max_bytes:
            break
    return bytes(read[:max_bytes]).decode("utf-8", errors="replace")
