"""ScriptedLLMServer: Loom's scripted provider on a real socket, to start, stop and point clients at.

The socket is bound at construction (so `url` is known at once, even with port 0); `start()` serves from
a daemon thread, `serve_forever()` from the caller's. Used by `make run`, the tests and the benchmarks.
"""
from __future__ import annotations

import threading
from types import TracebackType
from typing import Any

from app.scripted_llm.handler import ProviderHTTPServer
from app.scripted_llm.script import Script

POLL_INTERVAL_S = 0.05  # how quickly the accept loop notices stop() (each poll is a wake-up of the process)


class ScriptedLLMServer:
    """An OpenAI-compatible chat-completions server answering from `script`; also a context manager."""

    def __init__(self, script: Script, host: str = "127.0.0.1", port: int = 0, *, api_key: str | None = None,
                 latency_ms: int | None = None, poll_interval_s: float = POLL_INTERVAL_S) -> None:
        self.script = script
        self.poll_interval_s = poll_interval_s
        self._httpd = ProviderHTTPServer((host, port), script, api_key=api_key, latency_ms=latency_ms)
        self._thread: threading.Thread | None = None
        self._serving = False
        self._stopped = False

    @property
    def host(self) -> str:
        host = str(self._httpd.server_address[0])
        return "127.0.0.1" if host in ("0.0.0.0", "") else host

    @property
    def port(self) -> int:
        return int(self._httpd.server_address[1])

    @property
    def url(self) -> str:
        """The base URL clients use, ending in /v1."""
        return f"http://{self.host}:{self.port}/v1"

    @property
    def requests(self) -> list[dict[str, Any]]:
        """The JSON bodies of the last chat-completion requests received (oldest first, at most 1000)."""
        with self._httpd.lock:
            return list(self._httpd.requests)

    def start(self) -> ScriptedLLMServer:
        """Serve in a daemon thread and return at once."""
        if self._thread is None:
            self._serving = True
            self._thread = threading.Thread(target=self._httpd.serve_forever, args=(self.poll_interval_s,),
                                            name=f"scripted-llm-{self.port}", daemon=True)
            self._thread.start()
        return self

    def serve_forever(self) -> None:
        """Serve in the calling thread until stop() is called from another one."""
        self._serving = True
        self._httpd.serve_forever(self.poll_interval_s)

    def stop(self) -> None:
        """Stop accepting, cut open connections (keep-alive and in-flight) and close the socket. Idempotent."""
        if self._stopped:
            return
        self._stopped = True
        if self._serving:  # shutdown() would wait forever for a loop that never ran
            self._httpd.shutdown()
        self._httpd.cut_connections()
        self._httpd.server_close()
        if self._thread is not None:
            self._thread.join()

    def __enter__(self) -> ScriptedLLMServer:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()
