"""docker-compose.yml, the Procfile and the Dockerfile refer only to things that exist in the project.

No compose engine runs here, so the files are checked against the code: service dependencies, every LOOM_*
variable a real setting, every command a real entry point that the real CLI parsers accept (celery's click
commands, Flask's `loom` group, gunicorn's config), the queues the dispatcher uses, health checks, one image,
and an image layout (the Dockerfile's COPY lines replayed) that boots.
"""
from __future__ import annotations

import ast
import copy
import importlib.util
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import yaml
from celery import Celery
from celery.bin.base import CLIContext
from celery.bin.celery import celery as celery_cli
from flower.options import options as flower_options

from app.config import DEFAULTS
from tests.conftest import ROOT, VENV_BIN

APP_SERVICES = {"migrate", "web", "worker", "worker-project-1", "beat", "flower"}
REQUIRED = APP_SERVICES | {"postgres", "pgbouncer", "redis"}
HEALTHCHECKED = {"postgres", "pgbouncer", "redis", "web"}
QUEUE = re.compile(r"^(default|project\.[1-9]\d*)$")
CONDITIONS = {"service_started", "service_healthy", "service_completed_successfully"}


def load_compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def load_procfile() -> dict[str, str]:
    entries = {}
    for line in (ROOT / "Procfile").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, _, command = line.partition(":")
            entries[name.strip()] = command.strip()
    return entries


def _defines(module: str, name: str) -> bool:
    """The module exists and assigns `name` at top level (checked without importing: importing app.wsgi
    would build an app from this process's environment)."""
    spec = importlib.util.find_spec(module)
    if spec is None or spec.origin is None:
        return False
    tree = ast.parse(Path(spec.origin).read_text())
    return any((isinstance(node, ast.Assign) and any(getattr(t, "id", None) == name for t in node.targets))
               or (isinstance(node, ast.FunctionDef | ast.ClassDef) and node.name == name) for node in tree.body)


def _celery_problems(argv: list[str], where: str) -> list[str]:
    try:
        ctx = celery_cli.make_context("celery", argv[1:])
        ctx.obj = CLIContext(app=Celery("deploy-check", set_as_current=False), no_color=True, workdir=None,
                             quiet=True)
        tokens = [*getattr(ctx, "_protected_args", []), *ctx.args]
        name, command, rest = celery_cli.resolve_command(ctx, tokens)
        sub = command.make_context(name, rest, parent=ctx)
    except Exception as exc:  # noqa: BLE001 (click's errors are the finding)
        return [f"{where}: celery rejects {shlex.join(argv)!r}: {exc}"]
    problems = []
    if not _defines(ctx.params.get("app") or "", "app"):
        problems.append(f"{where}: -A {ctx.params.get('app')} is not a module that defines a Celery `app`")
    for queue in sub.params.get("queues") or []:
        if not QUEUE.match(queue):
            problems.append(f"{where}: queue {queue!r} is neither `default` nor `project.<id>`")
    for arg in sub.params.get("tornado_argv") or ():  # flower's own options
        option = arg.lstrip("-").split("=", 1)[0]
        if option.replace("-", "_") not in flower_options._options and option not in flower_options._options:
            problems.append(f"{where}: flower has no option --{option}")
    return problems


