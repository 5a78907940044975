"""What every pooled database connection gets: SQLite pragmas on connect; a PostgreSQL liveness check on checkout
when it sat idle in the pool (a connection in steady use is not pinged before each transaction).

SQLAlchemy's `pool_pre_ping` would ping before every checkout: about six extra round trips per loop step.
Here a connection idle for PING_AFTER_IDLE_S or longer is pinged, and a dead one is replaced before use
(DisconnectionError makes the pool reconnect). One that died less than that ago fails its first statement:
SQLAlchemy then recycles the whole pool, and the caller's retry (a step task, a Ralph tick) succeeds.
"""
from __future__ import annotations

import time

from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.pool import Pool

PING_AFTER_IDLE_S = 1.0
_CHECKED_IN = "loom.checked_in_at"


def _is_sqlite(dbapi_connection) -> bool:
    return type(dbapi_connection).__module__.startswith("sqlite3")


@event.listens_for(Engine, "connect")
def _sqlite_pragmas(dbapi_connection, connection_record) -> None:
    """SQLite: enforce foreign keys, WAL for concurrent readers, and wait for a busy writer."""
    if _is_sqlite(dbapi_connection):
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()


@event.listens_for(Pool, "checkin")
def _checked_in(dbapi_connection, connection_record) -> None:
    connection_record.info[_CHECKED_IN] = time.monotonic()


@event.listens_for(Pool, "checkout")
def _ping_if_idle(dbapi_connection, connection_record, connection_proxy) -> None:
    """A connection back from the pool after PING_AFTER_IDLE_S is asked `SELECT 1` first; dead, it is replaced."""
    checked_in = connection_record.info.get(_CHECKED_IN)
    if checked_in is None or _is_sqlite(dbapi_connection) or time.monotonic() - checked_in < PING_AFTER_IDLE_S:
        return  # new (it just connected), SQLite (a file), or in steady use
    try:
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute("SELECT 1")
        finally:
            cursor.close()
    except Exception as exc:  # noqa: BLE001 (any DBAPI error: the server went away or the socket broke)
        raise DisconnectionError(f"pooled connection dead after {time.monotonic() - checked_in:.0f} s idle") from exc
