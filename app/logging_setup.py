"""Process logging for web, worker and beat: one stderr handler on the root logger, text or JSON lines,
the bead/run/agent/project being worked on (from context variables), and secrets redacted from every line.

A leaf module: it imports nothing from the app, so services, workers and the factory may all use it.
(The log table that `GET /api/v1/logs` shows is app/services/logs.py, a different thing.)
"""
from __future__ import annotations

import contextlib
import contextvars
import json
import logging
import re
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from typing import Any

FORMATS = ("text", "json")
CONTEXT_KEYS = ("project_id", "bead_id", "run_id", "agent_id", "task_id")
_context: contextvars.ContextVar[Mapping[str, Any] | None] = contextvars.ContextVar("loom_log_context", default=None)


@contextlib.contextmanager
def log_context(**ids: Any) -> Iterator[None]:
    """Every log line written inside this block (same thread or task) carries these ids."""
    token = _context.set({**(_context.get() or {}), **{k: v for k, v in ids.items() if v is not None}})
    try:
        yield
    finally:
        _context.reset(token)


def current_context() -> dict[str, Any]:
    return dict(_context.get() or {})


# --- redaction: applied to the finished text of every line (message, traceback), whatever its source

REDACTED = "[REDACTED]"
_PATTERNS: list[tuple[re.Pattern[str], str]] = [
    (re.compile(r"\b(loom_[0-9a-f]{8}_)[A-Za-z0-9_-]+"), r"\1" + REDACTED),  # our API keys: the prefix stays
    (re.compile(r"(?i)\b(bearer\s+)[A-Za-z0-9._~+/=-]{6,}"), r"\1" + REDACTED),
    (re.compile(r"\b(sk-)[A-Za-z0-9_-]{6,}"), r"\1" + REDACTED),  # OpenAI-style provider keys
    (re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://[^\s:/@]*:)[^\s@/]+@"), r"\1" + REDACTED + "@"),  # URL passwords
    (re.compile(r"(?i)([?&](?:api[_-]?key|key|token|access_token|password|secret)=)[^&\s#]+"), r"\1" + REDACTED),
    (re.compile(r"(?i)\b(api[_-]?key|secret[_-]?key|password|passwd|secret)([\"']?\s*[:=]\s*[\"']?)[^\s\"',;&}]{4,}"),
     r"\1\2" + REDACTED),
]
_known: set[str] = set()  # secrets configured at run time (provider keys, the secret key, passwords)
_known_lock = threading.Lock()
MAX_KNOWN = 512


def remember_secret(value: str | None) -> None:
    """Redact this exact value from every later log line (too-short values are ignored: they would
    mangle ordinary words)."""
    if not value or len(value) < 6:
        return
    with _known_lock:
        if len(_known) < MAX_KNOWN:
            _known.add(value)


def redact(text: str) -> str:
    for secret in sorted(_known, key=len, reverse=True):
        if secret in text:
            text = text.replace(secret, REDACTED)
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)
    return text


# --- formatting

class ContextFilter(logging.Filter):
    """Copies the context ids onto the record (an explicit `extra=` value wins)."""

    def filter(self, record: logging.LogRecord) -> bool:
        for key, value in (_context.get() or {}).items():
            if getattr(record, key, None) is None:
                setattr(record, key, value)
        return True


class QuietBeatSendErrors(logging.Filter):
    """Celery Beat logs each scheduled task it fails to send with the sending stack and the whole traceback
    ("Message Error: ..."): while Redis is down that is dozens of lines every 10 s. One line a minute says it."""

    def __init__(self, every_s: float = 60.0) -> None:
        super().__init__()
        self.every_s, self.last = every_s, float("-inf")

    def filter(self, record: logging.LogRecord) -> bool:
        if record.name != "celery.beat" or not str(record.msg).startswith("Message Error"):
            return True
        now = time.monotonic()
        if now - self.last < self.every_s:
            return False
        self.last = now
        error = record.args[0] if isinstance(record.args, tuple) and record.args else record.exc_info
        record.msg = "scheduled tasks are not being sent (is the broker reachable?): %s; Beat tries again every " \
                     "tick, and says so at most once a minute"
        record.args, record.exc_info, record.exc_text = (error,), None, None
        return True


def _ids(record: logging.LogRecord) -> dict[str, Any]:
    return {key: value for key in CONTEXT_KEYS if (value := getattr(record, key, None)) is not None}


class JsonFormatter(logging.Formatter):
    """One JSON object a line: ts, level, logger, message, the context ids, and exc when there is one."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname, "logger": record.name, "message": redact(record.getMessage()),
            **_ids(record), "process": record.process, "thread": record.threadName}
        if record.exc_info:
            entry["exc"] = redact(self.formatException(record.exc_info))
        if record.stack_info:
            entry["stack"] = redact(self.formatStack(record.stack_info))
        return json.dumps(entry, default=str, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    """A readable line: time, level, logger, [ids], message (tracebacks follow on their own lines)."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)-7s %(name)s%(ids)s %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        ids = _ids(record)
        record.ids = " [" + " ".join(f"{k.removesuffix('_id')}={v}" for k, v in ids.items()) + "]" if ids else ""
        return redact(super().format(record))


class LoomHandler(logging.StreamHandler):
    """Writes to the process's real stderr (file descriptor 2), not to whatever object sys.stderr is at
    the moment: code that swaps sys.stderr to capture its own output (click's CliRunner, pytest's
    capsys) neither receives log lines nor leaves the handler holding a closed stream."""

    def __init__(self) -> None:
        logging.Handler.__init__(self)

    @property
    def stream(self):  # type: ignore[override]
        return sys.__stderr__ or sys.stderr


def build_handler(fmt: str = "text") -> LoomHandler:
    if fmt not in FORMATS:
        raise ValueError(f"LOOM_LOG_FORMAT must be one of {', '.join(FORMATS)}, not {fmt!r}")
    handler = LoomHandler()
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    handler.addFilter(ContextFilter())
    handler.addFilter(QuietBeatSendErrors())
    return handler


def configure_logging(level: str = "INFO", fmt: str = "text", secrets: tuple[str | None, ...] = ()) -> None:
    """Point the root logger at one Loom handler (replacing an earlier one) at LOOM_LOG_LEVEL."""
    name = str(level).upper()
    if not isinstance(logging.getLevelName(name), int):
        raise ValueError(f"LOOM_LOG_LEVEL must be a log level name (DEBUG, INFO, WARNING, ERROR), not {level!r}")
    handler = build_handler(fmt)
    for value in secrets:
        remember_secret(value)
    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, LoomHandler)]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(name)
    logging.captureWarnings(True)  # Python warnings become log lines too (JSON like the rest)


def gunicorn_logconfig(level: str = "INFO", fmt: str = "text") -> dict:
    """gunicorn's `logconfig_dict`: its own loggers propagate to the Loom handler on the root logger."""
    name = str(level).upper()
    return {
        "root": {"level": name, "handlers": ["loom"]},
        "loggers": {"gunicorn.error": {"level": name, "handlers": [], "propagate": True},
                    "gunicorn.access": {"level": name, "handlers": [], "propagate": True}},  # one line a request
        "handlers": {"loom": {"()": build_handler, "fmt": fmt}},
        "formatters": {},
    }
