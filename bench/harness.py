"""Shared set-up for benchmarks: a migrated database, an app, the scripted LLM, worker processes, timing."""
from __future__ import annotations

import contextlib
import io
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import NamedTuple

import httpx
import redis
import sqlalchemy as sa
from flask_migrate import upgrade

from app import create_app
from app.extensions import db
from app.models import Step
from app.services import agents, beads, projects
from app.services.personas import load_builtin_personas
from app.services.users import ensure_admin
from app.devstack import QUIET_WORKER
from bench.processes import LLMProcess, free_port

ROOT = Path(__file__).resolve().parent.parent


class Row(NamedTuple):
    """One line of the benchmark table: what was measured, the figure, and its context (ratio, percentiles)."""

    name: str
    value: str
    note: str = ""


def is_postgres(url: str) -> bool:
    return url.startswith("postgres")


def bench_urls(tmp: Path) -> tuple[str, str]:
    """LOOM_BENCH_DATABASE_URL (wiped!) or a fresh SQLite file; LOOM_BENCH_REDIS_URL (db flushed).

    `python -m bench` starts a private Redis when LOOM_BENCH_REDIS_URL is unset; a module run on its own
    falls back to the local Redis's db 13.
    """
    database = os.environ.get("LOOM_BENCH_DATABASE_URL") or f"sqlite:///{tmp / 'bench.db'}"
    if is_postgres(database):
        engine = sa.create_engine(database.replace("postgresql://", "postgresql+psycopg://"))
        with engine.begin() as conn:
            conn.execute(sa.text("DROP SCHEMA IF EXISTS public CASCADE"))
            conn.execute(sa.text("CREATE SCHEMA public"))
        engine.dispose()
    redis_url = os.environ.get("LOOM_BENCH_REDIS_URL", "redis://127.0.0.1:6379/13")
    client = redis.Redis.from_url(redis_url)
    client.flushdb()
    client.close()
    return database, redis_url


class Bench:
    """One isolated Loom installation for a benchmark."""

    def __init__(self, script: dict, **config) -> None:
        self.tmp = Path(tempfile.mkdtemp(prefix="loom-bench-"))
        self.database_url, self.redis_url = bench_urls(self.tmp)
        self.llm = LLMProcess(script, self.tmp)
        self.procs: list[subprocess.Popen] = []
        self.config = {"DATABASE_URL": self.database_url, "REDIS_URL": self.redis_url,
                       "DATA_DIR": str(self.tmp / "data"), "SECRET_KEY": "bench", "PROVIDER_URL": self.llm.url,
                       "LOG_LEVEL": "WARNING", **config}
        try:
            self.app = create_app(self.config)
            with self.app.app_context(), contextlib.redirect_stderr(io.StringIO()) as said:
                try:
                    upgrade()  # alembic's INFO lines go to `said`, shown only if the migration fails
                except BaseException:
                    sys.stderr.write(said.getvalue())
                    raise
                load_builtin_personas()
                db.session.remove()
        except BaseException:
            self.llm.stop()
            raise

    def __enter__(self) -> Bench:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def env(self) -> dict:
        return {**os.environ, **{f"LOOM_{k}": str(v) for k, v in self.config.items() if k != "SECRET_KEY"},
                "LOOM_SECRET_KEY": "bench"}

    def project_with(self, name: str, beads_n: int, agents_n: int, titles: str = "bench {i}") -> list[int]:
        """A project with `agents_n` idle engineers and `beads_n` open beads (created through the service)."""
        with self.app.app_context():
            project = projects.create_project(name, team=[], git_strategy="branch")
            for i in range(agents_n):
                agents.create_agent(f"agent-{i}", "engineer", project_id=project.id)
            ids = [beads.create_bead(project.id, titles.format(i=i)).id for i in range(beads_n)]
            db.session.remove()
        return ids

    def start_workers(self, processes: int, threads: int) -> None:
        """Worker processes started like `make run` starts its worker (threads pool, no gossip or mingle).

        LOOM_BENCH_WORKER_APP (a `celery -A` target, default workers.celery_app) and LOOM_BENCH_WORKER_ARGS
        (extra worker arguments) let an engine change be measured before it is made the default.
        """
        app_module = os.environ.get("LOOM_BENCH_WORKER_APP", "workers.celery_app")
        extra = os.environ.get("LOOM_BENCH_WORKER_ARGS", "").split()
        for n in range(processes):
            log = open(self.tmp / f"worker{n}.log", "wb")  # noqa: SIM115 (kept open for the child's life)
            self.procs.append(subprocess.Popen(
                [sys.executable, "-m", "celery", "-A", app_module, "worker", "-P", "threads", "-c", str(threads),
                 "-n", f"bench{n}@%h", "-Q", "default", "--loglevel", "WARNING", *QUIET_WORKER, *extra], cwd=ROOT,
                env=self.env(), stdout=log, stderr=subprocess.STDOUT))
            log.close()
        self.wait_workers(processes)

    def wait_workers(self, processes: int, timeout: float = 60) -> None:
        """Until `processes` workers answer a broker ping (they consume from then on)."""
        control = self.app.extensions["celery"].control
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if len(control.ping(timeout=0.5)) >= processes:
                return
            if any(proc.poll() is not None for proc in self.procs):
                break
        raise RuntimeError(f"workers did not start; see {self.tmp}/worker*.log")

    def start_web(self, threads: int = 64) -> str:
        """The production web server (gunicorn, threaded) on a free port; returns its URL once ready."""
        port = free_port()
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
        redis_client = self.app.extensions["loom.redis"]()
        redis_client.close()
        if os.environ.get("LOOM_BENCH_KEEP"):  # logs and data of a run to look into
            print(f"[bench] kept {self.tmp}", file=sys.stderr)
        else:
            shutil.rmtree(self.tmp, ignore_errors=True)


def per_step_intervals(times: list[tuple[int, int, float, float]], skip: int = 2) -> list[float]:
    """Within each run, the time from one step's completion to the next's (the first `skip` steps warm up)."""
    out: list[float] = []
    for prev, cur in zip(times, times[1:], strict=False):
        if prev[0] == cur[0] and cur[1] > skip:
            out.append(cur[3] - prev[3])
    return out


def median_ms(values: list[float]) -> float:
    return statistics.median(values) * 1000 if values else float("nan")


def percentile(values: list[float], q: float) -> float:
    """The nearest-rank q-quantile (0..1) of `values`; NaN when empty."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]

