"""Loom through a real PgBouncer in transaction pooling, in front of the test PostgreSQL.

Transaction pooling hands each transaction whichever server connection is free, so nothing may outlive
a transaction: no session SET, advisory locks, LISTEN/NOTIFY, temp tables, WITH HOLD cursors (Loom has
none: locks are in Redis) and no server-side prepared statements (psycopg makes them after 5 runs of a
query unless prepare_threshold=None, which app/config.py always sets). CI must run this: a missing
pgbouncer binary fails it there.
"""
from __future__ import annotations

import os
import pwd
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest
import redis
import sqlalchemy as sa

from app.config import engine_options, normalise_database_url
from app.extensions import db
from app.scripted_llm import ScriptedLLMServer, load_script
from tests.conftest import Engine, _engine_numbers, build_app, free_port, fresh_database, pgbouncer_binary
from tests.test_engine import CHAIN_SCRIPT, Client, wait_for
from tests.test_engine_workers import start_workers, stop

pytestmark = pytest.mark.needs_pgbouncer


@dataclass
class Bouncer:
    port: int
    server: sa.engine.URL  # the PostgreSQL behind it
    log: Path

    def url(self, database: str) -> str:
        """A Loom database URL that goes through PgBouncer to `database`."""
        return self.server.set(host="127.0.0.1", port=self.port, database=database).render_as_string(
            hide_password=False)

    def admin(self, command: str) -> list[dict]:
        """SHOW ... on PgBouncer's admin console, as dicts."""
        conninfo = f"host=127.0.0.1 port={self.port} dbname=pgbouncer user={self.server.username}"
        with psycopg.connect(conninfo, password=self.server.password, autocommit=True,
                             prepare_threshold=None) as conn:
            cursor = conn.execute(command)
            names = [c.name for c in cursor.description]
            return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]

    def stats(self, database: str) -> dict:
        return next((row for row in self.admin("SHOW STATS") if row["database"] == database), {})


def _workdir() -> Path:
    """PgBouncer refuses to run as root: as root it drops to the postgres (or nobody) user, which must
    be able to read its files."""
    path = Path(tempfile.mkdtemp(prefix="loom-pgbouncer-"))
    path.chmod(0o755)
    return path


@pytest.fixture()
def pgbouncer(primary_database_url):
    binary = pgbouncer_binary()
    if binary is None:
        pytest.fail("pgbouncer is not installed (apt-get install -y pgbouncer): CI must run this test")
    server = sa.engine.make_url(normalise_database_url(primary_database_url))
    work, port = _workdir(), free_port()
    password = f" password={server.password}" if server.password else ""
    (work / "userlist.txt").write_text(f'"{server.username}" "{server.password or ""}"\n')
    (work / "pgbouncer.ini").write_text(f"""[databases]
* = host={server.host or '127.0.0.1'} port={server.port or 5432}{password}

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = {port}
unix_socket_dir =
auth_type = trust
auth_file = {work / 'userlist.txt'}
admin_users = {server.username}
pool_mode = transaction
default_pool_size = 20
max_client_conn = 500
ignore_startup_parameters = extra_float_digits
""")
    argv = [binary, str(work / "pgbouncer.ini")]
    if os.geteuid() == 0:
        user = "postgres" if _user_exists("postgres") else "nobody"
        argv[1:1] = ["-u", user]
    log = work / "pgbouncer.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT)
    bouncer = Bouncer(port, server, log)
    try:
        _wait_up(proc, bouncer)
        yield bouncer
    finally:
        proc.terminate()
        proc.wait(10)


def _user_exists(name: str) -> bool:
    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True


def _wait_up(proc: subprocess.Popen, bouncer: Bouncer) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"pgbouncer exited: {bouncer.log.read_text()[-2000:]}")
        try:
            bouncer.admin("SHOW VERSION")
            return
        except psycopg.OperationalError:
            time.sleep(0.1)
    raise RuntimeError(f"pgbouncer did not start: {bouncer.log.read_text()[-2000:]}")


