"""gunicorn settings for Loom's web process, read from the LOOM_* settings (app/config.py).

gunicorn loads ./gunicorn.conf.py by itself; command-line flags still win (`make run` passes its own).
gthread workers: flask-sock websockets and SSE streams each hold a thread for as long as they are open,
so LOOM_WEB_THREADS bounds the open streams per process (LOOM_WEB_WORKERS processes).
"""
from app.config import load_config
from app.logging_setup import gunicorn_logconfig

_cfg = load_config()

bind = f"0.0.0.0:{_cfg['PORT']}"
worker_class = "gthread"
workers = _cfg["WEB_WORKERS"]
threads = _cfg["WEB_THREADS"]
timeout = 120  # a worker silent this long is restarted; streams stay alive: every thread answers separately
graceful_timeout = 20
keepalive = 5
loglevel = _cfg["LOG_LEVEL"].lower()
logconfig_dict = gunicorn_logconfig(_cfg["LOG_LEVEL"], _cfg["LOG_FORMAT"])
# Request lines up to 8 KiB (gunicorn's most; its default 4 KiB answered a long filtered list URL with an HTML 414).
limit_request_line = 8190
