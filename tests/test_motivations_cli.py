"""`loom motivation ...` end to end: CliRunner against the live server, checked over httpx."""
from __future__ import annotations



from tests.cli_helpers import as_json, failed, ok, table
from tests.conftest import unique


def test_motivation_lifecycle_from_the_shell(loom, http):
    project = http.post("/projects", json={"name": unique("cli-mot")}).json()
    name = unique("standup")
    created = ok(loom("motivation", "create", name, "--kind", "interval", "--interval", "2h", "--project",
                      str(project["id"]), "--persona", "engineering-manager", "--title", "Standup {date}",
                      "--priority", "P3", "--cooldown", "5m"))
    motivation_id = int(created.split()[2].rstrip(":"))
    assert created.strip() == f"Created motivation {motivation_id}: {name} (every 2 h, enabled)"
    stored = http.get(f"/motivations/{motivation_id}").json()
    assert (stored["interval_s"], stored["cooldown_s"], stored["bead_template"]["priority"]) == (7200, 300, 3)

    rows = table(ok(loom("motivation", "list", "--project", str(project["id"]))))
    assert rows[0][:4] == ["ID", "NAME", "KIND", "TRIGGER"]
    assert rows[1][:5] == [str(motivation_id), name, "interval", "every 2 h", "engineering-manager"]
    assert "kind: interval" in ok(loom("motivation", "show", str(motivation_id)))

    assert ok(loom("motivation", "disable", str(motivation_id))).strip() == \
        f"Motivation {motivation_id} ({name}) is disabled"
    assert http.get(f"/motivations/{motivation_id}").json()["enabled"] is False
    refused = failed(loom("motivation", "trigger", str(motivation_id)))
    assert "disabled" in refused and "(field: enabled)" in refused
    ok(loom("motivation", "enable", str(motivation_id)))

    fired = ok(loom("motivation", "trigger", str(motivation_id)))
    firing = http.get(f"/motivations/history?motivation_id={motivation_id}").json()["items"][0]
    assert fired.strip() == f"Fired {name}: firing {firing['id']} fired, created bead {firing['bead_id']}"
    bead = http.get(f"/beads/{firing['bead_id']}").json()
    assert bead["title"].startswith("Standup 20") and bead["priority"] == 3 and "motivation" in bead["tags"]
    history = table(ok(loom("motivation", "history", "--motivation", str(motivation_id))))
    assert history[1][0] == str(firing["id"]) and "fired" in history[1]
    listed = as_json(loom("-o", "json", "motivation", "list", "--project", str(project["id"]), "--enabled"))
    assert [m["id"] for m in listed["items"]] == [motivation_id] and listed["items"][0]["fire_count"] == 1

    assert ok(loom("motivation", "delete", str(motivation_id))).strip() == f"Deleted motivation {motivation_id}"
    assert http.get(f"/motivations/{motivation_id}").status_code == 404


def test_bad_motivations_from_the_shell(loom):
    missing = failed(loom("motivation", "create", unique("m"), "--kind", "interval", "--title", "x"))
    assert "interval_s is required" in missing and "(field: interval_s)" in missing
    cron = failed(loom("motivation", "create", unique("m"), "--kind", "calendar", "--cron", "99 * * * *",
                       "--title", "x"))
    assert "minute" in cron and "(field: cron)" in cron
    persona = failed(loom("motivation", "create", unique("m"), "--kind", "idle", "--idle-minutes", "5",
                          "--persona", "nobody", "--title", "x"))
    assert "(field: persona)" in persona
    for args in (("--kind", "interval", "--interval", "5x"), ("--kind", "threshold", "--metric", "open_beads"),
                 ("--kind", "idle", "--idle-minutes", "0"), ("--kind", "idle", "--priority", "1")):
        usage = loom("motivation", "create", unique("m"), *args)
        assert usage.exit_code == 2 and "Traceback" not in usage.output, usage.output
    assert "not found" in failed(loom("motivation", "show", "2000000000"))