def command_problems(command, where: str, flask_app) -> list[str]:
    argv = shlex.split(command) if isinstance(command, str) else list(command)
    if argv[:1] == ["CMD-SHELL"]:
        argv = shlex.split(argv[1])
    elif argv[:1] == ["CMD"]:
        argv = argv[1:]
    if not argv:
        return [f"{where}: empty command"]
    tool = argv[0]
    if tool == "celery":
        return _celery_problems(argv, where)
    if tool == "gunicorn":
        problems = []
        if "-c" in argv and not (ROOT / argv[argv.index("-c") + 1]).is_file():
            problems.append(f"{where}: gunicorn config {argv[argv.index('-c') + 1]} does not exist")
        module, _, attr = argv[-1].partition(":")
        if not _defines(module, attr or "application"):
            problems.append(f"{where}: {argv[-1]} is not a WSGI app in the project")
        return problems
    if tool == "flask":
        if argv[1:3] != ["--app", "app"] or not _defines("app.factory", "create_app"):
            return [f"{where}: flask must load the app factory with --app app"]
        group = flask_app.cli.commands.get(argv[3]) if len(argv) > 3 else None
        if group is None or len(argv) < 5 or argv[4] not in getattr(group, "commands", {}):
            return [f"{where}: `flask {' '.join(argv[3:])}` is not a command of the app"]
        return []
    if tool == "python":
        paths = re.findall(r"http://127\.0\.0\.1:\d+(/[\w/.-]*)", " ".join(argv))
        adapter = flask_app.url_map.bind("localhost")
        return [f"{where}: {path} is not a route" for path in paths if not adapter.test(path, "GET")]
    if tool in ("pg_isready", "redis-cli", "redis-server"):
        return []
    return [f"{where}: unknown program {tool!r}"]


def _env(service: dict) -> dict:
    env = service.get("environment") or {}
    return dict(item.split("=", 1) for item in env) if isinstance(env, list) else env


def compose_problems(doc: dict, flask_app) -> list[str]:
    services = doc.get("services") or {}
    problems = [f"service {name} is missing" for name in sorted(REQUIRED - set(services))]
    volumes = set(doc.get("volumes") or {})
    for name, service in services.items():
        depends = service.get("depends_on") or {}
        for dep, how in (depends.items() if isinstance(depends, dict) else ((d, {}) for d in depends)):
            if dep not in services:
                problems.append(f"{name}: depends on {dep}, which is not a service")
                continue
            condition = (how or {}).get("condition", "service_started")
            if condition not in CONDITIONS:
                problems.append(f"{name}: unknown condition {condition}")
            if condition == "service_healthy" and "healthcheck" not in services[dep]:
                problems.append(f"{name}: waits for {dep} to be healthy, but {dep} has no healthcheck")
        for key in _env(service):
            if key.startswith("LOOM_") and key[5:] not in DEFAULTS:
                problems.append(f"{name}: {key} is not a setting in app/config.py")
        for mount in service.get("volumes") or []:
            source = str(mount).split(":", 1)[0]
            if not source.startswith((".", "/")) and source not in volumes:
                problems.append(f"{name}: volume {source} is not declared")
        if "command" in service:
            problems += command_problems(service["command"], f"{name}.command", flask_app)
        if "healthcheck" in service:
            problems += command_problems(service["healthcheck"]["test"], f"{name}.healthcheck", flask_app)
    for name in sorted(HEALTHCHECKED & set(services)):
        if "healthcheck" not in services[name]:
            problems.append(f"{name}: no healthcheck")
    images = {(str(services[n].get("build")), services[n].get("image")) for n in APP_SERVICES & set(services)}
    if len(images) != 1 or None in next(iter(images)):
        problems.append(f"the app services do not share one build and image: {sorted(images, key=str)}")
    problems += _database_route_problems(services)
    return problems


def _database_route_problems(services: dict) -> list[str]:
    """The app goes through PgBouncer in transaction mode; only migrate (DDL) goes to PostgreSQL directly."""
    problems = []
    bouncer = _env(services.get("pgbouncer", {}))
    if bouncer.get("POOL_MODE") != "transaction":
        problems.append("pgbouncer: POOL_MODE must be transaction")
    for name in APP_SERVICES & set(services):
        url = urlsplit(_env(services[name]).get("LOOM_DATABASE_URL", ""))
        wanted = ("postgres", 5432) if name == "migrate" else ("pgbouncer", int(bouncer.get("LISTEN_PORT", 0)))
        if (url.hostname, url.port) != wanted:
            problems.append(f"{name}: LOOM_DATABASE_URL goes to {url.hostname}:{url.port}, not {wanted}")
        redis = urlsplit(_env(services[name]).get("LOOM_REDIS_URL", "")).hostname
        if redis not in services:
            problems.append(f"{name}: LOOM_REDIS_URL host {redis} is not a service")
    return problems


