"""The decisions inbox: questions agents escalated, decided here with a rationale."""
from __future__ import annotations

from flask import render_template

from app.services import beads as bead_service
from app.services import decisions
from app.web.ui.pages import page


@page("/decisions", permission="decisions:read")
def decisions_inbox():
    waiting, waiting_total = decisions.list_decisions(status="open", limit=200)
    decided, decided_total = decisions.list_decisions(status="closed", limit=50)
    return render_template("ui/decisions.html", waiting=bead_service.beads_view(waiting), waiting_total=waiting_total,
                           decided=bead_service.beads_view(decided), decided_total=decided_total)
