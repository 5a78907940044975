"""Structured log entries kept in the database (what `GET /api/v1/logs` and the logs page show)."""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import select

from app.extensions import db
from app.models import LogEntry
from app.services.events import emit
from app.services import paging


def record_log(level: str, source: str, message: str, *, project_id: int | None = None,
               bead_id: int | None = None, agent_id: int | None = None, data: dict | None = None,
               commit: bool = True) -> LogEntry:
    entry = LogEntry(level=level.upper(), source=source, message=message, project_id=project_id,
                     bead_id=bead_id, agent_id=agent_id, data=data or {})
    db.session.add(entry)
    if commit:
        db.session.commit()
        emit("log.created", project_id=project_id, bead_id=bead_id, agent_id=agent_id, data=entry.to_dict())
    return entry


def list_logs(*, level: str | None = None, source: str | None = None, bead_id: int | None = None,
              since: datetime | None = None, limit: int = 50, offset: int = 0) -> tuple[list[LogEntry], int]:
    """Newest first; `since`: entries at or after that time."""
    query = select(LogEntry)
    if since is not None:
        query = query.where(LogEntry.ts >= since)
    if level:
        query = query.where(LogEntry.level == level)
    if source:
        query = query.where(LogEntry.source == source)
    if bead_id is not None:
        query = query.where(LogEntry.bead_id == bead_id)
    return paging.page(query, LogEntry.id.desc(), limit=limit, offset=offset)
