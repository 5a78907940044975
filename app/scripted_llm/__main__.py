"""`python -m app.scripted_llm`: serve a script (default: the demo) until SIGINT or SIGTERM."""
from __future__ import annotations

import argparse
import signal
import sys
import threading
from types import FrameType

from app.scripted_llm import DEMO_SCRIPT, ScriptedLLMServer, load_script


IDLE_POLL_S = 0.5  # a process of its own (make run): stop() may take half a second, idling costs 2 wake-ups/s


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m app.scripted_llm",
                                     description="An OpenAI-compatible chat-completions server that answers "
                                                 "from a script (YAML or JSON).")
    parser.add_argument("--script", help="script file (default: the built-in demo script)")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default: 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8091, help="port to bind, 0 for any free one (default: 8091)")
    parser.add_argument("--api-key", help="require 'Authorization: Bearer KEY' on /v1 requests")
    parser.add_argument("--latency-ms", type=int, help="delay before every reply (overrides the script's)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.latency_ms is not None and args.latency_ms < 0:
        print("scripted-llm: --latency-ms must be >= 0", file=sys.stderr)
        return 2
    try:
        script = load_script(args.script or DEMO_SCRIPT)
    except ValueError as exc:
        print(f"scripted-llm: bad script: {exc}", file=sys.stderr)
        return 2
    try:
        server = ScriptedLLMServer(script, args.host, args.port, api_key=args.api_key, latency_ms=args.latency_ms,
                                   poll_interval_s=IDLE_POLL_S)
    except (OSError, OverflowError) as exc:
        reason = getattr(exc, "strerror", None) or exc
        print(f"scripted-llm: cannot listen on {args.host}:{args.port}: {reason}", file=sys.stderr)
        return 1
    stopping = threading.Event()

    def request_stop(signum: int, frame: FrameType | None) -> None:
        stopping.set()

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)
    with server:
        print(f"Scripted LLM on {server.url}", flush=True)
        stopping.wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