def _interleave(url: str, connect_args: dict) -> str:
    """Run one query often enough for psycopg to prepare it, then again while another client holds the
    server connection it was prepared on: PgBouncer must hand this transaction another one."""
    engine = sa.create_engine(url, connect_args=connect_args)
    try:
        with engine.connect() as b, engine.connect() as a:
            for n in range(8):
                with b.begin():
                    b.execute(sa.text("SELECT 1 + :n"), {"n": n})
            with a.begin():
                a.execute(sa.text("SELECT 2"))  # a now holds the server connection b used so far
                with b.begin():
                    return str(b.execute(sa.text("SELECT 1 + :n"), {"n": 99}).scalar())
    except sa.exc.DBAPIError as exc:
        return type(exc.orig).__name__
    finally:
        engine.dispose()


def test_transaction_pooling_with_and_without_server_side_prepares(pgbouncer, primary_database_url):
    database = sa.engine.make_url(primary_database_url).database
    url = normalise_database_url(pgbouncer.url(database))
    assert _interleave(url, engine_options(url)["connect_args"]) == "100"  # Loom's settings: fine
    # psycopg's default (prepare after 5 runs) breaks exactly as it would in production: the control
    # that shows this PgBouncer really pools per transaction and that the setting is what saves us.
    assert _interleave(url, {"prepare_threshold": 5}) == "InvalidSqlStatementName"
    pools = [row for row in pgbouncer.admin("SHOW POOLS") if row["database"] == database]
    assert pools and {row["pool_mode"] for row in pools} == {"transaction"}


def test_loom_works_through_pgbouncer(pgbouncer, primary_database_url, redis_url, tmp_path):
    """Migrations, the REST API and an engine run with a real worker process, all through PgBouncer."""
    name = (sa.engine.make_url(primary_database_url).database or "test") + "_pgbouncer"
    fresh_database(primary_database_url, name, tmp_path)
    url = pgbouncer.url(name)
    number = next(_engine_numbers)
    engine_redis = redis_url.rsplit("/", 1)[0] + f"/{number}"
    redis.Redis.from_url(engine_redis).flushdb()
    llm = ScriptedLLMServer(load_script(CHAIN_SCRIPT))
    llm.start()
    app = build_app(url, engine_redis, tmp_path / "data", AUTO_DISPATCH=True, PROVIDER_URL=llm.url)
    engine = Engine(app, llm, url, engine_redis, tmp_path / "data")
    workers = start_workers(engine, 1, tmp_path)
    try:
        api = Client(app)
        project = api("post", "/projects", json={"name": "pooled", "git_strategy": "branch"})
        a = api("post", "/beads", json={"project_id": project["id"], "title": "chain-A"})
        b = api("post", "/beads", json={"project_id": project["id"], "title": "chain-B", "blocked_by": [a["id"]]})
        for n in range(8):  # the same statements, many times: prepared statements would break here
            api("patch", f"/beads/{b['id']}", json={"description": f"revision {n}"})
            api("post", f"/beads/{b['id']}/comments", json={"text": f"comment {n}"})
            assert api("get", f"/beads?project_id={project['id']}")["total"] == 2

        def both_closed():
            """both beads to close"""
            return all(api("get", f"/beads/{x['id']}")["status"] == "closed" for x in (a, b))
        wait_for(both_closed, timeout=120, interval=0.3)
        for bead in (a, b):
            steps = api("get", f"/beads/{bead['id']}/steps")["items"]
            assert [s["seq"] for s in steps] == [1, 2, 3]
            runs = api("get", f"/beads/{bead['id']}/runs")["items"]
            assert [(r["status"], r["iterations"]) for r in runs] == [("finished", 3)]
        assert len(api("get", f"/beads/{b['id']}/comments")["items"]) == 8
        assert app.test_client().get("/health/ready").status_code == 200
    finally:
        stop(workers)
        llm.stop()
        with app.app_context():
            db.engine.dispose()
    log = (tmp_path / "worker0.log").read_text()
    assert "Traceback" not in log and "prepared statement" not in log, log[-3000:]
    stats = pgbouncer.stats(name)
    # 2 beads x 3 steps (several commits each) and 24 API writes and reads: far more than 100 transactions, had
    # they not gone through PgBouncer its count would be near 0
    assert stats and stats["total_xact_count"] > 100, stats
