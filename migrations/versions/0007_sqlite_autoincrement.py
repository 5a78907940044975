"""SQLite never hands out a deleted row's id again (AUTOINCREMENT)

Without AUTOINCREMENT, SQLite gives a new row the largest id in the table plus one, so deleting the newest project
or bead and creating another reused its number: the new one inherited the old one's budget spending, analytics,
activity lines and events (its files on disk are handled by app/services/workspace_cleanup.py). Every table whose
rows have an integer `id` is rebuilt with AUTOINCREMENT (batch mode copies rows, indexes and constraints); the
sequence starts at the largest id each table has now. PostgreSQL's sequences never reuse a number: nothing to do.
migrations/env.py turns SQLite's foreign keys off around the migrations (a rebuilt table is dropped, and a DROP
would cascade to the rows that point at it) and checks them afterwards.

Revision ID: 0007_sqlite_autoincrement
Revises: 0006_ralph_indexes
Create Date: 2026-12-07 19:00:00.000000

"""
import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = '0007_sqlite_autoincrement'
down_revision = '0006_ralph_indexes'
branch_labels = None
depends_on = None


def _integer_id_tables(bind) -> list[str]:
    inspector = sa.inspect(bind)
    tables = []
    for name in inspector.get_table_names():
        if name == "alembic_version" or name.startswith("sqlite_"):
            continue
        primary = inspector.get_pk_constraint(name).get("constrained_columns") or []
        columns = {c["name"]: c for c in inspector.get_columns(name)}
        if primary == ["id"] and isinstance(columns["id"]["type"], sa.Integer):
            tables.append(name)
    return sorted(tables)


def _rebuild(autoincrement: bool) -> None:
    bind = op.get_bind()
    if bind.dialect.name != "sqlite":
        return
    for name in _integer_id_tables(bind):
        with op.batch_alter_table(name, recreate="always", table_kwargs={"sqlite_autoincrement": autoincrement}):
            pass


def upgrade():
    _rebuild(True)


def downgrade():
    _rebuild(False)
