"""Shared set-up for benchmarks: a migrated database, an app, the scripted LLM, worker processes, timing."""
from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

import redis
import sqlalchemy as sa
from flask_migrate import upgrade

from app import create_app
from app.extensions import db
from app.models import Step
from app.scripted_llm import ScriptedLLMServer, load_script
from app.services import agents, beads, projects
from app.services.personas import load_builtin_personas

ROOT = Path(__file__).resolve().parent.parent


def bench_urls(tmp: Path) -> tuple[str, str]:
    """LOOM_BENCH_DATABASE_URL (wiped!) or a fresh SQLite file; LOOM_BENCH_REDIS_URL or local Redis db 13."""
    database = os.environ.get("LOOM_BENCH_DATABASE_URL") or f"sqlite:///{tmp / 'bench.db'}"
    if database.startswith("postgresql"):
        engine = sa.create_engine(database.replace("postgresql://", "postgresql+psycopg://"))
        with engine.begin() as conn:
            conn.execute(sa.text("DROP SCHEMA IF EXISTS public CASCADE"))
            conn.execute(sa.text("CREATE SCHEMA public"))
        engine.dispose()
    redis_url = os.environ.get("LOOM_BENCH_REDIS_URL", "redis://127.0.0.1:6379/13")
    redis.Redis.from_url(redis_url).flushdb()
    return database, redis_url


class Bench:
    """One isolated Loom installation for a benchmark."""

    def __init__(self, script: dict, **config) -> None:
        self.tmp = Path(tempfile.mkdtemp(prefix="loom-bench-"))
        self.database_url, self.redis_url = bench_urls(self.tmp)
        self.llm = ScriptedLLMServer(load_script(script))
        self.llm.start()
        self.config = {"DATABASE_URL": self.database_url, "REDIS_URL": self.redis_url,
                       "DATA_DIR": str(self.tmp / "data"), "SECRET_KEY": "bench", "PROVIDER_URL": self.llm.url,
                       "LOG_LEVEL": "WARNING", **config}
        self.app = create_app(self.config)
        with self.app.app_context():
            upgrade()
            load_builtin_personas()
        self.procs: list[subprocess.Popen] = []

    def env(self) -> dict:
        return {**os.environ, **{f"LOOM_{k}": str(v) for k, v in self.config.items() if k != "SECRET_KEY"},
                "LOOM_SECRET_KEY": "bench"}

    def project_with(self, name: str, beads_n: int, agents_n: int, titles: str = "bench {i}") -> list[int]:
        with self.app.app_context():
            project = projects.create_project(name, team=[], git_strategy="branch")
            for i in range(agents_n):
                agents.create_agent(f"agent-{i}", "engineer", project_id=project.id)
            ids = [beads.create_bead(project.id, titles.format(i=i)).id for i in range(beads_n)]
            db.session.remove()
        return ids

    def start_workers(self, processes: int, threads: int) -> None:
        for n in range(processes):
            log = open(self.tmp / f"worker{n}.log", "wb")  # noqa: SIM115 (kept open for the child's life)
            self.procs.append(subprocess.Popen(
                [sys.executable, "-m", "celery", "-A", "workers.celery_app", "worker", "-P", "threads", "-c",
                 str(threads), "-n", f"bench{n}@%h", "-Q", "default", "--loglevel", "WARNING", "--without-gossip",
                 "--without-mingle", "--without-heartbeat"], cwd=ROOT, env=self.env(), stdout=log,
                stderr=subprocess.STDOUT))
            log.close()

    def start_web(self, threads: int = 64) -> str:
        """The production web server (gunicorn, threaded) on a free port; returns its URL once ready."""
        import socket

        import httpx

        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        log = open(self.tmp / "web.log", "wb")  # noqa: SIM115 (kept open for the child's life)
        self.procs.append(subprocess.Popen(
            [str(Path(sys.executable).parent / "gunicorn"), "-k", "gthread", "--threads", str(threads), "-w", "1",
             "-b", f"127.0.0.1:{port}", "--log-level", "warning", "app.wsgi:app"], cwd=ROOT, env=self.env(),
            stdout=log, stderr=subprocess.STDOUT))
        log.close()
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{url}/health/ready", timeout=1).status_code == 200:
                    return url
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"web server did not start; see {self.tmp / 'web.log'}")

    def admin_token(self, url: str, password: str = "bench-admin-password") -> str:
        import httpx

        from app.services.users import ensure_admin

        with self.app.app_context():
            ensure_admin(password)
            db.session.remove()
        response = httpx.post(f"{url}/api/v1/auth/login", json={"username": "admin", "password": password})
        response.raise_for_status()
        return response.json()["token"]

    def wait_closed(self, bead_ids: list[int], timeout: float) -> float:
        """Seconds until every bead is closed (raises on timeout or when one blocks)."""
        started = time.monotonic()
        with self.app.app_context():
            while time.monotonic() - started < timeout:
                rows = db.session.execute(sa.text("SELECT status, count(*) FROM beads GROUP BY status")).all()
                counts = dict(rows)
                db.session.remove()
                if counts.get("blocked"):
                    raise RuntimeError(f"a bead blocked: {counts}")
                if counts.get("closed", 0) >= len(bead_ids):
                    return time.monotonic() - started
                time.sleep(0.1)
        raise TimeoutError(f"beads not closed after {timeout}s: {counts}")

    def step_times(self) -> list[tuple[int, int, float, float]]:
        """(run_id, seq, created, applied) in epoch seconds for every applied step."""
        with self.app.app_context():
            rows = db.session.execute(sa.select(Step.run_id, Step.seq, Step.created_at, Step.applied_at)
                                      .where(Step.status == "applied").order_by(Step.run_id, Step.seq)).all()
            db.session.remove()
        return [(r[0], r[1], r[2].timestamp(), r[3].timestamp()) for r in rows]

    def close(self) -> None:
        for proc in self.procs:
            proc.terminate()
        for proc in self.procs:
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
        self.llm.stop()
        with self.app.app_context():
            db.engine.dispose()


def per_step_intervals(times: list[tuple[int, int, float, float]], skip: int = 2) -> list[float]:
    """Within each run, the time from one step's completion to the next's (the first `skip` steps warm up)."""
    out: list[float] = []
    for prev, cur in zip(times, times[1:], strict=False):
        if prev[0] == cur[0] and cur[1] > skip:
            out.append(cur[3] - prev[3])
    return out


def median_ms(values: list[float]) -> float:
    return statistics.median(values) * 1000 if values else float("nan")


@contextmanager
def timer():
    started = time.perf_counter()
    box = [0.0]
    yield box
    box[0] = time.perf_counter() - started