def procfile_problems(entries: dict[str, str], flask_app) -> list[str]:
    problems = [f"Procfile: no {name} process" for name in ("web", "worker", "beat", "flower") if name not in entries]
    for name, command in entries.items():
        problems += command_problems(command, f"Procfile {name}", flask_app)
    if "web" in entries and not entries["web"].startswith("gunicorn"):
        problems.append("Procfile web: not gunicorn")
    return problems


def dockerfile_copies(text: str) -> list[str]:
    sources = []
    for line in text.splitlines():
        parts = shlex.split(line) if line.strip().startswith("COPY ") else []
        sources += [p for p in parts[1:-1] if not p.startswith("--")]
    return sources


def dockerfile_problems(text: str) -> list[str]:
    copied = dockerfile_copies(text)
    problems = [f"Dockerfile: COPY {src} does not exist" for src in copied if not (ROOT / src).exists()]
    needed = {"pyproject.toml", "README.md", "app", "workers", "beat_schedule.py", "migrations", "templates",
              "static", "gunicorn.conf.py"}  # what `pip install` and the factory (ROOT-relative paths) read
    problems += [f"Dockerfile: {path} is not copied" for path in sorted(needed - set(copied))]
    ignored = [p.strip() for p in (ROOT / ".dockerignore").read_text().splitlines() if p.strip()[:1] not in "#"]
    problems += [f".dockerignore excludes {src}, which the Dockerfile copies" for src in copied if src in ignored]
    for key in re.findall(r"\b(LOOM_\w+)=", text):
        if key[5:] not in DEFAULTS:
            problems.append(f"Dockerfile: {key} is not a setting")
    if not re.search(r"^USER\s+(?!root)\w+", text, re.M):
        problems.append("Dockerfile: the image runs as root")
    return problems


def test_compose_file_refers_only_to_real_things(app):
    assert compose_problems(load_compose(), app) == []


def test_procfile_refers_only_to_real_things(app):
    assert procfile_problems(load_procfile(), app) == []


def test_dockerfile_copies_what_the_app_needs():
    assert dockerfile_problems((ROOT / "Dockerfile").read_text()) == []


def test_the_checkers_catch_bad_references(app):
    """Each mutation of a copy of the real files must be reported (so the checks above can fail)."""
    good = load_compose()
    mutations = {
        "depends on nowhere": lambda d: d["services"]["web"]["depends_on"].update({"nowhere": {}}),
        "not a setting": lambda d: d["services"]["worker"]["environment"].update({"LOOM_NOT_A_SETTING": "1"}),
        "not a module": lambda d: d["services"]["beat"].update(command=["celery", "-A", "workers.nope", "beat"]),
        "neither `default`": lambda d: d["services"]["worker-project-1"].update(
            command=["celery", "-A", "workers.celery_app", "worker", "-Q", "project.one"]),
        "celery rejects": lambda d: d["services"]["worker"].update(
            command=["celery", "-A", "workers.celery_app", "worker", "-P", "fibers"]),
        "not a command of the app": lambda d: d["services"]["migrate"].update(
            command=["flask", "--app", "app", "loom", "initialise"]),
        "not a route": lambda d: d["services"]["web"]["healthcheck"].update(
            test=["CMD", "python", "-c", "urlopen('http://127.0.0.1:8080/health/nope')"]),
        "redis: no healthcheck": lambda d: d["services"]["redis"].pop("healthcheck"),
        "share one build": lambda d: d["services"]["flower"].update(image="someone/else"),
        "POOL_MODE must be transaction": lambda d: d["services"]["pgbouncer"]["environment"].update(
            POOL_MODE="session"),
        "goes to postgres:5432": lambda d: d["services"]["worker"]["environment"].update(
            LOOM_DATABASE_URL="postgresql://loom:x@postgres:5432/loom"),
        "is missing": lambda d: d["services"].pop("beat"),
    }
    for expected, mutate in mutations.items():
        doc = copy.deepcopy(good)
        mutate(doc)
        found = compose_problems(doc, app)
        assert any(expected in problem for problem in found), (expected, found)
    bad_procfile = {**load_procfile(), "web": "gunicorn -c gunicorn.conf.py app.wsgi:nothing"}
    assert any("not a WSGI app" in p for p in procfile_problems(bad_procfile, app))
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert any("does not exist" in p for p in dockerfile_problems(dockerfile + "\nCOPY nothing-here ./\n"))
    assert any("templates is not copied" in p for p in dockerfile_problems(dockerfile.replace("COPY templates", "#")))
    assert any("runs as root" in p for p in dockerfile_problems(dockerfile.replace("USER loom", "")))


