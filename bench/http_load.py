"""A minimal HTTP/1.1 keep-alive client on asyncio streams, for load generation on a small machine.

httpx costs the benchmark process about half a core at 70 requests/s, on a machine whose 2 cores the server
under test needs; this client costs a few percent. It speaks just what Loom's JSON API answers: a status line,
headers, a Content-Length body. Anything else is an error for the caller to count.
"""
from __future__ import annotations

import asyncio
import json
from urllib.parse import urlsplit


class HTTPError(Exception):
    """The connection broke or the answer could not be framed."""


class Connection:
    """One keep-alive connection; reconnects after the server closes it."""

    def __init__(self, base_url: str, headers: dict[str, str]) -> None:
        parts = urlsplit(base_url)
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 80
        self.head = "".join(f"{k}: {v}\r\n" for k, v in {"Host": f"{self.host}:{self.port}", **headers}.items())
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def request(self, method: str, path: str, body: dict | None = None) -> tuple[int, bytes]:
        """(status, body bytes); raises HTTPError when the exchange fails."""
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        data = b"" if body is None else json.dumps(body).encode()
        extra = f"Content-Type: application/json\r\nContent-Length: {len(data)}\r\n" if body is not None else ""
        try:
            self.writer.write(f"{method} {path} HTTP/1.1\r\n{self.head}{extra}\r\n".encode() + data)
            head = await self.reader.readuntil(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            status = int(lines[0].split(" ", 2)[1])
            fields = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:] if line)}
            if "content-length" not in fields:
                raise HTTPError(f"{method} {path}: no Content-Length in the answer")
            payload = await self.reader.readexactly(int(fields["content-length"]))
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError, IndexError) as exc:
            await self.close()
            raise HTTPError(f"{method} {path}: {type(exc).__name__}") from exc
        if fields.get("connection", "").lower() == "close":
            await self.close()
        return status, payload

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            try:
                await self.writer.wait_closed()
            except OSError:
                pass
        self.reader = self.writer = None
