"""Structured logs: real web, worker and Beat processes with LOOM_LOG_FORMAT=json run a bead; every line is
JSON, step lines carry the bead/run/agent ids, LOOM_LOG_LEVEL is honoured, and secrets never reach a line."""
from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx
import pytest

from app.logging_setup import REDACTED, configure_logging, log_context, redact
from tests.conftest import ROOT, VENV_BIN, free_port
from tests.test_engine import Client, wait_for
from tests.test_engine_workers import SCRIPT

FIELDS = {"ts", "level", "logger", "message"}


@pytest.mark.parametrize("text, secret", [
    ("key loom_0123abcd_Zx9-Qw8_Er7tY6uI5oP4aS3dF2gH1jK0lZxCvBnM123 rejected", "Zx9-Qw8_Er7tY6"),
    ("Authorization: Bearer eyJhbGciOi.payload.signature", "eyJhbGciOi"),
    ("provider said: invalid key sk-proj-AbCdEf0123456789", "AbCdEf0123456789"),
    ("connect postgresql://loom:hunter2-pass@pgbouncer:5432/loom failed", "hunter2-pass"),
    ("GET /v1/models?api_key=abc123secret&x=1", "abc123secret"),
    ('{"password": "s3cr3t-value"}', "s3cr3t-value"),
])
def test_redaction_patterns(text, secret):
    cleaned = redact(text)
    assert secret not in cleaned and REDACTED in cleaned


def test_configured_secrets_and_context_ids_in_json_lines(capfd):
    secret = "plain-" + uuid.uuid4().hex  # matches no pattern: only the configured value hides it
    configure_logging("DEBUG", "json", secrets=(secret,))
    log = logging.getLogger("loom.test")
    with log_context(bead_id=7, run_id=9):
        log.info("provider key is %s", secret)
        try:
            raise ValueError(f"boom with {secret}")
        except ValueError:
            log.exception("failed")
    log.debug("outside")
    configure_logging("INFO", "text")
    lines = [json.loads(line) for line in capfd.readouterr().err.splitlines() if line.startswith("{")]
    mine = [entry for entry in lines if entry["logger"] == "loom.test"]
    assert [e["message"] for e in mine] == [f"provider key is {REDACTED}", "failed", "outside"]
    assert all(secret not in json.dumps(e) for e in mine) and "boom with" in mine[1]["exc"]
    assert (mine[0]["bead_id"], mine[0]["run_id"]) == (7, 9) and "bead_id" not in mine[2]
    with pytest.raises(ValueError, match="LOOM_LOG_FORMAT"):
        configure_logging("INFO", "xml")


def test_beat_says_once_a_minute_that_it_cannot_send_not_a_traceback_a_task(capfd):
    """What celery.beat's Scheduler.apply_entry logs for each entry while Redis is down."""
    configure_logging("INFO", "json")
    beat = logging.getLogger("celery.beat")
    for _ in range(6):  # six entries due in one tick, or the ticks of the next minute
        try:
            raise ConnectionRefusedError(111, "Connection refused")
        except ConnectionRefusedError as exc:
            beat.error("Message Error: %s\n%s", exc, ["  File beat.py, line 1, in tick\n"], exc_info=True)
    beat.info("Scheduler: Sending due task ralph-tick (loom.ralph_tick)")  # other lines pass untouched
    configure_logging("INFO", "text")
    lines = [json.loads(line) for line in capfd.readouterr().err.splitlines() if line.startswith("{")]
    mine = [entry for entry in lines if entry["logger"] == "celery.beat"]
    assert len(mine) == 2 and "exc" not in mine[0] and "File beat.py" not in mine[0]["message"]
    assert "not being sent" in mine[0]["message"] and "Connection refused" in mine[0]["message"]
    assert mine[1]["message"].startswith("Scheduler: Sending due task")
    with pytest.raises(ValueError, match="LOOM_LOG_LEVEL"):
        configure_logging("LOUD", "json")


def _start(name: str, argv: list[str], env: dict, tmp_path: Path) -> subprocess.Popen:
    with open(tmp_path / f"{name}.out", "wb") as out, open(tmp_path / f"{name}.err", "wb") as err:
        return subprocess.Popen(argv, cwd=ROOT, env=env, stdout=out, stderr=err)


def _json_lines(path: Path) -> list[dict]:
    entries = []
    for line in path.read_text().splitlines():
        entry = json.loads(line)  # every line, or the test fails here
        assert FIELDS <= set(entry), line
        entries.append(entry)
    return entries


