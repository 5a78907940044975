"""Security events (logins, keys, role changes) kept for admins to read."""
from __future__ import annotations

from flask import has_request_context, request
from sqlalchemy import select

from app.extensions import db
from app.models import SecurityEvent
from app.services import paging


def client_ip() -> str | None:
    return request.remote_addr if has_request_context() else None


def record_security_event(type: str, *, username: str | None = None, actor: str | None = None,
                          details: dict | None = None) -> SecurityEvent:
    event = SecurityEvent(type=type, username=username, actor=actor, ip=client_ip(), details=details or {})
    db.session.add(event)
    db.session.commit()
    return event


def list_security_events(*, type: str | None = None, username: str | None = None, limit: int = 50,
                         offset: int = 0) -> tuple[list[SecurityEvent], int]:
    query = select(SecurityEvent)
    if type:
        query = query.where(SecurityEvent.type == type)
    if username:
        query = query.where(SecurityEvent.username == username)
    return paging.page(query, SecurityEvent.id.desc(), limit=limit, offset=offset)
