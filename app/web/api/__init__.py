"""The JSON API under /api/v1: importing the resource modules registers their routes on `bp`."""
from app.web.api import agents, auth, beads, engine, events, projects, providers, system  # noqa: F401 (registers routes)
from app.web.api import motivations  # noqa: F401 (registers routes)
from app.web.api import pair  # noqa: F401 (registers routes)
from app.web.api import analytics, budgets  # noqa: F401 (registers routes)
from app.web.api import activity, notifications  # noqa: F401 (registers routes)
from app.web.api.routing import ROUTES, bp

__all__ = ["ROUTES", "bp"]
