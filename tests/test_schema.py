"""The migration matches the models on the test database, and upgrade/downgrade work from scratch."""
from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from flask_migrate import downgrade, upgrade
from sqlalchemy import inspect, text

from app import create_app
from app.extensions import db


def test_models_and_migrations_agree(ctx):
    with db.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), db.metadata)
    assert diff == [], f"models and migrations differ; run `flask --app app db migrate`: {diff}"


def test_upgrade_and_downgrade_on_a_fresh_sqlite(tmp_path, redis_url):
    app = create_app({"DATA_DIR": str(tmp_path), "REDIS_URL": redis_url, "SECRET_KEY": "x"})
    with app.app_context():
        upgrade()
        tables = set(inspect(db.engine).get_table_names())
        assert {"projects", "beads", "bead_dependencies", "agents", "personas", "providers", "users",
                "config_kv", "log_entries"} <= tables
        downgrade(revision="base")
        assert set(inspect(db.engine).get_table_names()) <= {"alembic_version"}
        db.engine.dispose()


def test_sqlite_never_gives_a_deleted_rows_number_out_again(tmp_path, redis_url):
    """0007 rebuilds every table with an integer id with AUTOINCREMENT, rows, constraints and cascades kept: before
    it, deleting the newest project and creating another reused its number, and the new project inherited the old
    one's budget spending, analytics and activity."""
    app = create_app({"DATA_DIR": str(tmp_path), "REDIS_URL": redis_url, "SECRET_KEY": "x"})
    with app.app_context():
        upgrade(revision="0006_ralph_indexes")
        with db.engine.begin() as conn:  # an installation's data before the change
            conn.execute(text("INSERT INTO projects (id, name, description, default_branch, git_strategy, dedicated, "
                              "created_at, updated_at) VALUES (1, 'old', '', 'main', 'branch', 0, :t, :t), "
                              "(2, 'newest', '', 'main', 'branch', 0, :t, :t)"), {"t": "2026-12-01 00:00:00"})
            conn.execute(text("INSERT INTO beads (id, project_id, title, description, type, priority, status, "
                              "fencing_token, dispatch_count, error_history, created_at, updated_at, meta) VALUES "
                              "(5, 2, 'b', '', 'task', 2, 'open', 0, 0, '[]', :t, :t, '{}')"), {"t": "2026-12-01"})
            conn.execute(text("INSERT INTO bead_comments (bead_id, author, text, created_at) "
                              "VALUES (5, 'a', 'hello', :t)"), {"t": "2026-12-01"})
        db.engine.dispose()
        upgrade()
        with db.engine.begin() as conn:
            assert conn.execute(text("SELECT count(*) FROM bead_comments")).scalar() == 1  # rows kept
            assert conn.execute(text("PRAGMA foreign_keys")).scalar() == 1  # back on for the app's connections
            conn.execute(text("DELETE FROM projects WHERE id = 2"))  # cascades still run: its bead, its comment
            assert conn.execute(text("SELECT count(*) FROM bead_comments")).scalar() == 0
            conn.execute(text("INSERT INTO projects (name, description, default_branch, git_strategy, dedicated, "
                              "created_at, updated_at) VALUES ('next', '', 'main', 'branch', 0, :t, :t)"),
                         {"t": "2026-12-02"})
            assert conn.execute(text("SELECT id FROM projects WHERE name = 'next'")).scalar() == 3  # not 2 again
        downgrade(revision="0006_ralph_indexes")  # and back, should it be needed
        assert "AUTOINCREMENT" not in db.session.execute(text(
            "SELECT sql FROM sqlite_master WHERE name = 'projects'")).scalar()
        db.session.remove()
        db.engine.dispose()
