"""The scripted LLM in a process of its own, logging when each chat request arrived and for which bead.

Benchmarks run the provider here rather than in their own process, so the benchmark's GIL does not slow
the provider down (or the other way round). Every chat-completion request is appended to a JSON-lines log
(`{"t": epoch seconds at receipt, "bead": id or null, "messages": n}`) the benchmark reads afterwards.

Run: `python -m bench.llm_process --script SCRIPT.json --log requests.jsonl`; prints its URL, then serves
until SIGTERM or SIGINT.
"""
from __future__ import annotations

import argparse
import json
import re
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

from app.scripted_llm import load_script
from app.scripted_llm.handler import ProviderHTTPServer
from app.scripted_llm.script import Script

BEAD_MARKER = re.compile(r"Bead #(\d+):")  # the task prompt's first line (app/services/prompts.py)


class LoggingProvider(ProviderHTTPServer):
    """The scripted provider plus a receive-time log line per chat request (taken before the scripted delay)."""

    def __init__(self, address: tuple[str, int], script: Script, log_path: Path) -> None:
        super().__init__(address, script)
        self.log = open(log_path, "a", buffering=1)  # noqa: SIM115 - line-buffered for the server's life

    def record(self, request: dict[str, Any]) -> None:
        received = time.time()
        super().record(request)
        messages = request["messages"]
        task = messages[1].get("content", "") if len(messages) > 1 and isinstance(messages[1], dict) else ""
        match = BEAD_MARKER.match(task) if isinstance(task, str) else None
        line = json.dumps({"t": received, "bead": int(match.group(1)) if match else None,
                           "messages": len(messages)})
        with self.lock:
            self.log.write(line + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--script", required=True, help="script file (YAML or JSON)")
    parser.add_argument("--log", required=True, help="JSON-lines request log to append to")
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args(argv)
    httpd = LoggingProvider(("127.0.0.1", args.port), load_script(args.script), Path(args.log))
    stopping = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopping.set())
    signal.signal(signal.SIGINT, lambda *_: stopping.set())
    threading.Thread(target=httpd.serve_forever, args=(0.5,), daemon=True).start()
    print(f"http://127.0.0.1:{httpd.server_address[1]}/v1", flush=True)
    stopping.wait()
    httpd.shutdown()
    httpd.cut_connections()
    httpd.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