def test_web_worker_and_beat_log_json_with_ids_and_no_secrets(make_engine, tmp_path):
    engine = make_engine(SCRIPT, DEFAULT_TEAM="engineer")
    password, key = "url-pass-" + uuid.uuid4().hex[:12], "provider-key-" + uuid.uuid4().hex
    secret_url = engine.llm.url.replace("http://", f"http://loom:{password}@")
    env = {**engine.env(), "LOOM_PROVIDER_URL": secret_url, "LOOM_PROVIDER_API_KEY": key,
           "LOOM_LOG_FORMAT": "json", "LOOM_LOG_LEVEL": "INFO", "LOOM_RALPH_INTERVAL": "1"}
    celery = [sys.executable, "-m", "celery", "-A", "workers.celery_app", "--quiet"]
    port = free_port()
    procs = {
        "worker": _start("worker", [*celery, "worker", "-P", "threads", "-c", "4", "-n", "logs@%h", "-Q", "default",
                                    "--without-gossip", "--without-mingle"], env, tmp_path),
        # Celery's --loglevel is ignored: LOOM_LOG_LEVEL (INFO here) is the one knob.
        "beat": _start("beat", [*celery, "beat", "-s", str(tmp_path / "schedule"), "--loglevel", "ERROR"], env,
                       tmp_path),
        "web": _start("web", [str(VENV_BIN / "gunicorn"), "-b", f"127.0.0.1:{port}", "app.wsgi:app"],
                      {**env, "LOOM_AUTO_DISPATCH": "false"}, tmp_path),
    }
    try:
        url = f"http://127.0.0.1:{port}"
        wait_for(lambda: _ready(url), timeout=30)
        leaked = "loom_deadbeef_" + uuid.uuid4().hex  # a wrong API key: refused, and never logged whole
        assert httpx.get(f"{url}/api/v1/beads", headers={"X-API-Key": leaked}).status_code == 401
        api = Client(engine.app)
        project = api("post", "/projects", json={"name": "logged", "git_strategy": "branch"})
        bead = api("post", "/beads", json={"project_id": project["id"], "title": "log me"})
        wait_for(lambda: api("get", f"/beads/{bead['id']}")["status"] == "closed", timeout=90, interval=0.3)
        run = api("get", f"/beads/{bead['id']}/runs")["items"][0]
        wait_for(lambda: "loom.ralph_tick" in (tmp_path / "worker.err").read_text(), timeout=30)  # Beat ran
    finally:
        for proc in procs.values():
            proc.terminate()
        for proc in procs.values():
            proc.wait(30)

    outputs = {p.name: p.read_text() for p in tmp_path.iterdir() if p.suffix in (".out", ".err")}
    for name, text in outputs.items():
        assert password not in text and key not in text and leaked[14:] not in text, name
    worker, beat, web = (_json_lines(tmp_path / f"{n}.err") for n in ("worker", "beat", "web"))
    assert outputs["web.out"] == outputs["beat.out"] == ""
    assert all(line.startswith("worker: ") for line in outputs["worker.out"].splitlines() if line.strip())  # notices

    steps = [e for e in worker if e["logger"] == "loom.worker" and "step done" in e["message"]]
    assert len(steps) == 3, steps
    for entry in steps:
        assert (entry["bead_id"], entry["run_id"], entry["agent_id"], entry["project_id"]) == \
            (bead["id"], run["id"], run["agent_id"], project["id"]) and entry["task_id"]
    calls = [e for e in worker if e["logger"] == "httpx" and "/chat/completions" in e["message"]]
    assert calls and all(f"loom:{REDACTED}@" in e["message"] and e["run_id"] == run["id"] for e in calls)
    assert any(e["logger"] == "loom.dispatch" and e.get("run_id") == run["id"] for e in worker)
    assert any(e["logger"].startswith("celery") for e in worker)  # Celery's own lines come through too
    assert any(e["level"] == "INFO" and "loom.ralph_tick" in e["message"] for e in beat), beat
    assert any(e["logger"] == "gunicorn.error" and "Booting worker" in e["message"] for e in web)


def _ready(url: str) -> bool:
    try:
        return httpx.get(f"{url}/health/ready", timeout=1).status_code == 200
    except httpx.HTTPError:
        time.sleep(0.2)
        return False


def test_make_run_style_text_logs_stay_readable(tmp_path):
    """Without LOOM_LOG_FORMAT a process writes one readable text line per record, ids in brackets; with
    LOOM_LOG_LEVEL=ERROR it writes no warnings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOOM_")} | {"LOOM_DATA_DIR": str(tmp_path)}
    code = ("import logging; from app import create_app; from app.logging_setup import log_context\n"
            "create_app()\n"
            "with log_context(bead_id=3, run_id=4):\n    logging.getLogger('loom.demo').warning('hello')\n"
            "logging.getLogger('loom.demo').error('bye')\n")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True,
                         check=True)
    lines = out.stderr.strip().splitlines()
    assert lines[-2].endswith("WARNING loom.demo [bead=3 run=4] hello") and lines[-1].endswith("ERROR   loom.demo bye")
    quiet = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env={**env, "LOOM_LOG_LEVEL": "ERROR"},
                           capture_output=True, text=True, check=True)
    assert "hello" not in quiet.stderr and quiet.stderr.strip().endswith("ERROR   loom.demo bye"), quiet.stderr
