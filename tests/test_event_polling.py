"""Polling `GET /events` page by page, each time from the `last_id` of the answer before, gets every event once
(real Redis ring buffer): `last_id` is where the page ended, not the newest event in the buffer."""
from __future__ import annotations

from tests.conftest import unique


def test_polling_from_last_id_in_small_pages_misses_nothing(api):
    project = api.post("/api/v1/projects", json={"name": unique("poll")}).get_json()
    bead = api.post("/api/v1/beads", json={"project_id": project["id"], "title": "polled"}).get_json()
    start = api.get(f"/api/v1/events?bead_id={bead['id']}&limit=1000").get_json()["last_id"]
    for n in range(7):
        assert api.post(f"/api/v1/beads/{bead['id']}/comments", json={"text": f"c{n}"}).status_code == 201
    other = api.post("/api/v1/beads", json={"project_id": project["id"], "title": "noise"}).get_json()
    api.post(f"/api/v1/beads/{other['id']}/comments", json={"text": "not mine"})
    seen, since, totals = [], start, []
    for _ in range(10):
        page = api.get(f"/api/v1/events?bead_id={bead['id']}&type=bead.commented&limit=3&since={since}").get_json()
        seen += [e["data"].get("text") or e["id"] for e in page["items"]]
        totals.append(page["total"])
        since = page["last_id"]
        if not page["items"]:
            break
    assert len(seen) == 7 and len(set(seen)) == 7, seen
    assert totals == [7, 4, 1, 0]  # how many matching events are left from each page's `since` on, this page's too
    again = api.get(f"/api/v1/events?bead_id={bead['id']}&since={since}").get_json()
    assert again["items"] == [] and again["last_id"] == since  # nothing new: the cursor stays put
