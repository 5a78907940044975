"""The README stays true to the code: every setting is documented, the quick start is the two commands."""
from __future__ import annotations

import re

from app.config import DEFAULTS
from tests.conftest import ROOT

README = (ROOT / "README.md").read_text()


def test_every_setting_is_in_the_configuration_table():
    documented = set(re.findall(r"^\| `LOOM_([A-Z0-9_]+)` \|", README, flags=re.M))
    assert set(DEFAULTS) - documented == set(), "settings missing from the README's table"
    assert documented - set(DEFAULTS) - {"TEST_DATABASE_URL", "TEST_REDIS_URL", "SERVER", "API_KEY", "CONFIG_DIR",
                                         "BENCH_DATABASE_URL", "BENCH_REDIS_URL", "BENCH_KEEP", "BENCH_WORKER_APP",
                                         "BENCH_WORKER_ARGS", "TEST_CHROMIUM"} == set(), "documented, not real"


def test_the_quick_start_is_two_commands():
    quick = README.split("## Quick start", 1)[1].split("```sh", 1)[1].split("```", 1)[0]
    commands = [line.split("#")[0].strip() for line in quick.strip().splitlines()]
    assert commands == ["make run", "make test"]


def test_the_screenshot_it_shows_exists():
    for image in re.findall(r"!\[[^\]]*\]\(([^)]+)\)", README):
        assert (ROOT / image).is_file(), image
