"""`flask db upgrade` builds the schema from nothing, and it matches the models exactly."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from shared.core.extensions import db


def test_migrated_schema_matches_models(app):
    with app.app_context():
        with db.engine.connect() as connection:
            context = MigrationContext.configure(connection)
            differences = compare_metadata(context, db.metadata)
    assert differences == []


def test_upgrade_from_nothing_via_cli(tmp_path, app_with):
    app = app_with(SQLALCHEMY_DATABASE_URI=f"sqlite:///{tmp_path / 'fresh.db'}")
    result = app.test_cli_runner().invoke(args=["db", "upgrade"])
    assert result.exit_code == 0, result.output
    with app.app_context():
        tables = set(db.inspect(db.engine).get_table_names())
    assert {"organizations", "users", "memberships", "partners", "projects", "visibility_groups", "documents",
            "api_tokens", "audit_events", "user_sessions", "alembic_version"} <= tables


def test_database_refuses_impossible_rows(make, app):
    import pytest
    from sqlalchemy.exc import IntegrityError

    from shared.models import ApiToken

    issued = make.token(make.member(make.org(), "editor"))
    with app.app_context():
        token = db.session.get(ApiToken, make.get_token(issued.id).id)
        token.type = "project"  # a project token without a project
        with pytest.raises(IntegrityError):
            db.session.commit()
        db.session.rollback()