def test_project_workers_consume_the_queue_the_dispatcher_uses(ctx, api):
    from workers.loop import queue_for

    project = api.post("/api/v1/projects", json={"name": "dedicated-q", "dedicated": True}).get_json()
    queue = queue_for(project["id"])
    assert QUEUE.match(queue) and queue == f"project.{project['id']}"
    argv = load_compose()["services"]["worker-project-1"]["command"]
    assert re.fullmatch(r"project\.\d+", argv[argv.index("-Q") + 1])


def test_gunicorn_config_threads_and_json_logs(tmp_path):
    env = {**os.environ, "LOOM_DATA_DIR": str(tmp_path), "LOOM_WEB_THREADS": "7", "LOOM_WEB_WORKERS": "3",
           "LOOM_LOG_FORMAT": "json", "LOOM_PORT": "8123"}
    out = subprocess.run([str(VENV_BIN / "gunicorn"), "--print-config", "app.wsgi:app"], cwd=ROOT, env=env,
                         capture_output=True, text=True, check=True).stdout
    settings = dict(re.findall(r"^(\w+)\s+= (.*)$", out, re.M))
    assert (settings["worker_class"], settings["threads"], settings["workers"]) == ("gthread", "7", "3")
    assert settings["bind"] == "['0.0.0.0:8123']" and "'fmt': 'json'" in settings["logconfig_dict"]
    checked = subprocess.run([str(VENV_BIN / "gunicorn"), "--check-config", "app.wsgi:app"], cwd=ROOT, env=env,
                             capture_output=True, text=True, check=False)
    assert checked.returncode == 0, checked.stderr


@pytest.mark.slow
def test_the_image_layout_boots(tmp_path):
    """Replay the Dockerfile's COPY lines into an empty folder and run Loom from there alone: migrations,
    templates and static files must all be found beside the package, as in the image."""
    image = tmp_path / "srv"
    image.mkdir()
    for src in dockerfile_copies((ROOT / "Dockerfile").read_text()):
        (shutil.copytree if (ROOT / src).is_dir() else shutil.copy2)(ROOT / src, image / Path(src).name)
    data = tmp_path / "data"
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOOM_")}
    env.update({"PYTHONPATH": str(image), "LOOM_DATA_DIR": str(data), "LOOM_ADMIN_PASSWORD": "image-password-1",
                "LOOM_LOG_FORMAT": "json"})
    init = subprocess.run([str(VENV_BIN / "flask"), "--app", "app", "loom", "init"], cwd=image, env=env,
                          capture_output=True, text=True, check=False)
    assert init.returncode == 0, init.stdout + init.stderr
    probe = (
        "import app, sys\n"
        "from app import create_app\n"
        f"assert app.__file__.startswith({str(image)!r}), app.__file__\n"
        "client = create_app().test_client()\n"
        "codes = [client.get(p).status_code for p in ('/login', '/static/loom.css', '/health/live')]\n"
        "print(codes)\n")
    ran = subprocess.run([sys.executable, "-c", probe], cwd=image, env=env, capture_output=True, text=True, check=False)
    assert ran.returncode == 0 and ran.stdout.strip() == "[200, 200, 200]", ran.stdout + ran.stderr
    assert (data / "loom.db").exists()
