"""Browser tests: a real Loom stack (gunicorn web, Celery worker processes, scripted LLM over HTTP, real
Redis and database) driven by headless Chromium through Playwright. Screenshots go to test-artifacts/."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

import httpx
import psutil
import pytest

from tests.conftest import ADMIN_PASSWORD, CHROMIUM, ROOT, start_live_server

ARTIFACTS = ROOT / "test-artifacts" / "screenshots"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-sync",
                 "--disable-background-networking", "--disable-component-update", "--disable-dev-shm-usage"]


@pytest.fixture(scope="module")  # Playwright's event loop must stop before other tests use asyncio.run()
def browser():
    if not os.path.exists(CHROMIUM):
        pytest.fail(f"Chromium not found at {CHROMIUM} (apt-get install chromium, or set LOOM_TEST_CHROMIUM)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        instance = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield instance
        instance.close()


@dataclass
class Stack:
    """One running Loom: its URL, the engine behind it (database, Redis, scripted LLM) and its processes."""

    url: str
    engine: object
    web: subprocess.Popen
    workers: list[subprocess.Popen] = field(default_factory=list)
    _tokens: dict = field(default_factory=dict)

    def token(self, username: str = "admin", password: str = ADMIN_PASSWORD) -> str:
        if username not in self._tokens:
            response = httpx.post(f"{self.url}/api/v1/auth/login", json={"username": username, "password": password})
            response.raise_for_status()
            self._tokens[username] = response.json()["token"]
        return self._tokens[username]

    def api(self, method: str, path: str, *, username: str = "admin", password: str = ADMIN_PASSWORD, **kwargs):
        """Call the REST API as a user; returns the decoded JSON and fails the test on an error status."""
        response = httpx.request(method, f"{self.url}/api/v1{path}", timeout=30,
                                 headers={"Authorization": f"Bearer {self.token(username, password)}"}, **kwargs)
        assert response.status_code < 400, (method, path, response.status_code, response.text[:500])
        return response.json() if response.content else None

    def kill_web_workers(self) -> list[int]:
        """SIGKILL gunicorn's worker processes (its master starts new ones): every live connection drops."""
        killed = []
        for child in psutil.Process(self.web.pid).children():
            os.kill(child.pid, signal.SIGKILL)
            killed.append(child.pid)
        return killed


@pytest.fixture()
def make_stack(make_engine):
    """`make_stack(script, workers=1, **config)`: a whole stack for one test; stopped afterwards."""
    stacks: list[Stack] = []

    def make(script: dict, workers: int = 1, **config) -> Stack:
        engine = make_engine(script, **config)
        env = {key: value for key, value in engine.env().items() if key.startswith("LOOM_")}
        env.update({"LOOM_AUTO_DISPATCH": "true", **{f"LOOM_{k}": str(v) for k, v in config.items()}})
        web, server = start_live_server(engine.database_url, engine.redis_url, engine.data_dir, threads=64,
                                        extra_env=env)
        stack = Stack(server.url, engine, web)
        stacks.append(stack)
        for n in range(workers):
            with open(engine.data_dir / f"worker{n}.log", "ab") as log:
                stack.workers.append(subprocess.Popen(
                    [sys.executable, "-m", "celery", "-A", "workers.celery_app", "worker", "-P", "threads",
                     "-c", "8", "-n", f"ui{n}@%h", "-Q", "default", "--loglevel", "WARNING", "--without-gossip",
                     "--without-mingle"], cwd=ROOT, env={**engine.env(), **env}, stdout=log,
                    stderr=subprocess.STDOUT))
        return stack

    yield make
    for stack in stacks:
        for proc in [*stack.workers, stack.web]:
            proc.terminate()
        for proc in [*stack.workers, stack.web]:
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


class Pages:
    """Open pages in fresh browser contexts (one per user), with console errors collected."""

    def __init__(self, browser, artifacts: Path) -> None:
        self.browser = browser
        self.artifacts = artifacts
        self.contexts = []
        self.errors: list[str] = []

    def open(self, stack: Stack, username: str = "admin", password: str = ADMIN_PASSWORD, path: str = "/",
             viewport: dict | None = None):
        context = self.browser.new_context(viewport=viewport or {"width": 1280, "height": 900})
        context.set_default_timeout(15_000)
        self.contexts.append(context)
        page = context.new_page()
        page.on("pageerror", lambda exc: self.errors.append(f"{username}: {exc}"))
        page.goto(f"{stack.url}/login?next={quote(path, safe='/')}")
        page.fill("#username", username)
        page.fill("#password", password)
        page.click("button[type=submit]")
        page.wait_for_url(f"{stack.url}{path.split('?')[0]}*")
        return page

    def shot(self, page, name: str) -> Path:
        self.artifacts.mkdir(parents=True, exist_ok=True)
        path = self.artifacts / f"{name}.png"
        page.screenshot(path=str(path), full_page=True)
        return path

    def close(self) -> None:
        for context in self.contexts:
            context.close()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.when == "call":
        item.loom_failed = report.failed


@pytest.fixture()
def pages(browser, request):
    helper = Pages(browser, ARTIFACTS)
    yield helper
    if getattr(request.node, "loom_failed", False):  # what every open page showed when the test failed
        for n, context in enumerate(helper.contexts):
            for m, page in enumerate(context.pages):
                try:
                    helper.shot(page, f"FAILED-{request.node.name}-{n}-{m}")
                except Exception:  # noqa: BLE001 (a closed page cannot be photographed; keep going)
                    pass
    helper.close()
    assert not helper.errors, f"JavaScript errors on the pages: {helper.errors}"


def wait_until(predicate, timeout: float = 30.0, interval: float = 0.2):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {predicate.__doc__ or predicate}")
