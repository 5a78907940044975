"""The decisions inbox: questions agents escalated, decided here with a rationale."""
from __future__ import annotations

from flask import render_template

from app.services import beads as bead_service
from app.services import decisions as decision_service
from app.web.ui.pages import page


@page("/decisions", permission="decisions:read")
def decisions():
    waiting, waiting_total = decision_service.list_decisions(status="open", limit=200)
    decided, decided_total = decision_service.list_decisions(status="closed", limit=50)
    return render_template("ui/decisions.html", waiting=bead_service.beads_view(waiting), waiting_total=waiting_total,
                           decided=bead_service.beads_view(decided), decided_total=decided_total)
