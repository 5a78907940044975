"""`loom analytics ...` and `loom budget ...` end to end: CliRunner against the live server, checked over httpx.

The requests are recorded through the same service the loop uses, into the live server's database."""
from __future__ import annotations

import csv
import io
import json

import pytest

from app.services import analytics
from tests.cli_helpers import as_json, failed, ok, table
from tests.conftest import unique

ROWS = [  # model, persona, status, prompt, completion, latency
    ("cli-model-a", "engineer", "ok", 1000, 100, 40.0),
    ("cli-model-a", "engineer", "ok", 2000, 200, 10.0),
    ("cli-model-b", "qa-engineer", "ok", 500, 50, 30.0),
    ("cli-model-b", "qa-engineer", "rate_limit", 0, 0, 5.0),
]


@pytest.fixture()
def recorded(ctx, http) -> int:
    """A fresh project with four recorded requests; returns its id."""
    project_id = http.post("/projects", json={"name": unique("cli-analytics")}).json()["id"]
    for model, persona, status, prompt, completion, latency in ROWS:
        analytics.record_request(model=model, persona=persona, status=status, project_id=project_id,
                                 prompt_tokens=prompt, completion_tokens=completion, latency_ms=latency,
                                 error=None if status == "ok" else "HTTP 429")
    return project_id


def test_summary_totals_and_breakdown(loom, recorded):
    project = str(recorded)
    summary = as_json(loom("-o", "json", "analytics", "--project", project))
    totals = summary["totals"]
    assert (totals["requests"], totals["errors"], totals["tokens"]) == (4, 1, 3850)
    assert (totals["latency_p50_ms"], totals["latency_p95_ms"]) == (30.0, 40.0)  # ok latencies 10, 30, 40
    text = ok(loom("analytics", "summary", "--project", project))
    assert "requests: 4 (ok 3, errors 1, budget refusals 0, error rate 25.0%)" in text
    assert "tokens: 3850 (prompt 3500, completion 350)" in text
    assert "latency: p50 30 ms, p95 40 ms" in text
    assert "no price (counted as $0): cli-model-a, cli-model-b" in text
    rows = table(ok(loom("analytics", "summary", "--project", project, "--group-by", "model")).split("\n\n")[1])
    assert rows[0] == ["MODEL", "REQUESTS", "TOKENS", "COST", "ERRORS", "P50", "P95"]
    assert ["cli-model-a", "2", "3300", "$0.0000", "0", "10 ms", "40 ms"] in rows
    assert ["cli-model-b", "2", "550", "$0.0000", "1", "30 ms", "30 ms"] in rows
    grouped = as_json(loom("-o", "json", "analytics", "--project", project, "--group-by", "persona"))
    assert {g["key"]: g["requests"] for g in grouped["groups"]} == {"engineer": 2, "qa-engineer": 2}
    assert as_json(loom("-o", "json", "analytics", "--project", project, "--status", "rate_limit"))["totals"][
        "requests"] == 1


def test_requests_list_and_filters_before_the_subcommand(loom, recorded):
    page = as_json(loom("-o", "json", "analytics", "--project", str(recorded), "requests", "--limit", "2"))
    assert page["total"] == 4 and [r["model"] for r in page["items"]] == ["cli-model-b", "cli-model-b"]
    rows = table(ok(loom("analytics", "requests", "--project", str(recorded), "--model", "cli-model-a")))
    assert rows[0][:7] == ["ID", "TIME", "PROJECT", "BEAD", "PERSONA", "MODEL", "STATUS"]
    assert [row[5] for row in rows[1:]] == ["cli-model-a", "cli-model-a"]
    assert [row[7] for row in rows[1:]] == ["2200", "1100"]


def test_export_to_a_file_and_to_stdout(loom, recorded, tmp_path):
    out = tmp_path / "requests.csv"
    result = loom("analytics", "export", "--project", str(recorded), "--format", "csv", "--out", str(out))
    assert result.exit_code == 0 and f"to {out}" in result.stderr
    exported = list(csv.DictReader(io.StringIO(out.read_text())))
    assert [(r["model"], int(r["prompt_tokens"])) for r in exported] == [(m, p) for m, _, _, p, _, _ in ROWS]
    dumped = json.loads(ok(loom("analytics", "export", "--project", str(recorded), "--format", "json")))
    assert [r["status"] for r in dumped] == [s for _, _, s, _, _, _ in ROWS]
    assert "(field: format)" not in dumped  # a list of rows, not an error


def test_budget_show_set_and_clear(loom, http, recorded):
    project = str(recorded)
    shown = ok(loom("budget", "show", project)).splitlines()
    assert "total_usd: -" in shown and "spent_tokens: 3850" in shown
    set_ = as_json(loom("-o", "json", "budget", "set", project, "--daily-usd", "2.5", "--total-tokens", "3000"))
    assert (set_["daily_usd"], set_["total_tokens"], set_["exhausted"]) == (2.5, 3000, ["total_tokens"])
    stored = http.get(f"/projects/{project}/budget").json()
    assert (stored["daily_usd"], stored["total_tokens"]) == (2.5, 3000)
    cleared = ok(loom("budget", "set", project, "--total-tokens", "none")).splitlines()
    assert "total_tokens: -" in cleared and "daily_usd: 2.5" in cleared
    bead = http.post("/beads", json={"project_id": recorded, "title": "budgeted bead"}).json()
    assert as_json(loom("-o", "json", "budget", "set", "--bead", str(bead["id"]), "--total-usd", "1"))[
        "scope"] == f"bead:{bead['id']}"
    assert http.get(f"/beads/{bead['id']}/budget").json()["total_usd"] == 1.0


def test_errors_are_one_clean_line(loom, recorded):
    assert "project 2000000000 not found" in failed(loom("budget", "show", "2000000000"))
    assert "(field: since)" in failed(loom("analytics", "--since", "last tuesday"))
    assert "(field: pattern)" in failed(loom("analytics", "set-price", "bad pattern", "--prompt", "1",
                                             "--completion", "1"))
    usage = loom("budget", "set", str(recorded))
    assert usage.exit_code == 2 and "nothing to set" in usage.stderr
    negative = loom("budget", "set", str(recorded), "--daily-usd", "-1")
    assert negative.exit_code == 2 and "negative" in negative.stderr
    both = loom("budget", "show", str(recorded), "--bead", "1")
    assert both.exit_code == 2 and "one of them" in both.stderr
    assert "`loom login`" in failed(loom("analytics", "export", key="not-a-token"))


def test_prices_from_the_cli(loom, http):
    pattern = unique("cli-price") + "*"
    said = ok(loom("analytics", "set-price", pattern, "--prompt", "1.5", "--completion", "6"))
    assert said.startswith(f"Price of {pattern}")
    prices = {p["pattern"]: p for p in http.get("/analytics/prices", params={"limit": 500}).json()["items"]}
    assert (prices[pattern]["prompt_usd_per_mtok"], prices[pattern]["completion_usd_per_mtok"]) == (1.5, 6.0)
    listed = table(ok(loom("analytics", "prices", "--limit", "500")))
    assert [pattern, "1.5", "6.0", "admin"] in listed
    assert f"Removed the price of {pattern}" in ok(loom("analytics", "rm-price", pattern))
    assert "no price for the pattern" in failed(loom("analytics", "rm-price", pattern))
