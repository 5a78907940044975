"""Small tables every loop step reads (runtime settings, model prices, event motivations), cached per app.

An entry lives `TTL_S` seconds. A change made in this process is seen at once: any flush that touches a
cached table drops that table's entries. A change made in another process (the web server, another worker)
is seen within `TTL_S`. Entries hold plain values, never ORM objects (they outlive the session that read them).
"""
from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

from flask import current_app, has_app_context
from sqlalchemy import event
from sqlalchemy.orm import Session

T = TypeVar("T")
TTL_S = 1.0
EXTENSION = "loom.table_cache"


def _store() -> dict[tuple[str, str], tuple[float, object]]:
    return current_app.extensions.setdefault(EXTENSION, {})


def cached(table: str, name: str, load: Callable[[], T]) -> T:
    """`load()`'s value for (`table`, `name`), reused for TTL_S seconds (a race at expiry only loads twice)."""
    store = _store()
    now = time.monotonic()
    hit = store.get((table, name))
    if hit is not None and now - hit[0] < TTL_S:
        return hit[1]  # type: ignore[return-value]
    value = load()
    store[(table, name)] = (now, value)
    return value


def invalidate(*tables: str) -> None:
    """Drop this app's entries for these tables."""
    store = _store()
    for key in list(store):
        if key[0] in tables:
            store.pop(key, None)


@event.listens_for(Session, "after_flush")
def _flushed(session: Session, _context: object) -> None:
    """A flush that writes a cached table makes this process read it afresh, now and again at commit (so no
    other thread keeps what it read between the flush and the commit)."""
    if not has_app_context():
        return
    touched = {getattr(obj, "__tablename__", None) for obj in (*session.new, *session.dirty, *session.deleted)}
    touched.discard(None)
    if touched:
        session.info.setdefault(EXTENSION, set()).update(touched)
        invalidate(*touched)


@event.listens_for(Session, "after_commit")
def _committed(session: Session) -> None:
    touched = session.info.pop(EXTENSION, None)
    if touched and has_app_context():
        invalidate(*touched)


@event.listens_for(Session, "after_rollback")
def _rolled_back(session: Session) -> None:
    session.info.pop(EXTENSION, None)
