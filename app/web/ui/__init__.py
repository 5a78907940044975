"""HTML pages, one module per surface; importing them registers their pages on `bp`."""
from app.web.ui import admin, auth, beads, dashboard, decisions, team  # noqa: F401 (registers pages)
from app.web.ui import motivations  # noqa: F401 (registers pages)
from app.web.ui import analytics  # noqa: F401 (registers pages)
from app.web.ui import activity  # noqa: F401 (registers pages)
from app.web.ui.pages import PAGES, bp

__all__ = ["PAGES", "bp"]
