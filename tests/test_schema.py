"""The migration matches the models on the test database, and upgrade/downgrade work from scratch."""
from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from flask_migrate import downgrade, upgrade
from sqlalchemy import inspect

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
