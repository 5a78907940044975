"""An aggregated feed line counts different beads, not events: the same bead claimed twice is one bead, twice."""
from __future__ import annotations

from app.extensions import db
from app.models import Activity
from app.services import activity
from tests.conftest import unique


def test_a_line_says_how_many_different_beads_and_how_many_times(ctx, project):
    actor = unique("Claimer")
    for n, bead_id in enumerate((16, 15, 17, 91, 15)):  # 15 reclaimed by Ralph, then claimed again
        activity.record_event({"id": f"{n + 1}-0", "type": "bead.claimed",
                               "project_id": project["id"], "bead_id": bead_id, "data": {"actor": actor}})
    [line] = db.session.query(Activity).filter_by(actor=actor).all()
    assert line.count == 5
    assert line.summary == f"{actor} claimed 4 beads, 5 times (#16, #17, #91, #15)"
    db.session.remove()


def test_different_beads_only_read_as_before():
    items = [{"bead_id": b} for b in (1, 2, 3)]
    assert activity.summarise("bead.closed", "Ada", items, 3, beads=3) == "Ada closed 3 beads (#1, #2, #3)"
    assert activity.summarise("bead.commented", "Ada", items, 4, beads=2) == "Ada commented 4 times (#1, #2, #3)"
